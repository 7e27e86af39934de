"""Call statistics per day and voice connector (pure: no Dagster), from the lake's Parquet.

The day is the call's end day (UTC), the lake's folder, so a date range reads only its folders.
``failed`` counts every call whose status is not ``Completed``; ``billable_minutes`` sums
``billabledurationminutes`` as the billing report does.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from cdr_assets.chime.ledger import ensure_tables
from cdr_assets.chime.search import lake_glob

STATS_COLUMNS = (
    "day",
    "voiceconnectorid",
    "calls",
    "completed",
    "failed",
    "avg_billable_seconds",
    "p50_billable_seconds",
    "p95_billable_seconds",
    "billable_minutes",
    "inbound",
    "outbound",
)

_AGGREGATES = """
    count(*) AS calls,
    count(*) FILTER (WHERE status = 'Completed') AS completed,
    count(*) FILTER (WHERE status IS DISTINCT FROM 'Completed') AS failed,
    round(avg(billabledurationseconds), 1) AS avg_billable_seconds,
    quantile_cont(billabledurationseconds, 0.5) AS p50_billable_seconds,
    quantile_cont(billabledurationseconds, 0.95) AS p95_billable_seconds,
    round(sum(billabledurationminutes), 1) AS billable_minutes,
    count(*) FILTER (WHERE direction = 'Inbound') AS inbound,
    count(*) FILTER (WHERE direction = 'Outbound') AS outbound"""

_HIVE = "hive_partitioning = true, hive_types = {'year': INTEGER, 'month': INTEGER, 'day': INTEGER}"


def stats_query(*, per_day: bool = True, voice_connector: str | None = None) -> tuple[str, list[str]]:
    """SQL with parameters (glob, first day, last day[, voice connector]) in that order."""
    day_col = "make_date(year, month, day)"
    keys = f"{day_col} AS day, voiceconnectorid" if per_day else "voiceconnectorid"
    group = "1, 2" if per_day else "1"
    vc = " AND voiceconnectorid = ?" if voice_connector else ""
    sql = (
        f"SELECT {keys},{_AGGREGATES}\nFROM read_parquet(?, {_HIVE})\n"
        f"WHERE {day_col} BETWEEN ?::DATE AND ?::DATE{vc}\nGROUP BY {group} ORDER BY {group}"
    )
    names = ["glob", "first", "last"] + (["voice_connector"] if voice_connector else [])
    return sql, names


def call_stats(
    conn: duckdb.DuckDBPyConnection,
    lake_root_uri: str,
    first: date,
    last: date,
    *,
    per_day: bool = True,
    voice_connector: str | None = None,
) -> pa.Table:
    """Statistics of calls that ended from ``first`` to ``last`` (inclusive, UTC days)."""
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    sql, _ = stats_query(per_day=per_day, voice_connector=voice_connector)
    params: list[object] = [lake_glob(lake_root_uri), first, last]
    if voice_connector:
        params.append(voice_connector)
    try:
        return conn.execute(sql, params).fetch_arrow_table()
    except duckdb.IOException as exc:
        if "No files found" not in str(exc):
            raise
        return _empty(per_day)  # an empty lake: the same columns, no rows


def _empty(per_day: bool) -> pa.Table:
    cols = STATS_COLUMNS if per_day else STATS_COLUMNS[1:]
    types = {
        "day": pa.date32(),
        "voiceconnectorid": pa.string(),
        "avg_billable_seconds": pa.float64(),
        "p50_billable_seconds": pa.float64(),
        "p95_billable_seconds": pa.float64(),
        "billable_minutes": pa.float64(),
    }
    return pa.schema([(c, types.get(c, pa.int64())) for c in cols]).empty_table()


STATS_DDL = """
CREATE SCHEMA IF NOT EXISTS chime;
CREATE TABLE IF NOT EXISTS chime.daily_call_stats (
    day DATE NOT NULL, voiceconnectorid VARCHAR, calls BIGINT, completed BIGINT, failed BIGINT,
    avg_billable_seconds DOUBLE, p50_billable_seconds DOUBLE, p95_billable_seconds DOUBLE,
    billable_minutes DOUBLE, inbound BIGINT, outbound BIGINT
);
"""


def store_daily_stats(conn: duckdb.DuckDBPyConnection, day: date, table: pa.Table) -> None:
    """Replace ``day``'s rows of ``chime.daily_call_stats`` in one transaction."""
    conn.execute(STATS_DDL)
    conn.register("new_stats", table)
    try:
        conn.execute("BEGIN TRANSACTION")
        conn.execute("DELETE FROM chime.daily_call_stats WHERE day = ?", [day])
        conn.execute(f"INSERT INTO chime.daily_call_stats SELECT {', '.join(STATS_COLUMNS)} FROM new_stats")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.unregister("new_stats")


def days_to_refresh(conn: duckdb.DuckDBPyConnection, delivery_day: date) -> list[date]:
    """``delivery_day`` and every other end day that the day's deliveries added lake files to:
    CDRs delivered late belong to an earlier day, whose statistics would otherwise miss them."""
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT DISTINCT end_day FROM chime.lake_files WHERE delivery_day = ? AND kind = 'cdrs' "
        "AND state = 'committed' AND end_day IS NOT NULL",
        [delivery_day],
    ).fetchall()
    return sorted({delivery_day, *(r[0] for r in rows)})
