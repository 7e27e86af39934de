"""Ingest one delivery day of raw CDR objects into the Parquet lake.

A delivery day is the date in the raw keys (the day Chime delivered the object) and is the
Dagster partition. Its rows go to the folders of their *end* day, in files whose names carry
the delivery day and a batch id, so a partition can always find and replace its own files.

Two modes:
- ``replace`` (no ranges: backfill, UI, repair): every object of the day is read again, and
  the partition's files and ledger rows are replaced in one step; the result is the same rows.
- ``incremental`` (ranges from the sensor): only the listed key ranges, and of those only
  objects the ledger has not seen, are read; new rows go to new files.

Order of writes (what makes a kill at any point safe): register files as pending in DuckDB,
write them (each put is atomic), commit ledger + transactions + file states in one DuckDB
transaction, then delete files made obsolete. The next run of the partition deletes whatever a
dead run left pending or obsolete, and a rerun of the same work writes the same file names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdr_assets.chime.keys import (
    day_prefix,
    lake_file_key,
    quarantine_file_key,
    voice_connector_of_prefix,
)
from cdr_assets.chime.lake_layout import LAKE_SORT, parquet_bytes
from cdr_assets.chime.ledger import (
    ensure_lake_views,
    ensure_tables,
    files_in_state,
    forget_files,
    known_keys,
    remove_files,
)
from cdr_assets.chime.number_index import index_file_bytes, index_key
from cdr_assets.chime.read import ReadResult, read_objects
from cdr_assets.chime.schema import CDR_ARROW_SCHEMA, CDR_PREFIX
from cdr_assets.storage import ObjectInfo, Storage

PARQUET = "application/vnd.apache.parquet"
_MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
# Test hook: "after_first_lake_file" kills the process after the first planned file (with its
# index), "before_first_index" between the first lake file and its index.
FAILPOINT_ENV = "CDR_ASSETS_FAILPOINT"


@dataclass(frozen=True)
class KeyRange:
    """Keys under ``prefix`` after ``start_after`` (exclusive) up to ``end_at`` (inclusive)."""

    prefix: str
    start_after: str | None = None
    end_at: str | None = None


@dataclass
class IngestReport:
    delivery_day: date
    mode: str
    batch_id: str = ""
    objects_listed: int = 0
    already_ingested: int = 0
    objects_in: int = 0
    rows_written: int = 0
    quarantined: int = 0
    duplicates_dropped: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    quirks: dict[str, int] = field(default_factory=dict)
    rows_per_end_day: dict[str, int] = field(default_factory=dict)
    per_voice_connector: list[dict[str, object]] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    preview: list[dict[str, object]] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.objects_in == self.rows_written + self.quarantined + self.duplicates_dropped


def list_range(storage: Storage, bucket: str, rng: KeyRange) -> list[ObjectInfo]:
    out = []
    for obj in storage.list_objects(bucket, rng.prefix, start_after=rng.start_after):
        if rng.end_at is not None and obj.key > rng.end_at:
            break
        out.append(obj)
    return out


def full_day_ranges(storage: Storage, bucket: str, day: date) -> list[KeyRange]:
    return [
        KeyRange(day_prefix(voice_connector_of_prefix(p), day))
        for p in storage.list_prefixes(bucket, CDR_PREFIX)
    ]


def batch_id(mode: str, keys: Iterable[str]) -> str:
    """Names a batch's files after the exact keys it read, so a rerun rewrites the same files.
    Hashed key by key: joining a million keys first would cost a 150 MB string."""
    digest = hashlib.sha256(mode.encode())
    for key in keys:
        digest.update(b"\n" + key.encode())
    return digest.hexdigest()[:16]


def split_duplicates(
    conn: duckdb.DuckDBPyConnection, rows: pa.Table, *, replace: bool, delivery_day: date
) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """Split validated rows into the calls to write and the duplicate deliveries.

    Of the deliveries of one TransactionId in the batch, the first by source key is kept,
    unless the lake already holds the call (``chime.transactions``; in ``replace`` mode the
    partition's own claims do not count, they are being rebuilt). Returns the row indices to
    keep, in the lake's file order (end day, then ``LAKE_SORT``), their end days (days since
    the epoch), and ``dups`` (source_key, transactionid, duplicate_of: the key owning the call).
    Column-wise with Arrow/numpy: a million-row day costs a few index arrays, not a copy
    of the rows per step.
    """
    n = rows.num_rows
    days = pc.divide(rows["endtimeepochseconds"], 86400).to_numpy().astype(np.int32)
    txn = rows["transactionid"]
    order = pc.sort_indices(
        rows.select(["transactionid", "source_key"]),
        sort_keys=[("transactionid", "ascending"), ("source_key", "ascending")],
    ).to_numpy()
    later = np.zeros(n, dtype=bool)  # in sorted order: same call as the previous row
    if n > 1:
        sorted_txn = txn.take(order)
        later[1:] = pc.equal(sorted_txn[1:], sorted_txn[:-1]).to_numpy(zero_copy_only=False)
    group_start = np.maximum.accumulate(np.where(later, 0, np.arange(n)))
    owner_row = np.empty(n, dtype=np.int64)
    owner_row[order] = order[group_start]
    is_later = np.empty(n, dtype=bool)
    is_later[order] = later

    conn.register("batch_calls", pa.table({"transactionid": txn, "end_day": pa.array(days, pa.int32())}))
    try:
        claimed = conn.execute(
            "SELECT transaction_id, source_key FROM chime.transactions "
            "WHERE end_day IN (SELECT DISTINCT DATE '1970-01-01' + end_day FROM batch_calls) "
            "AND NOT (? AND delivery_day = ?) "
            "AND transaction_id IN (SELECT transactionid FROM batch_calls)",
            [replace, delivery_day],
        ).fetch_arrow_table()
    finally:
        conn.unregister("batch_calls")
    claimed_at = pc.index_in(txn, value_set=claimed["transaction_id"])
    is_dup = is_later | pc.is_valid(claimed_at).to_numpy(zero_copy_only=False)

    keep_idx = np.flatnonzero(~is_dup)
    order_of = rows.select([c for c, _ in LAKE_SORT]).take(keep_idx)
    order_of = order_of.append_column("end_day", pa.array(days[keep_idx]))
    keep_idx = keep_idx[
        pc.sort_indices(order_of, sort_keys=[("end_day", "ascending"), *LAKE_SORT]).to_numpy()
    ]
    dup_idx = np.flatnonzero(is_dup)
    claimed_owner = claimed["source_key"].take(claimed_at.take(dup_idx))
    first_owner = rows["source_key"].take(owner_row[dup_idx])
    dups = rows.select(["source_key", "transactionid"]).take(dup_idx)
    dups = dups.append_column(
        "duplicate_of", pc.if_else(pc.is_valid(claimed_owner), claimed_owner, first_owner)
    )
    return keep_idx, days[keep_idx], dups


def take_rows(result: ReadResult, indices: np.ndarray) -> pa.Table:
    """``result.rows.take(indices)`` one column at a time, releasing each source column once
    taken (``result`` gives up its rows), so the peak is one copy of the rows plus a column."""
    rows, result.rows = result.rows, CDR_ARROW_SCHEMA.empty_table()
    taken = {}
    for name in rows.column_names:
        taken[name] = rows[name].take(indices)
        rows = rows.drop_columns([name])
    return pa.table(taken)


def end_day_slices(keep: pa.Table) -> list[tuple[date, pa.Table]]:
    """``keep`` (ordered by end day) cut into one zero-copy slice per end day."""
    days = keep["end_day"].cast(pa.int32()).to_numpy()
    if not len(days):
        return []
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    ends = np.r_[starts[1:], len(days)]
    epoch = date(1970, 1, 1)
    return [
        (epoch + timedelta(days=int(days[a])), keep.slice(a, b - a))
        for a, b in zip(starts, ends, strict=True)
    ]


def ingest_delivery_day(
    storage: Storage,
    conn: duckdb.DuckDBPyConnection,
    *,
    cdr_bucket: str,
    lake_bucket: str,
    delivery_day: date,
    ranges: Sequence[KeyRange] | None = None,
    run_id: str | None = None,
    workers: int | None = None,
    duckdb_memory_limit: str | None = None,
) -> IngestReport:
    t0 = time.perf_counter()
    replace = ranges is None
    report = IngestReport(delivery_day, "replace" if replace else "incremental")
    ensure_tables(conn)
    if duckdb_memory_limit:
        # DuckDB keeps a million inserted ledger rows in its buffer pool unless told to spill;
        # the limit bounds the peak of a large day (README, "Performance").
        if not _MEMORY_LIMIT.fullmatch(duckdb_memory_limit):
            raise ValueError(f"invalid DuckDB memory limit {duckdb_memory_limit!r} (e.g. 300MB, 2GB)")
        conn.execute(f"SET memory_limit = '{duckdb_memory_limit}'")
    storage.ensure_bucket(lake_bucket)

    stale = files_in_state(conn, delivery_day, ("pending", "obsolete"))
    remove_files(storage, conn, lake_bucket, stale)
    report.files_removed.extend(stale)

    if ranges is None:
        ranges = full_day_ranges(storage, cdr_bucket, delivery_day)
    listed = {o.key: o for r in ranges for o in list_range(storage, cdr_bucket, r)}
    report.objects_listed = len(listed)
    known = set() if replace else known_keys(conn, "chime.ingested_objects", delivery_day, list(listed))
    report.already_ingested = len(known)
    objects = [listed[k] for k in sorted(listed) if k not in known]
    del listed, known  # a million-object day: free the index before reading the objects
    report.objects_in = len(objects)
    if not objects and not replace:
        report.seconds = time.perf_counter() - t0
        return report

    result = read_objects(storage, cdr_bucket, objects, delivery_day, workers=workers)
    report.bytes_read = result.bytes_read
    report.quirks = dict(result.quirks)
    report.batch_id = batch_id(report.mode, (o.key for o in objects))
    del objects

    quarantine = result.quarantine
    keep_idx, keep_days, dups = split_duplicates(
        conn, result.rows, replace=replace, delivery_day=delivery_day
    )
    keep = take_rows(result, keep_idx)
    del result
    keep = keep.append_column("end_day", pa.array(keep_days, pa.int32()).cast(pa.date32()))
    report.rows_written = keep.num_rows
    report.duplicates_dropped = dups.num_rows
    report.quarantined = quarantine.num_rows
    if not report.balanced:  # checked before anything is written or marked done
        raise RuntimeError(f"object accounting does not balance: {report}")

    # Plan every file before writing any, and register them (with the lake files' number
    # indexes; their row count is the lake file's) as pending.
    planned: list[tuple[str, str, date | None, pa.Table]] = [
        ("cdrs", lake_file_key(end_day, delivery_day, report.batch_id), end_day, part)
        for end_day, part in end_day_slices(keep)
    ]
    if quarantine.num_rows:
        planned.append(("quarantine", quarantine_file_key(delivery_day, report.batch_id), None, quarantine))
    now = datetime.now(UTC).replace(tzinfo=None)
    registered = [(kind, p, end, t.num_rows) for kind, p, end, t in planned]
    registered += [("cdrs_index", index_key(p), end, n) for kind, p, end, n in registered if kind == "cdrs"]
    paths = [p for _, p, _, _ in registered]
    forget_files(conn, paths)  # a rerun of the same batch re-registers the same names
    if registered:
        conn.executemany(
            "INSERT INTO chime.lake_files VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            [[p, kind, delivery_day, end, n, run_id, now] for kind, p, end, n in registered],
        )

    failpoint = os.environ.get(FAILPOINT_ENV)
    for i, (kind, path, _, table) in enumerate(planned):
        if kind == "cdrs":
            table = table.select(CDR_ARROW_SCHEMA.names).cast(CDR_ARROW_SCHEMA)
            # An index left from an earlier file of this name must not describe the new one.
            storage.delete(lake_bucket, index_key(path))
        data = parquet_bytes(table, cdrs=kind == "cdrs", presorted=True)
        storage.put(lake_bucket, path, data, content_type=PARQUET)
        report.files_written.append(path)
        if kind == "cdrs":
            if i == 0 and failpoint == "before_first_index":
                os._exit(137)
            # After its lake file: a file without its index is searched by a scan, never missed.
            storage.put(lake_bucket, index_key(path), index_file_bytes(data), content_type=PARQUET)
            report.files_written.append(index_key(path))
        if i == 0 and failpoint == "after_first_lake_file":
            os._exit(137)  # simulate a kill -9 half-way through the writes

    file_of_day = pa.table(
        {
            "end_day": pa.array([end for kind, _, end, _ in planned if kind == "cdrs"], pa.date32()),
            "lake_file": [p for kind, p, _, _ in planned if kind == "cdrs"],
        }
    )
    tables = {"keep_rows": keep, "dup_rows": dups, "quarantine_rows": quarantine, "files": file_of_day}
    for name, table in tables.items():
        conn.register(name, table)
    conn.execute("BEGIN TRANSACTION")
    try:
        if replace:
            conn.execute(
                "UPDATE chime.lake_files SET state = 'obsolete' WHERE delivery_day = ? "
                "AND state = 'committed' AND NOT list_contains(?, path)",
                [delivery_day, paths],
            )
            conn.execute("DELETE FROM chime.ingested_objects WHERE delivery_day = ?", [delivery_day])
            conn.execute("DELETE FROM chime.transactions WHERE delivery_day = ?", [delivery_day])
        # Every object of the batch gets exactly one ledger row: written, duplicate or quarantined.
        conn.execute(
            "INSERT INTO chime.ingested_objects "
            "SELECT source_key, $day, 'written', transactionid, NULL, lake_file, $now "
            "FROM keep_rows JOIN files USING (end_day) "
            "UNION ALL SELECT source_key, $day, 'duplicate', transactionid, duplicate_of, NULL, $now "
            "FROM dup_rows "
            "UNION ALL SELECT source_key, $day, 'quarantined', NULL, reason_code, $qfile, $now "
            "FROM quarantine_rows",
            {"day": delivery_day, "now": now, "qfile": quarantine_file_key(delivery_day, report.batch_id)},
        )
        conn.execute(
            "INSERT INTO chime.transactions SELECT transactionid, end_day, ?, source_key, lake_file "
            "FROM keep_rows JOIN files USING (end_day) ORDER BY end_day",
            [delivery_day],
        )
        conn.execute("UPDATE chime.lake_files SET state = 'committed' WHERE list_contains(?, path)", [paths])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        for name in tables:
            with contextlib.suppress(Exception):
                conn.unregister(name)

    obsolete = files_in_state(conn, delivery_day, ("obsolete",))
    remove_files(storage, conn, lake_bucket, obsolete)
    report.files_removed.extend(obsolete)

    report.quarantine_reasons = dict(Counter(quarantine["reason_code"].to_pylist()).most_common())
    report.rows_per_end_day = {str(end): t.num_rows for kind, _, end, t in planned if kind == "cdrs"}
    report.per_voice_connector = _per_voice_connector(conn, keep)
    report.preview = (
        keep.select(
            [
                "transactionid",
                "voiceconnectorid",
                "direction",
                "status",
                "sourcephonenumber",
                "destinationphonenumber",
                "starttimeepochseconds",
                "billabledurationseconds",
            ]
        )
        .slice(0, 5)
        .to_pylist()
    )
    report.seconds = time.perf_counter() - t0
    return report


def _per_voice_connector(conn: duckdb.DuckDBPyConnection, keep: pa.Table) -> list[dict[str, object]]:
    conn.register("kept", keep.select(["voiceconnectorid", "billabledurationseconds", "status"]))
    try:
        rows = conn.execute(
            "SELECT voiceconnectorid, count(*) AS calls, "
            "count(*) FILTER (WHERE status <> 'Completed') AS not_completed, "
            "round(sum(billabledurationseconds) / 60.0, 1) AS billable_minutes "
            "FROM kept GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        conn.unregister("kept")
    return [
        {"voice_connector_id": r[0], "calls": r[1], "not_completed": r[2], "billable_minutes": r[3]}
        for r in rows
    ]


def refresh_views(conn: duckdb.DuckDBPyConnection, storage: Storage, lake_bucket: str) -> None:
    ensure_tables(conn)
    ensure_lake_views(conn, storage.uri(lake_bucket))
