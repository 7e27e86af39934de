"""The contact-center star schema in DuckDB (schema ``connect``): tables and keys (pure code).

Loading is in ``connect.load``.

- ``fact_contact``: one row per ContactId, always the version with the latest
  ``LastUpdateTimestamp``; equal timestamps are broken by ``record_hash`` (a hash of the
  canonical record), so the winner does not depend on arrival order.
- ``dim_queue`` (natural key ARN), ``dim_customer`` (``customer_id`` = UUIDv5 of endpoint type +
  address in ``CUSTOMER_NAMESPACE``), ``dim_date``: upserted, never rebuilt. Surrogate keys are
  derived from the natural keys (60 bits of an MD5), so they are the same in every load order.
- ``dim_agent`` is type 2. Each fact row records the state its contact saw (routing profile and
  hierarchy levels 1-5, hashed into ``agent_state_hash``); an agent's versions are the runs of
  equal state over its contacts in initiation order, ties by ContactId (``valid_from`` = first
  contact of the run, ``valid_to`` = start of the next run, exclusive; key = hash of ARN,
  valid_from, state and the run's first contact). The result depends on the set of contacts, not
  on their order: out-of-order and late arrivals point at the version valid when the contact
  happened. The username is type 1 (latest contact's)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import duckdb

from cdr_assets.connect.schema import STAGED_NAMES
from cdr_assets.connect.staging import ensure_tables as ensure_staging_tables

# The reference (connect2redshift) derives CustomerId as a UUIDv5 of type + address; its
# namespace is not published, so ours is fixed here: uuid5(NAMESPACE_URL, "urn:cdr-assets:connect:customer").
CUSTOMER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cdr-assets:connect:customer")

AGENT_STATE = ["routing_profile_arn", "routing_profile_name"] + [
    f"hierarchy_l{n}_{p}" for n in range(1, 6) for p in ("arn", "name")
]
# Staged columns that live in dimensions instead of the fact.
_DIM_ONLY = {*AGENT_STATE, "queue_name", "customer_endpoint_type", "customer_endpoint_address"}
FACT_STAGED = [n for n in STAGED_NAMES if n not in _DIM_ONLY and n != "source_record"]

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


def key_sql(expr: str) -> str:
    """A BIGINT surrogate key from a text expression (stable across DuckDB versions)."""
    return f"('0x' || left(md5({expr}), 15))::BIGINT"


def _fact_ddl() -> str:
    from cdr_assets.connect.schema import STAGED_SCHEMA

    cols = [f"{n} {_DUCK[str(STAGED_SCHEMA.field(n).type)]}" for n in FACT_STAGED]
    # No PRIMARY KEY: the merge writes one row per ContactId (``load``: one winner per contact,
    # inserted only when the fact has none) and the asset check ``fact_contact_id_unique`` proves
    # it. The key's index was ~40 % of the fact write's CPU (a string index, inserted into twice:
    # the transaction's and the table's), and writers are serialized anyway (one DuckDB writer
    # pool, and DuckDB's file lock). Warehouses created with the key keep it and load as before.
    cols[0] = "contact_id VARCHAR NOT NULL"
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


_STATE_COLS = ",\n    ".join(f"{c} VARCHAR" for c in AGENT_STATE)
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


def customer_id_sha1_sql(endpoint_type: str, address: str) -> str:
    """SQL for the SHA-1 (hex) that ``customer_id`` is cut from; ``customer_id_sql`` formats it."""
    return (
        f"sha1(unhex('{CUSTOMER_NAMESPACE.hex}') || encode(coalesce({endpoint_type}, '') || "
        f"coalesce({address}, '')))"
    )


def customer_id_sql(sha1_hex: str) -> str:
    """``customer_id`` in SQL from a column holding ``customer_id_sha1_sql``: the UUIDv5 layout
    (RFC 4122: version nibble 5, variant bits 10), computed per batch without a Python call per pair."""
    h = sha1_hex
    return (
        f"substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-5' || substr({h}, 14, 3) || '-' || "
        f"substr('89ab89ab89ab89ab', ('0x' || substr({h}, 17, 1))::INTEGER + 1, 1) || substr({h}, 18, 3) "
        f"|| '-' || substr({h}, 21, 12)"
    )


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


def table_rows(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        t: conn.execute(f"SELECT count(*) FROM connect.{t}").fetchone()[0]  # type: ignore[index]
        for t in STAR_TABLES
    }
