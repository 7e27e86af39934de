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

# An agent version runs from its first contact up to the next version's first contact, in
# (initiation, ContactId) order: contacts of one second can fall on both sides of a boundary, so
# valid_from / valid_to (seconds) alone cannot place them. A version's first contact is read from
# the fact; its valid_from must be that contact's second, its valid_to the next version's valid_from
# (agent_version_bounds counts versions, not rows; a version without contacts is one).
FOREIGN_KEY_SQL = """
WITH firsts AS (
    SELECT agent_key, min(initiation_timestamp) AS t0,
           arg_min(contact_id, (initiation_timestamp, contact_id)) AS c0
    FROM connect.fact_contact WHERE agent_key IS NOT NULL GROUP BY agent_key
), versions AS (
    SELECT d.agent_key, d.valid_from, d.valid_to, s.t0,
           lead((d.valid_from, coalesce(s.c0, ''))) OVER w AS next_start,
           lead(d.valid_from) OVER w AS next_from
    FROM connect.dim_agent d LEFT JOIN firsts s USING (agent_key)
    WINDOW w AS (PARTITION BY d.agent_arn ORDER BY d.valid_from, coalesce(s.c0, ''))
), version_bounds AS (
    SELECT count(*) FILTER (WHERE t0 IS DISTINCT FROM valid_from OR valid_to IS DISTINCT FROM next_from)
           AS agent_version_bounds
    FROM versions
)
SELECT count(*) AS rows,
       count(*) FILTER (WHERE f.agent_arn IS NOT NULL AND a.agent_key IS NULL) AS agent_unresolved,
       count(*) FILTER (WHERE a.agent_key IS NOT NULL AND (f.initiation_timestamp < a.valid_from
           OR (f.initiation_timestamp, f.contact_id) >= a.next_start))
           AS agent_version_not_valid,
       (SELECT agent_version_bounds FROM version_bounds) AS agent_version_bounds,
       count(*) FILTER (WHERE f.queue_key IS NOT NULL AND q.queue_key IS NULL) AS queue_unresolved,
       count(*) FILTER (WHERE f.queue_arn IS NOT NULL AND f.queue_key IS NULL) AS queue_missing,
       count(*) FILTER (WHERE f.customer_key IS NOT NULL AND c.customer_key IS NULL) AS customer_unresolved,
       count(*) FILTER (WHERE d.date_key IS NULL) AS date_unresolved
FROM connect.fact_contact f
LEFT JOIN versions a ON a.agent_key = f.agent_key
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
