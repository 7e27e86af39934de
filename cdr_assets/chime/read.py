"""Read and validate raw CDR objects into Arrow tables, in parallel.

Reading is the cost floor of ingestion, so the per-object work here is kept to one read, one
``orjson`` parse and one pass over the fields; Arrow tables are built column-wise per chunk so
memory stays bounded for million-object days. Chunks run in worker processes (spawned, so a
Dagster run's threads are not forked); S3 reads inside a worker overlap on a thread pool.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial

import pyarrow as pa

from cdr_assets.chime.schema import CDR_ARROW_SCHEMA, QUARANTINE_ARROW_SCHEMA
from cdr_assets.chime.validate import Rejection, parse_cdr
from cdr_assets.parallel import fetch_all, map_chunks
from cdr_assets.storage import ObjectInfo, ObjectNotFound, Storage

MAX_OBJECT_BYTES = 1 << 20  # a CDR is ~700 bytes; anything past 1 MiB is not one
RAW_KEEP_BYTES = 64 << 10  # how much of a rejected object the quarantine keeps
CHUNK = 4096


@dataclass
class ReadResult:
    rows: pa.Table
    quarantine: pa.Table
    quirks: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0

    @staticmethod
    def concat(parts: Sequence[ReadResult]) -> ReadResult:
        quirks: Counter[str] = Counter()
        for p in parts:
            quirks.update(p.quirks)
        return ReadResult(
            rows=pa.concat_tables([p.rows for p in parts]) if parts else CDR_ARROW_SCHEMA.empty_table(),
            quarantine=(
                pa.concat_tables([p.quarantine for p in parts])
                if parts
                else QUARANTINE_ARROW_SCHEMA.empty_table()
            ),
            quirks=quirks,
            bytes_read=sum(p.bytes_read for p in parts),
        )


def _fetch(storage: Storage, bucket: str, obj: ObjectInfo) -> bytes | None:
    limit = RAW_KEEP_BYTES if obj.size > MAX_OBJECT_BYTES else None
    try:
        return storage.get(bucket, obj.key, max_bytes=limit)
    except ObjectNotFound:
        return None  # deleted between listing and reading


def read_chunk(
    storage: Storage, bucket: str, objects: Sequence[ObjectInfo], delivery_day: date
) -> ReadResult:
    """Read and validate one chunk of objects (runs in a worker process)."""
    payloads = fetch_all(storage, lambda o: _fetch(storage, bucket, o), objects)

    good: list[tuple[object, ...]] = []
    bad: list[tuple[object, ...]] = []
    quirks: Counter[str] = Counter()
    nbytes = 0
    for obj, raw in zip(objects, payloads, strict=True):
        if raw is None:
            verdict: object = Rejection("vanished", "object was listed but deleted before it was read")
            raw = b""
        elif obj.size > MAX_OBJECT_BYTES:
            verdict = Rejection(
                "too_large", f"object is {obj.size} bytes; a CDR is under {MAX_OBJECT_BYTES} bytes"
            )
        else:
            verdict = parse_cdr(raw)
        nbytes += len(raw)
        if isinstance(verdict, Rejection):
            bad.append(
                (
                    obj.key,
                    verdict.reason,
                    verdict.code,
                    obj.size,
                    raw[:RAW_KEEP_BYTES],
                    obj.size > len(raw[:RAW_KEEP_BYTES]),
                    delivery_day,
                )
            )
        else:
            good.append((*verdict.values, obj.key))  # type: ignore[union-attr]
            quirks.update(verdict.quirks)  # type: ignore[union-attr]
    return ReadResult(_table(good, CDR_ARROW_SCHEMA), _table(bad, QUARANTINE_ARROW_SCHEMA), quirks, nbytes)


def _table(rows: list[tuple[object, ...]], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
    )


def read_objects(
    storage: Storage,
    bucket: str,
    objects: Sequence[ObjectInfo],
    delivery_day: date,
    *,
    workers: int | None = None,
) -> ReadResult:
    """Read and validate all objects; order of rows follows the order of ``objects``."""
    parts = map_chunks(
        partial(read_chunk, storage, bucket, delivery_day=delivery_day),
        objects,
        chunk_size=CHUNK,
        workers=workers or os.cpu_count() or 1,
        serial_up_to=2,
    )
    return ReadResult.concat(parts)
