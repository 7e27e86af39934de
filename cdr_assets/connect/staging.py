"""Stage one delivery day of Firehose CTR files as typed Parquet (pure code: no Dagster).

The partition is the *delivery* day (the date in the Firehose key), as for the CDR lake. Its
rows go to the folders of their ``InitiationTimestamp`` day, in files named after the delivery
day and a batch id, so a partition can always find and replace its own files. Every record is
staged, duplicates and older versions included (staging is the record of what arrived); the
warehouse keeps the latest version per contact.

Modes and the order of writes are those of ``chime.ingest``: ``replace`` (no ranges) reads
the whole day again and replaces the partition's files; ``incremental`` (the sensor's ranges)
reads only files the ledger has not seen. Files are registered ``pending`` in
``connect.lake_files`` (the CDR lake's bookkeeping table, same states and cleanup), written
(atomic puts), and committed with the ledger rows in one DuckDB transaction.

Files are read by DuckDB's JSON reader (``ctr_reader``) when it can take them whole, and by the
streaming decoder (``parse``, in worker processes) otherwise: files with a malformed or invalid
record, gzip files DuckDB failed on, files that vanished. The report counts the latter
(``files_streamed``). Staged rows are in ``STAGED_ORDER`` (initiation time first).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdr_assets.chime.ingest import KeyRange, batch_id, list_range
from cdr_assets.chime.ledger import LAKE_FILES_DDL, files_in_state, known_keys, remove_files
from cdr_assets.connect.ctr_reader import finish, in_staged_order, read_ctr_files, runs
from cdr_assets.connect.parse import parse_file
from cdr_assets.connect.schema import (
    QUARANTINE_SCHEMA,
    STAGED_SCHEMA,
    STAGED_WITHOUT_DICTIONARY,
    day_prefix,
    file_parts,
    quarantine_file_key,
    staged_file_key,
)
from cdr_assets.parallel import fetch_all, map_chunks
from cdr_assets.storage import ObjectInfo, ObjectNotFound, Storage

SCHEMA = "connect"
CHUNK_FILES = 16
S3_READ_THREADS = 8
GZIP_MAGIC = b"\x1f\x8b"

DDL = """
CREATE SCHEMA IF NOT EXISTS connect;
CREATE TABLE IF NOT EXISTS connect.ingested_files (
    source_key VARCHAR NOT NULL,
    delivery_day DATE NOT NULL,
    records BIGINT NOT NULL,          -- values found in the file
    staged BIGINT NOT NULL,           -- rows written to staging
    quarantined BIGINT NOT NULL,      -- records or spans sent to the quarantine
    ingested_at TIMESTAMP NOT NULL
);
""" + LAKE_FILES_DDL.format(schema=SCHEMA)


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(DDL)


@dataclass
class StagingReport:
    delivery_day: date
    mode: str
    batch_id: str = ""
    files_listed: int = 0
    already_ingested: int = 0
    files_in: int = 0
    files_streamed: int = 0  # of files_in, read by the streaming decoder (DuckDB's reader took the rest)
    records_in: int = 0
    rows_staged: int = 0
    quarantined: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    rows_per_initiation_day: dict[str, int] = field(default_factory=dict)
    files_written: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.records_in == self.rows_staged + self.quarantined


@dataclass
class ReadResult:
    rows: pa.Table
    quarantine: pa.Table
    per_file: list[tuple[str, int, int, int]]  # key, records, staged, quarantined
    bytes_read: int = 0
    streamed: int = 0  # files read by the streaming decoder


def full_day_ranges(ctr_prefix: str, day: date) -> list[KeyRange]:
    return [KeyRange(day_prefix(ctr_prefix, day))]


def _fetch(storage: Storage, bucket: str, key: str) -> bytes | None:
    try:
        return storage.get(bucket, key)
    except ObjectNotFound:
        return None  # deleted between listing and reading


def read_chunk(
    storage: Storage,
    bucket: str,
    keys: Sequence[str],
    delivery_day: date,
    copies: Mapping[str, str] | None = None,
) -> ReadResult:
    """Fetch and parse some files (runs in a worker process for large days). ``copies``: local
    copies of keys already downloaded (key -> path), read instead of fetched again."""
    have = copies or {}

    def fetch(key: str) -> bytes | None:
        return Path(have[key]).read_bytes() if key in have else _fetch(storage, bucket, key)

    blobs = fetch_all(storage, fetch, keys, threads=S3_READ_THREADS)
    tables, bad_rows, per_file, nbytes = [], [], [], 0
    for key, data in zip(keys, blobs, strict=True):
        if data is None:
            bad_rows.append((key, 0, "vanished", "file was listed but deleted before it was read", b""))
            per_file.append((key, 1, 0, 1))
            continue
        nbytes += len(data)
        parsed = parse_file(data, key)
        tables.append(pa.table(parsed.rows, schema=STAGED_SCHEMA))
        bad_rows += [(key, b.offset, b.code, b.reason, b.raw) for b in parsed.bad]
        per_file.append((key, parsed.records, parsed.row_count, len(parsed.bad)))
    quarantine = pa.table(
        {
            "source_key": [r[0] for r in bad_rows],
            "source_offset": [r[1] for r in bad_rows],
            "reason_code": [r[2] for r in bad_rows],
            "reason": [r[3] for r in bad_rows],
            "raw": [r[4] for r in bad_rows],
            "delivery_day": [delivery_day] * len(bad_rows),
        },
        schema=QUARANTINE_SCHEMA,
    )
    rows = pa.concat_tables(tables) if tables else STAGED_SCHEMA.empty_table()
    return ReadResult(rows, quarantine, per_file, nbytes)


def read_files(
    storage: Storage, bucket: str, keys: Sequence[str], delivery_day: date, *, workers: int | None = None
) -> ReadResult:
    """DuckDB's reader for the files it reads whole, the streaming decoder for the rest; rows
    finished (``record_hash``) and in ``STAGED_ORDER``."""
    with tempfile.TemporaryDirectory(prefix="ctr-") as scratch:
        located, slow_keys = _locate(storage, bucket, keys, Path(scratch))
        fast_rows, per_file, nbytes = [], [], 0
        for gz in (False, True):
            paths = {path: key for path, (key, is_gz, _) in located.items() if is_gz == gz}
            if not paths:
                continue
            fast = read_ctr_files(list(paths), gzip=gz, threads=workers)
            slow_keys += [paths[p] for p in fast.rejected]
            per_file += [(paths[p], n, n, 0) for p, n in fast.records.items()]
            nbytes += sum(located[p][2] for p in fast.records)
            fast_rows.append(_with_keys(fast.rows, paths))
        # From S3, the files DuckDB left are already in the scratch folder: the decoder reads those
        # copies (still there: it runs inside this block) instead of downloading them again.
        slow = sorted(slow_keys)
        downloaded = {key: p for p, (key, _, _) in located.items()} if storage.mode == "s3" else {}
        copies = {k: downloaded[k] for k in slow if k in downloaded}
        parts = map_chunks(
            partial(read_chunk, storage, bucket, delivery_day=delivery_day, copies=copies),
            slow,
            chunk_size=CHUNK_FILES,
            workers=workers or os.cpu_count() or 1,
            serial_up_to=3,
        )
    streamed = [finish(p.rows) for p in parts if p.rows.num_rows]
    rows = in_staged_order(pa.concat_tables([STAGED_SCHEMA.empty_table(), *fast_rows, *streamed]))
    return ReadResult(
        rows,
        pa.concat_tables([p.quarantine for p in parts]) if parts else QUARANTINE_SCHEMA.empty_table(),
        sorted(per_file + [f for p in parts for f in p.per_file]),
        nbytes + sum(p.bytes_read for p in parts),
        len(slow_keys),
    )


def _locate(
    storage: Storage, bucket: str, keys: Sequence[str], scratch: Path
) -> tuple[dict[str, tuple[str, bool, int]], list[str]]:
    """Local paths DuckDB can read (path -> key, gzip?, size): the files themselves in local mode,
    downloads into ``scratch`` (on threads) from S3. Keys that vanished are returned apart."""
    if storage.mode == "local":
        located, vanished = {}, []
        for key in keys:
            path = storage.uri(bucket, key)
            try:
                with open(path, "rb") as f:
                    located[path] = (key, f.read(2) == GZIP_MAGIC, os.fstat(f.fileno()).st_size)
            except FileNotFoundError:
                vanished.append(key)  # the streaming path records it as vanished
        return located, vanished

    def download(item: tuple[int, str]) -> tuple[str, str, bool, int] | None:
        data = _fetch(storage, bucket, item[1])
        if data is None:
            return None
        path = str(scratch / f"{item[0]:06d}")
        Path(path).write_bytes(data)
        return path, item[1], data[:2] == GZIP_MAGIC, len(data)

    got = fetch_all(storage, download, list(enumerate(keys)), threads=S3_READ_THREADS)
    located = {g[0]: (g[1], g[2], g[3]) for g in got if g is not None}
    return located, [k for k, g in zip(keys, got, strict=True) if g is None]


def _with_keys(rows: pa.Table, keys: dict[str, str]) -> pa.Table:
    """``source_key`` from the path DuckDB read back to the object key."""
    paths = rows["source_key"].combine_chunks().dictionary_encode()
    mapped = pa.array([keys[p] for p in paths.dictionary.to_pylist()], pa.string())
    column = pa.DictionaryArray.from_arrays(paths.indices, mapped).cast(pa.string())
    return rows.set_column(rows.schema.get_field_index("source_key"), "source_key", column)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    dictionary = [n for n in table.column_names if n not in STAGED_WITHOUT_DICTIONARY]
    pq.write_table(table, sink, compression="snappy", row_group_size=128 * 1024, use_dictionary=dictionary)
    return sink.getvalue().to_pybytes()


def stage_delivery_day(
    storage: Storage,
    conn: duckdb.DuckDBPyConnection,
    *,
    connect_bucket: str,
    lake_bucket: str,
    ctr_prefix: str,
    delivery_day: date,
    ranges: Sequence[KeyRange] | None = None,
    run_id: str | None = None,
    workers: int | None = None,
) -> StagingReport:
    t0 = time.perf_counter()
    replace = ranges is None
    report = StagingReport(delivery_day, "replace" if replace else "incremental")
    ensure_tables(conn)
    storage.ensure_bucket(lake_bucket)
    stale = files_in_state(conn, delivery_day, ("pending", "obsolete"), SCHEMA)
    remove_files(storage, conn, lake_bucket, stale, SCHEMA)
    report.files_removed.extend(stale)

    if ranges is None:
        ranges = full_day_ranges(ctr_prefix, delivery_day)
    listed: dict[str, ObjectInfo] = {o.key: o for r in ranges for o in list_range(storage, connect_bucket, r)}
    report.files_listed = len(listed)
    known = set() if replace else known_keys(conn, "connect.ingested_files", delivery_day, list(listed))
    report.already_ingested = len(known)
    keys = [k for k in sorted(listed) if k not in known]
    report.files_in = len(keys)
    if not keys and not replace:
        report.seconds = time.perf_counter() - t0
        return report

    result = read_files(storage, connect_bucket, keys, delivery_day, workers=workers)
    report.bytes_read = result.bytes_read
    report.files_streamed = result.streamed
    report.batch_id = batch_id(report.mode, keys)
    rows = result.rows
    # Rows come in initiation order: each initiation day is one slice.
    init_day = pc.cast(rows["initiation_timestamp"], pa.date32()).to_numpy()
    planned: list[tuple[str, str, date | None, pa.Table]] = []
    for start, rows_of_day in zip(*runs(init_day), strict=True):
        day = init_day[start].item()
        for n, (offset, length) in enumerate(file_parts(int(rows_of_day))):
            key = staged_file_key(day, delivery_day, report.batch_id, n)
            planned.append(("ctrs", key, day, rows.slice(start + offset, length)))
    if result.quarantine.num_rows:
        planned.append(
            ("quarantine", quarantine_file_key(delivery_day, report.batch_id), None, result.quarantine)
        )
    now = datetime.now(UTC).replace(tzinfo=None)
    paths = [p for _, p, _, _ in planned]
    conn.execute("DELETE FROM connect.lake_files WHERE list_contains(?, path)", [paths])
    if planned:
        conn.executemany(
            "INSERT INTO connect.lake_files VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            [[p, kind, delivery_day, d, t.num_rows, run_id, now] for kind, p, d, t in planned],
        )

    def write(item: tuple[str, str, date | None, pa.Table]) -> str:
        _, path, _, table = item
        storage.put(lake_bucket, path, _parquet_bytes(table), content_type="application/vnd.apache.parquet")
        return path

    # Parquet encoding holds one core per file (pyarrow releases the GIL): the files on threads.
    with ThreadPoolExecutor(max(1, min(len(planned), workers or os.cpu_count() or 1))) as pool:
        report.files_written.extend(pool.map(write, planned))

    conn.execute("BEGIN TRANSACTION")
    try:
        if replace:
            conn.execute(
                "UPDATE connect.lake_files SET state = 'obsolete' WHERE delivery_day = ? "
                "AND state = 'committed' AND NOT list_contains(?, path)",
                [delivery_day, paths],
            )
            conn.execute("DELETE FROM connect.ingested_files WHERE delivery_day = ?", [delivery_day])
        ledger = pa.table(
            {
                "source_key": [f[0] for f in result.per_file],
                "records": [f[1] for f in result.per_file],
                "staged": [f[2] for f in result.per_file],
                "quarantined": [f[3] for f in result.per_file],
            }
        )
        conn.register("ledger_rows", ledger)
        conn.execute(
            "INSERT INTO connect.ingested_files SELECT source_key, ?, records, staged, quarantined, ? "
            "FROM ledger_rows",
            [delivery_day, now],
        )
        conn.execute(
            "UPDATE connect.lake_files SET state = 'committed' WHERE list_contains(?, path)", [paths]
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        with contextlib.suppress(Exception):
            conn.unregister("ledger_rows")

    obsolete = files_in_state(conn, delivery_day, ("obsolete",), SCHEMA)
    remove_files(storage, conn, lake_bucket, obsolete, SCHEMA)
    report.files_removed.extend(obsolete)

    report.records_in = sum(f[1] for f in result.per_file)
    report.rows_staged = rows.num_rows
    report.quarantined = result.quarantine.num_rows
    report.quarantine_reasons = dict(Counter(result.quarantine["reason_code"].to_pylist()).most_common())
    per_day: Counter[str] = Counter()
    for kind, _, d, t in planned:
        if kind == "ctrs":
            per_day[str(d)] += t.num_rows
    report.rows_per_initiation_day = dict(per_day)
    report.seconds = time.perf_counter() - t0
    if not report.balanced:
        raise RuntimeError(f"record accounting does not balance: {report}")
    return report


def committed_files(
    conn: duckdb.DuckDBPyConnection, delivery_day: date | None, kind: str = "ctrs"
) -> list[str]:
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT path FROM connect.lake_files WHERE (? IS NULL OR delivery_day = ?) AND kind = ? "
        "AND state = 'committed' ORDER BY path",
        [delivery_day, delivery_day, kind],
    ).fetchall()
    return [r[0] for r in rows]
