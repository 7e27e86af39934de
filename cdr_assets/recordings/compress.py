"""The safe per-object compression procedure and one day's work, with its DuckDB tables.

Per object, in this order (any failure leaves the original untouched and unmarked):
head (skip when already marked ``converted``) -> download to a temp dir -> measure the original
-> convert with ffmpeg (exit code checked) into a temporary file -> decode and verify the result
(duration within 50 ms, channel count, level of every channel within 1 dB) -> write the result
in one atomic put with metadata and storage class (same key in place; archive key otherwise)
-> head it back to confirm -> archive presets only: delete the original.
Failures are dead-lettered in ``recordings.dead_letters``; an object that failed
``max_attempts`` times is held until :func:`reset_failed` clears it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cdr_assets.recordings.audio import describe_wav, measure, measure_pcm, run_ffmpeg, verify, wav_truncation
from cdr_assets.recordings.presets import Preset
from cdr_assets.storage import Storage

KEY_RE = re.compile(
    r"^connect/(?P<alias>[^/]+)/CallRecordings/(?P<day>\d{4}/\d{2}/\d{2})/"
    r"(?P<contact>[^/]+?)_(?P<stamp>\d{8}T\d{2}:\d{2})_UTC\.wav$",
    re.IGNORECASE,
)

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS recordings;
CREATE TABLE IF NOT EXISTS recordings.compression (
    key VARCHAR PRIMARY KEY,
    contact_id VARCHAR,
    day DATE,
    preset VARCHAR,
    storage_class VARCHAR,
    bytes_before BIGINT,
    bytes_after BIGINT,
    duration_seconds DOUBLE,
    status VARCHAR,          -- converted | failed | reset
    attempts INTEGER,        -- conversion attempts since the last reset
    error VARCHAR,           -- '<step>: <reason>' of the last failure
    new_key VARCHAR,         -- where the recording is now (differs for archive presets)
    converted_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS recordings.dead_letters (
    key VARCHAR,
    day DATE,
    preset VARCHAR,
    step VARCHAR,
    reason VARCHAR,
    attempt INTEGER,
    failed_at TIMESTAMP
);
"""


@dataclass(frozen=True)
class Outcome:
    key: str
    status: str  # converted | skipped (already marked) | failed
    bytes_before: int = 0
    bytes_after: int = 0
    duration: float | None = None
    new_key: str | None = None
    step: str | None = None
    reason: str | None = None


def contact_id_of(key: str) -> str | None:
    m = KEY_RE.match(key)
    return m["contact"] if m else None


def day_prefixes(storage: Storage, bucket: str, day: date, alias: str = "") -> list[str]:
    """The CallRecordings prefixes of ``day``: of one instance alias, or of every alias found."""
    aliases = (
        [alias]
        if alias
        else [p[len("connect/") :].rstrip("/") for p in storage.list_prefixes(bucket, "connect/")]
    )
    return [f"connect/{a}/CallRecordings/{day:%Y/%m/%d}/" for a in aliases]


