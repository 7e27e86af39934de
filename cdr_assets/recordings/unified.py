"""Unified call recordings per contact, over storage: find the inputs, unify, store, mark, dead-letter.

Inputs (REFERENCE.md section 5): the agent's screen recording
``<RECORDINGS_SCREEN_PREFIX>YYYY/MM/DD/<agentId>/<ContactId>.mp4`` in CONNECT_BUCKET, whose object
metadata ``call-end-offset`` (``HH:MM:SS``) says where in it the call ended, and the contact's Connect
call recording of the same day (``<ContactId>_*`` under any ``connect/<alias>/CallRecordings/``,
original or compressed). Outputs next to the screen recording:
``YYYY/MM/DD/<agentId>/<ContactId>/recording.mp4`` and ``thumbnail.png``; the screen recording is then
marked processed (metadata ``unified=<output key>``). A failure is recorded with its step; after
``max_attempts`` failures a recording is held (as for compression).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cdr_assets.recordings.compress import day_prefixes, ensure_schema
from cdr_assets.recordings.unify import parse_offset, unify
from cdr_assets.storage import Storage

SCREEN_RE = re.compile(r"(?P<day>\d{4}/\d{2}/\d{2})/(?P<agent>[^/]+)/(?P<contact>[^/]+)\.mp4$")

UNIFIED_SQL = """
CREATE TABLE IF NOT EXISTS recordings.unified (
    screen_key VARCHAR PRIMARY KEY,
    contact_id VARCHAR,
    agent_id VARCHAR,
    day DATE,
    call_key VARCHAR,
    output_key VARCHAR,
    duration_seconds DOUBLE,
    status VARCHAR,     -- unified | failed | reset
    attempts INTEGER,
    error VARCHAR,
    unified_at TIMESTAMP
);
"""


@dataclass(frozen=True)
class UnifyOutcome:
    screen_key: str
    status: str  # unified | skipped | failed
    call_key: str | None = None
    output_key: str | None = None
    duration: float | None = None
    step: str | None = None
    reason: str | None = None


def find_call_recording(storage: Storage, bucket: str, day: date, contact_id: str) -> str | None:
    for prefix in day_prefixes(storage, bucket, day):
        for obj in storage.list_objects(bucket, f"{prefix}{contact_id}_"):
            return obj.key
    return None


def unify_contact(storage: Storage, bucket: str, screen_key: str, day: date, workdir: str) -> UnifyOutcome:
    m = SCREEN_RE.search(screen_key)
    step = "head"
    try:
        if m is None:
            return UnifyOutcome(
                screen_key, "failed", step="parse", reason="not <day>/<agentId>/<ContactId>.mp4"
            )
        head = storage.head(bucket, screen_key)
        if head is None:
            return UnifyOutcome(screen_key, "failed", step=step, reason="object vanished")
        if head.metadata.get("unified"):
            return UnifyOutcome(screen_key, "skipped", output_key=head.metadata["unified"])
        step = "offset"
        offset = parse_offset(head.metadata.get("call-end-offset", ""))
        step = "find-call"
        call_key = find_call_recording(storage, bucket, day, m["contact"])
        if call_key is None:
            return UnifyOutcome(
                screen_key, "failed", step=step, reason="no call recording of this contact that day"
            )
        os.makedirs(workdir, exist_ok=True)
        call_path = os.path.join(workdir, "call" + os.path.splitext(call_key)[1])
        screen_path = os.path.join(workdir, "screen.mp4")
        step = "download"
        for key, path in ((call_key, call_path), (screen_key, screen_path)):
            with open(path, "wb") as fh:
                fh.write(storage.get(bucket, key))
        step = "unify"
        result = unify(call_path, screen_path, offset, os.path.join(workdir, "out"))
        out_prefix = screen_key[: -len(".mp4")] + "/"
        step = "write"
        meta = {"contact-id": m["contact"], "call-recording": call_key, "screen-recording": screen_key}
        storage.put(bucket, out_prefix + "thumbnail.png", result.thumbnail.read_bytes(), metadata=meta,
                    content_type="image/png")  # fmt: skip
        storage.put(bucket, out_prefix + "recording.mp4", result.video.read_bytes(), metadata=meta,
                    content_type="video/mp4")  # fmt: skip
        step = "mark"
        storage.copy(bucket, screen_key, bucket, screen_key,
                     metadata={**head.metadata, "unified": out_prefix + "recording.mp4"},
                     storage_class=head.storage_class)  # fmt: skip
        return UnifyOutcome(screen_key, "unified", call_key, out_prefix + "recording.mp4", result.duration)
    except Exception as exc:  # every failure is recorded, never raised
        return UnifyOutcome(screen_key, "failed", step=step, reason=f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class UnifyReport:
    listed: int = 0
    unified: int = 0
    skipped: int = 0
    failed: int = 0
    held: int = 0


def unify_day(
    storage: Storage, conn: Any, *, bucket: str, screen_prefix: str, day: date, max_attempts: int
) -> UnifyReport:
    """Unify every screen recording of ``day`` not yet processed; record outcomes in DuckDB."""
    ensure_schema(conn)
    conn.execute(UNIFIED_SQL)
    report = UnifyReport()
    keys = [o.key for o in storage.list_objects(bucket, f"{screen_prefix}{day:%Y/%m/%d}/")
            if SCREEN_RE.search(o.key)]  # fmt: skip
    report.listed = len(keys)
    prior = dict(
        conn.execute("SELECT screen_key, attempts FROM recordings.unified WHERE status = 'failed'").fetchall()
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    rows, dead = [], []
    with tempfile.TemporaryDirectory(prefix="unify-") as tmp:
        for i, key in enumerate(keys):
            attempts = prior.get(key, 0)
            if attempts >= max_attempts:
                report.held += 1
                continue
            o = unify_contact(storage, bucket, key, day, os.path.join(tmp, str(i)))
            m = SCREEN_RE.search(key)
            contact, agent = (m["contact"], m["agent"]) if m else (None, None)
            if o.status == "skipped":
                report.skipped += 1
                continue
            if o.status == "unified":
                report.unified += 1
                rows.append((key, contact, agent, day, o.call_key, o.output_key, o.duration, "unified",
                             attempts + 1, None, now))  # fmt: skip
            else:
                report.failed += 1
                rows.append((key, contact, agent, day, o.call_key, None, None, "failed", attempts + 1,
                             f"{o.step}: {o.reason}", None))  # fmt: skip
                dead.append((key, day, "unified", o.step, o.reason, attempts + 1, now))
    if rows:
        conn.executemany(f"INSERT OR REPLACE INTO recordings.unified VALUES ({', '.join(['?'] * 11)})", rows)
    if dead:
        conn.executemany("INSERT INTO recordings.dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)", dead)
    return report
