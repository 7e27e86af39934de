"""The short summary ``make demo`` prints: what came in, what the lake holds, where it is."""

from typing import Any

from cdr_assets.chime.ingest import refresh_views
from cdr_assets.chime.ledger import LAKE_VIEW, QUARANTINE_VIEW


def lake_summary(resources: dict[str, Any]) -> str:
    storage, warehouse = resources["storage"], resources["warehouse"]
    store = storage.get()
    with warehouse.get_connection() as conn:
        refresh_views(conn, store, storage.lake_bucket)
        outcomes = dict(
            conn.execute("SELECT outcome, count(*) FROM chime.ingested_objects GROUP BY 1").fetchall()
        )
        per_day = conn.execute(
            f"SELECT make_date(year, month, day) AS d, count(*), round(sum(billabledurationseconds) / 60, 1) "
            f"FROM {LAKE_VIEW} GROUP BY 1 ORDER BY 1"
        ).fetchall()
        reasons = conn.execute(
            f"SELECT reason_code, count(*) FROM {QUARANTINE_VIEW} GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    seen = sum(outcomes.values())
    lines = [
        "",
        "CDR lake summary",
        f"  objects seen:        {seen}",
        f"  rows in the lake:    {outcomes.get('written', 0)}",
        f"  quarantined:         {outcomes.get('quarantined', 0)}"
        + (f"  ({', '.join(f'{r} {n}' for r, n in reasons)})" if reasons else ""),
        f"  duplicates dropped:  {outcomes.get('duplicate', 0)}",
        "  rows per end day (UTC):",
        *[f"    {d}  {n:>7} calls  {m:>10} billable min" for d, n, m in per_day],
        f"  Parquet lake:        {store.uri(storage.lake_bucket)}",
        f"  DuckDB warehouse:    {warehouse.database}  (view {LAKE_VIEW})",
    ]
    return "\n".join(lines)