def compress_object(
    storage: Storage,
    bucket: str,
    key: str,
    preset: Preset,
    storage_class: str,
    workdir: str,
    ffmpeg_slot: AbstractContextManager[Any] | None = None,
) -> Outcome:
    """Compress one recording safely (see the module docstring); never raises for a bad object.

    ``ffmpeg_slot`` is held while ffmpeg runs (a semaphore bounds the processes across threads).
    """
    slot = ffmpeg_slot or nullcontext()
    step = "head"
    try:
        head = storage.head(bucket, key)
        if head is None:
            return Outcome(key, "failed", step=step, reason="object vanished")
        if head.metadata.get("converted"):
            before = int(head.metadata.get("original-size") or 0)
            return Outcome(key, "skipped", bytes_before=before, bytes_after=head.size, new_key=key)
        os.makedirs(workdir, exist_ok=True)
        src, dst = (
            os.path.join(workdir, "original.wav"),
            os.path.join(workdir, "converted" + preset.extension),
        )
        step = "download"
        data = storage.get(bucket, key)
        size, fmt, cut = len(data), describe_wav(data[:256]), wav_truncation(data[:4096], len(data))
        with open(src, "wb") as fh:
            fh.write(data)
        if size == 0:
            return Outcome(key, "failed", step=step, reason="zero-length object")
        step = "measure-original"
        if cut:
            return Outcome(key, "failed", bytes_before=size, step=step, reason=cut)
        # Connect's PCM is measured from the downloaded bytes; anything else is decoded by ffmpeg.
        original = measure_pcm(data) or measure(src)
        del data  # only files on disk from here: memory stays bounded
        step = "convert"
        with slot:
            run_ffmpeg(preset.ffmpeg_args(src, dst))
        step = "verify"
        with slot:
            converted = measure(dst)
        verdict = verify(original, converted, channels=preset.channels)
        if not verdict.ok:
            return Outcome(key, "failed", bytes_before=size, step=step, reason=verdict.reason)
        target = preset.target_key(key)
        metadata = {"converted": preset.name, "original-size": str(size), "original-format": fmt}
        if target != key:
            metadata["original-key"] = key
        with open(dst, "rb") as fh:
            result = fh.read()
        step = "write"
        storage.put(bucket, target, result, metadata=metadata, storage_class=storage_class,
                    content_type=preset.content_type)  # fmt: skip
        step = "confirm"
        written = storage.head(bucket, target)
        if written is None or written.size != len(result) or written.metadata.get("converted") != preset.name:
            return Outcome(
                key, "failed", bytes_before=size, step=step, reason="written object does not match"
            )
        if target != key:
            step = "delete-original"
            storage.delete(bucket, key)
        return Outcome(key, "converted", size, len(result), original.duration, target)
    except Exception as exc:  # every failure (AudioError, OSError, storage errors) is dead-lettered
        return Outcome(key, "failed", step=step, reason=f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class DayReport:
    day: date
    listed: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    held: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # key, step, reason


def ensure_schema(conn: Any) -> None:
    conn.execute(SCHEMA_SQL)


def compress_day(
    storage: Storage,
    conn: Any,
    *,
    bucket: str,
    day: date,
    preset: Preset,
    storage_class: str,
    max_attempts: int,
    workers: int = 0,
    alias: str = "",
    log: Callable[[str], None] = lambda _msg: None,
) -> DayReport:
    """Compress every recording of ``day`` not yet converted, in parallel; record the outcomes."""
    started = time.monotonic()
    ensure_schema(conn)
    report = DayReport(day)
    keys = [
        o.key
        for prefix in day_prefixes(storage, bucket, day, alias)
        for o in storage.list_objects(bucket, prefix)
        if o.key.lower().endswith(".wav")
    ]
    report.listed = len(keys)
    prior = {
        k: (s, a)
        for k, s, a in conn.execute(
            "SELECT key, status, attempts FROM recordings.compression WHERE day = ?", [day]
        ).fetchall()
    }
    todo = []
    for key in keys:
        status, attempts = prior.get(key, (None, 0))
        if status == "failed" and attempts >= max_attempts:
            report.held += 1
        else:
            todo.append(key)
    workers = workers or os.cpu_count() or 1
    # At most `workers` ffmpeg processes (one per core), but twice as many threads: downloads,
    # measuring originals and uploads of some objects overlap the conversions of others.
    slots = threading.BoundedSemaphore(workers)
    with tempfile.TemporaryDirectory(prefix="recordings-") as tmp, ThreadPoolExecutor(2 * workers) as pool:
        outcomes = list(
            pool.map(
                lambda item: compress_object(
                    storage, bucket, item[1], preset, storage_class, os.path.join(tmp, str(item[0])), slots
                ),
                enumerate(todo),
            )
        )
    _record(conn, day, preset, storage_class, outcomes, prior, report, log)
    report.seconds = time.monotonic() - started
    return report


def _record(conn, day, preset, storage_class, outcomes, prior, report, log) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows, dead = [], []
    for o in outcomes:
        status, attempts = prior.get(o.key, (None, 0))
        contact = contact_id_of(o.key)
        if o.status == "converted":
            report.converted += 1
            report.bytes_before += o.bytes_before
            report.bytes_after += o.bytes_after
            rows.append((o.key, contact, day, preset.name, storage_class, o.bytes_before, o.bytes_after,
                         o.duration, "converted", attempts + 1, None, o.new_key, now))  # fmt: skip
        elif o.status == "skipped":
            report.skipped += 1
            if status != "converted":  # marked on the object but unknown here: record it from the marks
                rows.append((o.key, contact, day, None, None, o.bytes_before, o.bytes_after, None,
                             "converted", attempts, None, o.new_key, None))  # fmt: skip
        else:
            report.failed += 1
            report.failures.append((o.key, o.step or "", o.reason or ""))
            log(f"failed {o.key} at {o.step}: {o.reason}")
            rows.append((o.key, contact, day, preset.name, storage_class, o.bytes_before or None, None, None,
                         "failed", attempts + 1, f"{o.step}: {o.reason}", None, None))  # fmt: skip
            dead.append((o.key, day, preset.name, o.step, o.reason, attempts + 1, now))
    write_outcomes(conn, "recordings.compression", rows, dead)


def write_outcomes(conn: Any, table: str, rows: list[tuple], dead: list[tuple]) -> None:
    """Status rows (upserted) and dead letters of one batch, in one transaction."""
    conn.execute("BEGIN")
    try:
        if rows:
            values = ", ".join(["?"] * len(rows[0]))
            conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({values})", rows)
        if dead:
            conn.executemany("INSERT INTO recordings.dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)", dead)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def reset_failed(conn: Any, keys: list[str] | None = None) -> int:
    """Let held (or any failed) objects be tried again: all of them, or only ``keys``."""
    ensure_schema(conn)
    sql = "UPDATE recordings.compression SET status = 'reset', attempts = 0 WHERE status = 'failed'"
    params: list[Any] = []
    if keys is not None:
        sql += " AND list_contains(?, key)"
        params.append(keys)
    return conn.execute(sql + " RETURNING key", params).fetchall().__len__()


def days_due(today: date, min_age_days: int, catchup_days: int, done: set[str], first: date) -> list[str]:
    """Partitions a schedule tick requests: the day ``min_age_days`` old, then older days never done.

    Looks back ``catchup_days`` before that day (bounded catch-up after an outage); days before
    ``first`` (the first partition) do not exist. Newest first.
    """
    target = today - timedelta(days=min_age_days)
    days = [target - timedelta(days=i) for i in range(catchup_days + 1)]
    return [d.isoformat() for d in days if d >= first and (d == target or d.isoformat() not in done)]
