"""Queries behind the star schema's asset checks (pure: DuckDB only).

Each query returns one row; ``rows`` is the table size, every other column counts violations.
"""

from __future__ import annotations

import duckdb

from cdr_assets.connect.warehouse import ensure_tables

UNIQUE_SQL = """
SELECT count(*) AS rows, count(*) - count(DISTINCT contact_id) AS duplicate_contact_ids
FROM connect.fact_contact
"""

FOREIGN_KEY_SQL = """
SELECT count(*) AS rows,
       count(*) FILTER (WHERE f.agent_arn IS NOT NULL AND a.agent_key IS NULL) AS agent_unresolved,
       -- valid_to is exclusive; a version can be zero-length when states alternate within one second
       count(*) FILTER (WHERE a.agent_key IS NOT NULL AND (f.initiation_timestamp < a.valid_from
           OR (f.initiation_timestamp >= a.valid_to AND a.valid_to > a.valid_from)))
           AS agent_version_not_valid,
       count(*) FILTER (WHERE f.queue_key IS NOT NULL AND q.queue_key IS NULL) AS queue_unresolved,
       count(*) FILTER (WHERE f.queue_arn IS NOT NULL AND f.queue_key IS NULL) AS queue_missing,
       count(*) FILTER (WHERE f.customer_key IS NOT NULL AND c.customer_key IS NULL) AS customer_unresolved,
       count(*) FILTER (WHERE d.date_key IS NULL) AS date_unresolved
FROM connect.fact_contact f
LEFT JOIN connect.dim_agent a ON a.agent_key = f.agent_key
LEFT JOIN connect.dim_queue q ON q.queue_key = f.queue_key
LEFT JOIN connect.dim_customer c ON c.customer_key = f.customer_key
LEFT JOIN connect.dim_date d ON d.date_key = f.date_key
"""

DURATION_SQL = """
SELECT count(*) AS rows,
       count(*) FILTER (WHERE queue_duration < 0 OR queue_wait_seconds < 0) AS negative_queue,
       count(*) FILTER (WHERE agent_interaction_duration < 0) AS negative_talk,
       count(*) FILTER (WHERE customer_hold_duration < 0 OR longest_hold_duration < 0) AS negative_hold,
       count(*) FILTER (WHERE acw_duration < 0) AS negative_acw,
       count(*) FILTER (WHERE handle_seconds < 0) AS negative_handle
FROM connect.fact_contact
"""

ORDER_SQL = """
SELECT count(*) AS rows,
       count(*) FILTER (WHERE disconnect_timestamp < initiation_timestamp) AS disconnect_before_initiation
FROM connect.fact_contact
"""


def run_check(conn: duckdb.DuckDBPyConnection, sql: str) -> tuple[int, dict[str, int]]:
    ensure_tables(conn)
    values = conn.execute(sql).fetchone()
    names = [d[0] for d in conn.description]  # type: ignore[union-attr]
    result = dict(zip(names, values, strict=True))  # type: ignore[arg-type]
    return sum(v for k, v in result.items() if k != "rows"), result
