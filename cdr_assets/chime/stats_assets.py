"""Dagster shell of the daily call statistics (per end day and voice connector)."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from cdr_assets.chime.assets import PROCESSED_CDRS, delivery_days
from cdr_assets.chime.stats import STATS_COLUMNS, call_stats, days_to_refresh, store_daily_stats
from cdr_assets.resources import CdrStorage, Warehouse
from cdr_assets.tabular import render

_TYPES = {"day": "date", "voiceconnectorid": "string", "billable_minutes": "float"}
_SCHEMA = TableSchema(
    columns=[
        TableColumn(c, _TYPES.get(c, "float" if "seconds" in c else "int"))
        for c in STATS_COLUMNS
        if c != "day"
    ]
)


@asset(
    name="chime_call_stats",
    deps=[PROCESSED_CDRS],
    partitions_def=delivery_days,
    group_name="chime",
    kinds={"duckdb", "parquet"},
    pool="duckdb",
    description=(
        "Call statistics of one day (calls that ended that day, UTC) per voice connector: calls, "
        "completed, failed, average/p50/p95 billable seconds, billable minutes, inbound/outbound. "
        "Stored in the DuckDB table chime.daily_call_stats; `cdr-assets stats` prints the same. The "
        "earlier days that the partition's late deliveries belong to are recomputed too."
    ),
)
def chime_call_stats(
    context: AssetExecutionContext, storage: CdrStorage, warehouse: Warehouse
) -> MaterializeResult:
    """Recompute the partition day's statistics from the lake and replace its rows; likewise for
    each earlier day that CDRs delivered on the partition day ended on (late deliveries)."""
    day = date.fromisoformat(context.partition_key)
    lake = storage.get().uri(storage.lake_bucket)
    with warehouse.get_connection() as conn:
        tables = {d: call_stats(conn, lake, d, d) for d in days_to_refresh(conn, day)}
        for d, t in tables.items():
            store_daily_stats(conn, d, t)
    table = tables[day]
    late = {str(d): sum(t["calls"].to_pylist()) for d, t in tables.items() if d != day}
    rows = table.drop_columns(["day"]).to_pylist()
    totals = {
        k: sum(r[k] for r in rows)
        for k in ("calls", "completed", "failed", "inbound", "outbound", "billable_minutes")
    }
    return MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in totals.items()},
            "per_voice_connector": MetadataValue.table([TableRecord(r) for r in rows], schema=_SCHEMA),
            "summary": MetadataValue.md(f"```\n{render(table, 'table')}\n```" if rows else "_no calls_"),
            # Earlier days recomputed for late deliveries, with their calls now.
            "late_days_recomputed": MetadataValue.json(late),
        }
    )
