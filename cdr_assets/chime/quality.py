"""Queries behind the lake's asset checks (pure: DuckDB only)."""

from __future__ import annotations

from datetime import date

import duckdb

from cdr_assets.chime.ledger import ensure_tables

# One pass over the partition's files; each column counts the rows breaking one rule.
RANGE_CHECK_SQL = """
SELECT count(*) AS rows,
       count(*) FILTER (WHERE billabledurationseconds < 0 OR billabledurationminutes < 0)
           AS negative_duration,
       count(*) FILTER (WHERE endtimeepochseconds < starttimeepochseconds) AS end_before_start,
       count(*) FILTER (WHERE endtimeepochseconds - starttimeepochseconds > 86400) AS longer_than_a_day,
       count(*) FILTER (WHERE starttimeepochseconds < 1420070400) AS before_2015,
       count(*) FILTER (
           WHERE DATE '1970-01-01' + CAST(endtimeepochseconds // 86400 AS INTEGER) > CAST(? AS DATE) + 1
       ) AS ends_after_delivery
FROM read_parquet(?)
"""


def partition_files(conn: duckdb.DuckDBPyConnection, day: date, kind: str) -> list[str]:
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT path FROM chime.lake_files WHERE delivery_day = ? AND kind = ? AND state = 'committed' "
        "ORDER BY path",
        [day, kind],
    ).fetchall()
    return [r[0] for r in rows]


def partition_outcomes(conn: duckdb.DuckDBPyConnection, day: date) -> dict[str, int]:
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT outcome, count(*) FROM chime.ingested_objects WHERE delivery_day = ? GROUP BY 1",
        [day],
    ).fetchall()
    return {r[0]: r[1] for r in rows}
