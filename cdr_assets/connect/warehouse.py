"""The contact-center star schema in DuckDB (schema ``connect``), loaded incrementally (pure code).

- ``fact_contact``: one row per ContactId, always the version with the latest
  ``LastUpdateTimestamp``; equal timestamps are broken by ``record_hash`` (a hash of the
  canonical record), so the winner does not depend on arrival order. Loaded with
  ``INSERT ... ON CONFLICT (contact_id) DO UPDATE ... WHERE <newer>``.
- ``dim_queue`` (natural key ARN), ``dim_customer`` (``customer_id`` = UUIDv5 of endpoint type +
  address in ``CUSTOMER_NAMESPACE``), ``dim_date``: upserted, never rebuilt. Surrogate keys are
  derived from the natural keys (60 bits of an MD5), so they are the same in every load order.
- ``dim_agent`` is type 2. Each fact row records the state its contact saw (routing profile and
  hierarchy levels 1-5, hashed into ``agent_state_hash``); an agent's versions are the runs of
  equal state over its contacts in initiation order (``valid_from`` = first contact of the run,
  ``valid_to`` = start of the next run, exclusive). A batch recomputes the runs of the agents it
  touches from their fact rows, upserts the versions (key = hash of ARN, valid_from, state and
  the run's first contact), deletes versions that no longer exist (a late contact can split or
  merge runs) and re-points only fact rows whose version changed. The result depends on the set
  of contacts, not on their order: out-of-order and late arrivals point at the version valid when
  the contact happened.
  The username is type 1 (latest contact's).

Cost per batch: the new rows, plus a columnar scan of the touched agents' fact rows
(ARN, initiation, state, key) for the type-2 runs; writes touch only new or changed rows.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa

from cdr_assets.connect.schema import STAGED_NAMES
from cdr_assets.connect.staging import committed_files
from cdr_assets.connect.staging import ensure_tables as ensure_staging_tables
from cdr_assets.storage import Storage

# The reference (connect2redshift) derives CustomerId as a UUIDv5 of type + address; its
# namespace is not published, so ours is fixed here: uuid5(NAMESPACE_URL, "urn:cdr-assets:connect:customer").
CUSTOMER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cdr-assets:connect:customer")

_AGENT_STATE = ["routing_profile_arn", "routing_profile_name"] + [
    f"hierarchy_l{n}_{p}" for n in range(1, 6) for p in ("arn", "name")
]
# Staged columns that live in dimensions instead of the fact.
_DIM_ONLY = {*_AGENT_STATE, "queue_name", "customer_endpoint_type", "customer_endpoint_address"}
FACT_STAGED = [n for n in STAGED_NAMES if n not in _DIM_ONLY and n != "source_offset"]

# The reference ``ctrrecord`` table's columns -> fact_contact columns.
REFERENCE_COLUMNS = {
    "RecordId": "contact_id",
    "LastUpdateTimestamp": "last_update_timestamp",
    "AWSAccountId": "aws_account_id",
    "AgentId": "agent_arn",
    "QueueId": "queue_arn",
    "Channel": "channel",
    "CustomerId": "customer_id",
    "AgentInteractionDuration": "agent_interaction_duration",
    "CustomerHoldDuration": "customer_hold_duration",
    "ConnectedTimestamp": "connected_to_system_timestamp",
    "DisconnectTimestamp": "disconnect_timestamp",
    "DisconnectReason": "disconnect_reason",
    "AgentConnectionAttempts": "agent_connection_attempts",
    "InitiationMethod": "initiation_method",
    "QueueDuration": "queue_duration",
    "CustomerIntent": "customer_intent",
    "WithVoiceMail": "with_voice_mail",
}

_DUCK = {"string": "VARCHAR", "int64": "BIGINT", "timestamp[s]": "TIMESTAMP", "bool": "BOOLEAN"}


def _key(expr: str) -> str:
    """A BIGINT surrogate key from a text expression (stable across DuckDB versions)."""
    return f"('0x' || left(md5({expr}), 15))::BIGINT"


def _fact_ddl() -> str:
    from cdr_assets.connect.schema import STAGED_SCHEMA

    cols = [f"{n} {_DUCK[str(STAGED_SCHEMA.field(n).type)]}" for n in FACT_STAGED]
    cols[0] = "contact_id VARCHAR PRIMARY KEY"
    cols += [
        "customer_id VARCHAR",
        "agent_state_hash VARCHAR",
        "agent_key BIGINT",
        "queue_key BIGINT",
        "customer_key BIGINT",
        "date_key INTEGER NOT NULL",
        "is_abandoned BOOLEAN NOT NULL",
        "queue_wait_seconds BIGINT",
        "handle_seconds BIGINT",
        "loaded_at TIMESTAMP NOT NULL",
    ]
    return "CREATE TABLE IF NOT EXISTS connect.fact_contact (\n    " + ",\n    ".join(cols) + "\n);"


_STATE_COLS = ",\n    ".join(f"{c} VARCHAR" for c in _AGENT_STATE)
DDL = f"""
CREATE SCHEMA IF NOT EXISTS connect;
CREATE TABLE IF NOT EXISTS connect.dim_date (
    date_key INTEGER PRIMARY KEY, date DATE NOT NULL, year INTEGER, quarter INTEGER, month INTEGER,
    day INTEGER, day_of_week INTEGER, day_name VARCHAR, is_weekend BOOLEAN
);
CREATE TABLE IF NOT EXISTS connect.dim_queue (
    queue_arn VARCHAR PRIMARY KEY, queue_key BIGINT NOT NULL, queue_name VARCHAR, name_seen_at VARCHAR
);
CREATE TABLE IF NOT EXISTS connect.dim_customer (
    customer_id VARCHAR PRIMARY KEY, customer_key BIGINT NOT NULL, endpoint_type VARCHAR, address VARCHAR
);
CREATE TABLE IF NOT EXISTS connect.agent_states (
    state_hash VARCHAR PRIMARY KEY,
    {_STATE_COLS}
);
CREATE TABLE IF NOT EXISTS connect.dim_agent (
    agent_key BIGINT PRIMARY KEY,
    agent_arn VARCHAR NOT NULL,
    username VARCHAR,
    {_STATE_COLS},
    state_hash VARCHAR NOT NULL,
    valid_from TIMESTAMP NOT NULL,
    valid_to TIMESTAMP,
    is_current BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS connect.loaded_files (
    path VARCHAR PRIMARY KEY, delivery_day DATE NOT NULL, row_count BIGINT NOT NULL,
    loaded_at TIMESTAMP NOT NULL
);
{_fact_ddl()}
"""

STAR_TABLES = ("fact_contact", "dim_agent", "dim_queue", "dim_customer", "dim_date")


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_staging_tables(conn)
    conn.execute(DDL)


def customer_id(endpoint_type: str | None, address: str | None) -> str:
    return str(uuid.uuid5(CUSTOMER_NAMESPACE, f"{endpoint_type or ''}{address or ''}"))


@dataclass
class LoadReport:
    delivery_day: date | None
    files: int = 0
    rows_in: int = 0
    contacts_in: int = 0
    inserted: int = 0
    updated: int = 0
    stale_versions: int = 0  # rows older than (or equal to) what the fact already holds
    agents_touched: int = 0
    agent_versions_changed: int = 0
    facts_repointed: int = 0
    seconds: float = 0.0
    table_rows: dict[str, int] = field(default_factory=dict)


_STATE_HASH = "md5(concat_ws('|', agent_arn, " + ", ".join(f"coalesce({c}, '')" for c in _AGENT_STATE) + "))"
_LATEST = "({0}last_update_timestamp, {0}record_hash, {0}source_key, {0}source_offset)"
_NEWER = (
    "(nb.last_update_timestamp > f.last_update_timestamp OR (nb.last_update_timestamp = "
    "f.last_update_timestamp AND nb.record_hash > f.record_hash))"
)


def load_staged(
    conn: duckdb.DuckDBPyConnection, staged: str, report: LoadReport, files: list[str] | None = None
) -> None:
    """Merge the rows of relation ``staged`` into the star schema, in one transaction that also
    records ``files`` (staged file paths) as loaded."""
    ex = conn.execute
    # The latest version per contact, picked on narrow columns and joined back: sorting the wide
    # rows in a window took most of this step. Equal (timestamp, hash) are identical deliveries;
    # the source position (unique per staged row) settles them deterministically.
    ex(
        "CREATE OR REPLACE TEMP TABLE nb AS SELECT s.*, "
        f"CASE WHEN agent_arn IS NOT NULL THEN {_STATE_HASH} END AS agent_state_hash FROM {staged} s "
        f"SEMI JOIN (SELECT contact_id, max({_LATEST.format('')}) AS k FROM {staged} GROUP BY contact_id) w "
        f"ON w.contact_id = s.contact_id AND w.k = {_LATEST.format('s.')}"
    )
    pairs = ex(
        "SELECT DISTINCT customer_endpoint_type, customer_endpoint_address FROM nb "
        "WHERE customer_endpoint_address IS NOT NULL"
    ).fetchall()
    cust = pa.table(
        {
            "endpoint_type": [p[0] for p in pairs],
            "address": [p[1] for p in pairs],
            "customer_id": [customer_id(*p) for p in pairs],
        },
        schema=pa.schema(
            [("endpoint_type", pa.string()), ("address", pa.string()), ("customer_id", pa.string())]
        ),
    )
    conn.register("cust_map", cust)
    try:
        (report.contacts_in, report.inserted, report.updated) = ex(
            "SELECT count(*), count(*) FILTER (WHERE f.contact_id IS NULL), "
            f"count(*) FILTER (WHERE {_NEWER}) "
            "FROM nb LEFT JOIN connect.fact_contact f USING (contact_id)"
        ).fetchone()  # type: ignore[misc]
        report.stale_versions = report.contacts_in - report.inserted - report.updated
        ex(
            "CREATE OR REPLACE TEMP TABLE touched AS SELECT agent_arn FROM nb WHERE agent_arn IS NOT NULL "
            "UNION SELECT f.agent_arn FROM connect.fact_contact f JOIN nb USING (contact_id) "
            "WHERE f.agent_arn IS NOT NULL"
        )
        ex("BEGIN TRANSACTION")
        try:
            _upsert_dimensions(conn)
            _upsert_facts(conn)
            _agent_versions(conn, report)
            if files:
                ex(
                    "INSERT INTO connect.loaded_files SELECT path, delivery_day, row_count, ? "
                    "FROM connect.lake_files WHERE list_contains(?, path) ON CONFLICT DO NOTHING",
                    [datetime.now(UTC).replace(tzinfo=None), files],
                )
            ex("COMMIT")
        except BaseException:
            ex("ROLLBACK")
            raise
    finally:
        with contextlib.suppress(Exception):
            conn.unregister("cust_map")


def _upsert_dimensions(conn: duckdb.DuckDBPyConnection) -> None:
    ex = conn.execute
    ex(
        "INSERT INTO connect.dim_date SELECT DISTINCT CAST(strftime(d, '%Y%m%d') AS INTEGER), d, year(d), "
        "quarter(d), month(d), day(d), isodow(d), dayname(d), isodow(d) >= 6 "
        "FROM (SELECT CAST(initiation_timestamp AS DATE) AS d FROM nb) ON CONFLICT DO NOTHING"
    )
    ex(
        f"INSERT INTO connect.dim_queue SELECT queue_arn, {_key('queue_arn')}, "
        "arg_max(queue_name, CAST(last_update_timestamp AS VARCHAR) || record_hash), "
        "max(CAST(last_update_timestamp AS VARCHAR) || record_hash) "
        "FROM nb WHERE queue_arn IS NOT NULL GROUP BY queue_arn "
        "ON CONFLICT (queue_arn) DO UPDATE SET queue_name = excluded.queue_name, "
        "name_seen_at = excluded.name_seen_at WHERE excluded.name_seen_at > dim_queue.name_seen_at"
    )
    ex(
        f"INSERT INTO connect.dim_customer SELECT customer_id, {_key('customer_id')}, endpoint_type, address "
        "FROM cust_map ON CONFLICT DO NOTHING"
    )
    state_cols = ", ".join(_AGENT_STATE)
    ex(
        "INSERT INTO connect.agent_states SELECT DISTINCT ON (agent_state_hash) agent_state_hash, "
        f"{state_cols} "
        "FROM nb WHERE agent_state_hash IS NOT NULL ON CONFLICT DO NOTHING"
    )


def _upsert_facts(conn: duckdb.DuckDBPyConnection) -> None:
    cols = [*FACT_STAGED, "customer_id", "agent_state_hash"]
    derived = {
        "agent_key": "NULL",
        "queue_key": f"CASE WHEN queue_arn IS NOT NULL THEN {_key('queue_arn')} END",
        "customer_key": f"CASE WHEN cm.customer_id IS NOT NULL THEN {_key('cm.customer_id')} END",
        "date_key": "CAST(strftime(initiation_timestamp, '%Y%m%d') AS INTEGER)",
        "is_abandoned": "enqueue_timestamp IS NOT NULL AND connected_to_agent_timestamp IS NULL",
        "queue_wait_seconds": "CASE WHEN enqueue_timestamp IS NOT NULL THEN coalesce(queue_duration, "
        "date_diff('second', enqueue_timestamp, coalesce(dequeue_timestamp, disconnect_timestamp))) END",
        "handle_seconds": "CASE WHEN connected_to_agent_timestamp IS NOT NULL THEN "
        "coalesce(agent_interaction_duration, 0) + coalesce(customer_hold_duration, 0) "
        "+ coalesce(acw_duration, 0) END",
        "loaded_at": "?",
    }
    select = ", ".join([f"nb.{c}" if c != "customer_id" else "cm.customer_id" for c in cols])
    select += ", " + ", ".join(f"{v} AS {k}" for k, v in derived.items())
    updates = ", ".join(
        f"{c} = excluded.{c}" for c in [*cols, *derived] if c not in ("contact_id", "agent_key")
    )
    conn.execute(
        f"INSERT INTO connect.fact_contact SELECT {select} FROM nb LEFT JOIN cust_map cm "
        "ON cm.endpoint_type IS NOT DISTINCT FROM nb.customer_endpoint_type "
        "AND cm.address = nb.customer_endpoint_address "
        f"ON CONFLICT (contact_id) DO UPDATE SET {updates} "
        "WHERE excluded.last_update_timestamp > fact_contact.last_update_timestamp "
        "OR (excluded.last_update_timestamp = fact_contact.last_update_timestamp "
        "AND excluded.record_hash > fact_contact.record_hash)",
        [datetime.now(UTC).replace(tzinfo=None)],
    )


_RUNS_SQL = f"""
CREATE OR REPLACE TEMP TABLE runs AS
WITH o AS (
    SELECT contact_id, agent_arn, initiation_timestamp AS t, agent_state_hash AS h, agent_key,
           agent_username, last_update_timestamp,
           CASE WHEN lag(agent_state_hash) OVER w IS DISTINCT FROM agent_state_hash THEN 1 ELSE 0 END AS s
    FROM connect.fact_contact
    WHERE agent_arn IN (SELECT agent_arn FROM touched)
    WINDOW w AS (PARTITION BY agent_arn ORDER BY initiation_timestamp, contact_id)
)
SELECT *, sum(s) OVER (PARTITION BY agent_arn ORDER BY t, contact_id ROWS UNBOUNDED PRECEDING) AS run_no
FROM o;
CREATE OR REPLACE TEMP TABLE versions AS
WITH v AS (
    SELECT agent_arn, run_no, any_value(h) AS h, min(t) AS valid_from,
           arg_min(contact_id, strftime(t, '%Y%m%d%H%M%S') || contact_id) AS first_contact
    FROM runs GROUP BY agent_arn, run_no
), names AS (
    SELECT agent_arn,
           arg_max(agent_username, CAST(last_update_timestamp AS VARCHAR) || contact_id) AS username
    FROM runs GROUP BY agent_arn
)
SELECT {_key("v.agent_arn || '|' || CAST(v.valid_from AS VARCHAR) || '|' || v.h || '|' || v.first_contact")}
           AS agent_key,
       v.agent_arn, v.run_no, names.username, v.h, v.valid_from,
       lead(v.valid_from) OVER (PARTITION BY v.agent_arn ORDER BY v.run_no) AS valid_to
FROM v JOIN names USING (agent_arn);
"""


def _agent_versions(conn: duckdb.DuckDBPyConnection, report: LoadReport) -> None:
    ex = conn.execute
    (report.agents_touched,) = ex("SELECT count(*) FROM touched").fetchone()  # type: ignore[misc]
    ex(_RUNS_SQL)
    ex(
        "DELETE FROM connect.dim_agent WHERE agent_arn IN (SELECT agent_arn FROM touched) "
        "AND agent_key NOT IN (SELECT agent_key FROM versions)"
    )
    state_cols = ", ".join(_AGENT_STATE)
    changed = ex(
        f"INSERT INTO connect.dim_agent SELECT v.agent_key, v.agent_arn, v.username, {state_cols}, v.h, "
        "v.valid_from, v.valid_to, v.valid_to IS NULL FROM versions v JOIN connect.agent_states s "
        "ON s.state_hash = v.h ON CONFLICT (agent_key) DO UPDATE SET username = excluded.username, "
        "valid_to = excluded.valid_to, is_current = excluded.is_current "
        "WHERE dim_agent.username IS DISTINCT FROM excluded.username "
        "OR dim_agent.valid_to IS DISTINCT FROM excluded.valid_to"
    ).fetchone()
    report.agent_versions_changed = int(changed[0]) if changed else 0
    (report.facts_repointed,) = ex(
        "UPDATE connect.fact_contact f SET agent_key = x.agent_key FROM ("
        "SELECT r.contact_id, v.agent_key FROM runs r JOIN versions v USING (agent_arn, run_no) "
        "WHERE r.agent_key IS DISTINCT FROM v.agent_key) x WHERE f.contact_id = x.contact_id"
    ).fetchone()  # type: ignore[misc]


def load_partition(
    conn: duckdb.DuckDBPyConnection, storage: Storage, lake_bucket: str, delivery_day: date | None
) -> LoadReport:
    """Load the staged files of ``delivery_day`` (all days when None) not loaded yet."""
    t0 = time.perf_counter()
    ensure_tables(conn)
    report = LoadReport(delivery_day)
    conn.execute(
        "DELETE FROM connect.loaded_files WHERE path NOT IN (SELECT path FROM connect.lake_files "
        "WHERE state = 'committed')"
    )
    done = {r[0] for r in conn.execute("SELECT path FROM connect.loaded_files").fetchall()}
    files = [p for p in committed_files(conn, delivery_day) if p not in done]
    report.files = len(files)
    if files:
        uris = [storage.uri(lake_bucket, p) for p in files]
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE staged_batch AS "
            "SELECT * FROM read_parquet(?, union_by_name = true)",
            [uris],
        )
        (report.rows_in,) = conn.execute("SELECT count(*) FROM staged_batch").fetchone()  # type: ignore[misc]
        load_staged(conn, "staged_batch", report, files)
        for name in ("staged_batch", "nb", "runs", "versions", "touched"):
            conn.execute(f"DROP TABLE IF EXISTS {name}")
    report.table_rows = table_rows(conn)
    report.seconds = time.perf_counter() - t0
    return report


def table_rows(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        t: conn.execute(f"SELECT count(*) FROM connect.{t}").fetchone()[0]  # type: ignore[index]
        for t in STAR_TABLES
    }
