"""The lake's bookkeeping in DuckDB (schema ``chime``).

- ``ingested_objects``: every raw object taken in, with its outcome. Lets an incremental run
  skip what it already read, and accounts for every object (written/quarantined/duplicate).
- ``transactions``: one row per TransactionId in the lake, owned by the delivery day that
  wrote it. Duplicate deliveries (same call, another key or day) are found here.
- ``lake_files``: every Parquet file the pipeline wrote, with its state. A file is registered
  ``pending`` before it is written and ``committed`` with the ledger rows in one transaction;
  files left ``pending`` by a killed run, or ``obsolete`` after a rematerialization, are
  deleted by the next run of that partition, so a crash never leaves stray rows behind.

Duplicates of a call share its end time, so ``transactions`` is probed by ``end_day`` and
the probe reads the row groups of those days only (rows are inserted in end-day order).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from cdr_assets.chime.schema import (
    CDR_ARROW_SCHEMA,
    LAKE_PREFIX,
    QUARANTINE_ARROW_SCHEMA,
    QUARANTINE_PREFIX,
)
from cdr_assets.storage import Storage

LAKE_SCHEMA = "amazon_chime_sdk_voice_connector_cdrs"
LAKE_VIEW = f"{LAKE_SCHEMA}.processed_cdrs"
QUARANTINE_VIEW = f"{LAKE_SCHEMA}.quarantined_cdrs"

DDL = """
CREATE SCHEMA IF NOT EXISTS chime;
CREATE TABLE IF NOT EXISTS chime.ingested_objects (
    source_key VARCHAR NOT NULL,
    delivery_day DATE NOT NULL,
    outcome VARCHAR NOT NULL,          -- written | quarantined | duplicate
    transaction_id VARCHAR,
    detail VARCHAR,                    -- quarantine reason code, or the owning source key
    lake_file VARCHAR,
    ingested_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS chime.transactions (
    transaction_id VARCHAR NOT NULL,
    end_day DATE NOT NULL,
    delivery_day DATE NOT NULL,
    source_key VARCHAR NOT NULL,
    lake_file VARCHAR NOT NULL
);
"""

# Shared with the Connect staging area (schema ``connect``): the same file states and cleanup.
LAKE_FILES_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.lake_files (
    path VARCHAR NOT NULL,             -- key in the lake bucket
    kind VARCHAR NOT NULL,             -- cdrs | quarantine (chime); ctrs | quarantine (connect)
    delivery_day DATE NOT NULL,
    end_day DATE,                      -- the day folder of the file (connect: initiation day)
    row_count BIGINT NOT NULL,
    state VARCHAR NOT NULL,            -- pending | committed | obsolete
    run_id VARCHAR,
    written_at TIMESTAMP NOT NULL
);
"""
DDL += LAKE_FILES_DDL.format(schema="chime")


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(DDL)


def _empty_select(schema: pa.Schema) -> str:
    """A typed, empty relation: DuckDB refuses a view over a glob that matches no file."""
    cols = [f"CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS {f.name}" for f in schema]
    cols += [f"CAST(NULL AS INTEGER) AS {p}" for p in ("year", "month", "day")]
    return f"SELECT {', '.join(cols)} WHERE false"


_DUCK_TYPES = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "binary": "BLOB",
    "date32[day]": "DATE",
}


def ensure_lake_views(conn: duckdb.DuckDBPyConnection, lake_root_uri: str) -> None:
    """Expose the Parquet lake under the reference's Glue database and table names.

    ``lake_root_uri`` is the lake bucket as DuckDB reads it (a folder, or ``s3://bucket``).
    ``union_by_name`` keeps old files readable if columns are ever added.
    """
    root = lake_root_uri.rstrip("/")
    hive = "hive_partitioning = true, hive_types = {'year': INTEGER, 'month': INTEGER, 'day': INTEGER}"
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {LAKE_SCHEMA}")
    for view, kind, prefix, schema in (
        (LAKE_VIEW, "cdrs", LAKE_PREFIX, CDR_ARROW_SCHEMA),
        (QUARANTINE_VIEW, "quarantine", QUARANTINE_PREFIX, QUARANTINE_ARROW_SCHEMA),
    ):
        (n,) = conn.execute(
            "SELECT count(*) FROM chime.lake_files WHERE kind = ? AND state <> 'obsolete'", [kind]
        ).fetchone()  # type: ignore[misc]
        if n:
            glob = f"{root}/{prefix}year=*/month=*/day=*/*.parquet".replace("'", "''")
            body = f"SELECT * FROM read_parquet('{glob}', {hive}, union_by_name = true)"
        else:
            body = _empty_select(schema)
        conn.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")


def files_in_state(
    conn: duckdb.DuckDBPyConnection, delivery_day: date, states: tuple[str, ...], schema: str = "chime"
) -> list[str]:
    rows = conn.execute(
        f"SELECT path FROM {schema}.lake_files WHERE delivery_day = ? AND list_contains(?, state)",
        [delivery_day, list(states)],
    ).fetchall()
    return [r[0] for r in rows]


def forget_files(conn: duckdb.DuckDBPyConnection, paths: list[str], schema: str = "chime") -> None:
    if paths:
        conn.execute(f"DELETE FROM {schema}.lake_files WHERE list_contains(?, path)", [paths])


def remove_files(
    storage: Storage, conn: duckdb.DuckDBPyConnection, bucket: str, paths: list[str], schema: str = "chime"
) -> None:
    """Delete lake files, then forget them in ``<schema>.lake_files``."""
    for path in paths:
        storage.delete(bucket, path)
    forget_files(conn, paths, schema)


def known_keys(conn: duckdb.DuckDBPyConnection, ledger_table: str, day: date, keys: list[str]) -> set[str]:
    """Which of ``keys`` the ledger table (``source_key``, ``delivery_day``) already holds for ``day``."""
    if not keys:
        return set()
    conn.register("candidate_keys", pa.table({"k": keys}))
    try:
        rows = conn.execute(
            f"SELECT source_key FROM {ledger_table} "
            "WHERE delivery_day = ? AND source_key IN (SELECT k FROM candidate_keys)",
            [day],
        ).fetchall()
    finally:
        conn.unregister("candidate_keys")
    return {r[0] for r in rows}
