"""Merging agent recordings with their call audio, in batches, and planning which are ready.

The contract (keys, sidecars, the status table) is in ``unified.py``; the ffmpeg work in ``unify.py``.
A merge writes its outputs and reads them back before the contact is marked ``unified``; a failure
counts an attempt and sets the next one (exponential backoff), and the last allowed failure makes
the contact ``dead`` with a row in ``recordings.dead_letters``. A missing input is not a failure:
the recording waits without using up an attempt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cdr_assets.recordings.compress import write_outcomes
from cdr_assets.recordings.unified import (
    NEVER_TRIED,
    AgentRecording,
    ContactFacts,
    archived_keys,
    call_end_offset,
    contact_facts,
    ensure_unified_schema,
    find_call_audio,
    missing_input,
    parse_sidecar,
    statuses,
)
from cdr_assets.recordings.unify import unify
from cdr_assets.storage import Storage

BACKOFF_FACTOR = 4


@dataclass(frozen=True)
class Merge:
    rec: AgentRecording
    status: str  # unified | failed | not-ready
    call_key: str | None = None
    call_seconds: float | None = None
    after_call_seconds: float | None = None
    duration: float | None = None
    step: str | None = None
    reason: str | None = None


def merge_one(
    storage: Storage,
    connect_bucket: str,
    lake_bucket: str,
    rec: AgentRecording,
    facts: ContactFacts,
    archived: str | None,
    workdir: str,
) -> Merge:
    """Merge one contact's recordings and store the outputs; every failure is returned, never raised."""
    step, call_key = "sidecar", None
    try:
        raw = storage.get(connect_bucket, rec.sidecar_key)
        offset = call_end_offset(parse_sidecar(raw), facts.disconnect_at)
        step = "find-call-audio"
        call_key = find_call_audio(storage, connect_bucket, rec, facts, archived)
        if call_key is None:  # not there yet: waits, without using up an attempt
            return Merge(rec, "not-ready", step=step, reason="no Connect call audio for this contact yet")
        os.makedirs(workdir, exist_ok=True)
        call_path = os.path.join(workdir, "call" + os.path.splitext(call_key)[1])
        agent_path = os.path.join(workdir, "agent.mp4")
        step = "download"
        for bucket_key, path in ((call_key, call_path), (rec.key, agent_path)):
            with open(path, "wb") as fh:
                fh.write(storage.get(connect_bucket, bucket_key))
        step = "merge"
        out = unify(call_path, agent_path, offset, os.path.join(workdir, "out"))
        step = "write"
        meta = {"contact-id": rec.contact_id, "agent-id": rec.agent_id, "call-recording": call_key,
                "agent-recording": rec.key, "call-end-offset": f"{offset:.3f}"}  # fmt: skip
        written = {}
        for key, path, kind in ((rec.thumbnail_key, out.thumbnail, "image/png"),
                                (rec.recording_key, out.video, "video/mp4")):  # fmt: skip
            data = path.read_bytes()
            storage.put(lake_bucket, key, data, metadata=meta, content_type=kind)
            written[key] = len(data)
        step = "confirm"
        for key, size in written.items():
            head = storage.head(lake_bucket, key)
            if head is None or head.size != size:
                return Merge(rec, "failed", call_key, step=step, reason=f"{key} does not read back")
        return Merge(rec, "unified", call_key, out.call_seconds, out.after_call_seconds, out.duration)
    except Exception as exc:  # recorded with its step; the batch goes on
        return Merge(rec, "failed", call_key, step=step, reason=f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class UnifyReport:
    requested: int = 0
    unified: int = 0
    already_unified: int = 0
    failed: int = 0
    dead: int = 0  # failed for the last allowed time in this run
    held: int = 0  # dead before this run: waits for a reset
    not_ready: list[tuple[str, str]] = field(default_factory=list)  # contact id, what is missing
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # contact id, step, reason
    outputs: list[tuple[str, str, float]] = field(default_factory=list)  # contact id, key, seconds


def next_attempt(now: datetime, attempts: int, retry_seconds: int) -> datetime:
    """When a merge that failed ``attempts`` times may run again: retry_seconds x 4^(attempts-1)."""
    return now + timedelta(seconds=retry_seconds * BACKOFF_FACTOR ** max(0, attempts - 1))


def unify_recordings(
    storage: Storage,
    conn: Any,
    recs: list[AgentRecording],
    *,
    connect_bucket: str,
    lake_bucket: str,
    max_attempts: int,
    retry_seconds: int,
    sidecars: set[str],
    workers: int = 0,
    log: Callable[[str], None] = lambda _msg: None,
) -> UnifyReport:
    """Merge these agent recordings (skipping done and dead ones); record every outcome.

    ``sidecars``: the sidecar keys listed beside them. A recording whose sidecar, contact record
    or call audio is missing is reported as not ready and uses up no attempt.
    """
    ensure_unified_schema(conn)
    report = UnifyReport(requested=len(recs))
    ids = [r.contact_id for r in recs]
    prior = statuses(conn, ids)
    facts, archived = contact_facts(conn, ids), archived_keys(conn, ids)
    todo = []
    for rec in recs:
        status = prior.get(rec.contact_id, NEVER_TRIED)[0]
        if status == "unified":
            report.already_unified += 1
        elif status == "dead":
            report.held += 1
        elif (missing := missing_input(rec, sidecars, facts)) is not None:
            report.not_ready.append((rec.contact_id, missing))
        else:
            todo.append(rec)
    with (
        tempfile.TemporaryDirectory(prefix="unify-") as tmp,
        ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool,
    ):
        merges = list(pool.map(
            lambda item: merge_one(storage, connect_bucket, lake_bucket, item[1], facts[item[1].contact_id],
                                   archived.get(item[1].contact_id), os.path.join(tmp, str(item[0]))),
            enumerate(todo),
        ))  # fmt: skip
    _record(conn, merges, prior, report, max_attempts, retry_seconds, log)
    return report


@dataclass
class Plan:
    """What a sensor tick found: merges to request, and recordings still waiting (with why)."""

    ready: list[AgentRecording] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # contact id -> failures so far
    waiting: list[tuple[str, str]] = field(default_factory=list)
    done: int = 0
    backing_off: int = 0
    dead: int = 0


def plan_merges(
    storage: Storage,
    conn: Any,
    recs: list[AgentRecording],
    sidecars: set[str],
    *,
    connect_bucket: str,
    now: datetime,
    max_checks: int = 500,
) -> Plan:
    """Which of ``recs`` can be merged now: not done, not dead, not backing off, inputs all present.

    A recording waiting for its call audio costs one HEAD or LIST a tick; at most ``max_checks``
    are checked per tick, the rest wait for the next.
    """
    plan = Plan()
    ids = [r.contact_id for r in recs]
    prior, facts, archived = statuses(conn, ids), contact_facts(conn, ids), archived_keys(conn, ids)
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    checks = 0
    for rec in recs:
        status, attempts, retry_at = prior.get(rec.contact_id, NEVER_TRIED)
        if status == "unified":
            plan.done += 1
        elif status == "dead":
            plan.dead += 1
        elif status == "failed" and retry_at is not None and retry_at > naive_now:
            plan.backing_off += 1
        elif (missing := missing_input(rec, sidecars, facts)) is not None:
            plan.waiting.append((rec.contact_id, missing))
        elif checks >= max_checks:
            plan.waiting.append((rec.contact_id, "not checked this tick"))
        else:
            checks += 1
            if find_call_audio(storage, connect_bucket, rec, facts[rec.contact_id],
                               archived.get(rec.contact_id)) is None:  # fmt: skip
                plan.waiting.append((rec.contact_id, "no Connect call audio yet"))
            else:
                plan.ready.append(rec)
                plan.attempts[rec.contact_id] = attempts
    return plan


def _record(conn, merges, prior, report, max_attempts, retry_seconds, log) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows, dead = [], []
    for m in merges:
        rec = m.rec
        if m.status == "unified":
            report.unified += 1
            report.outputs.append((rec.contact_id, rec.recording_key, round(m.duration or 0.0, 3)))
            rows.append((rec.contact_id, rec.agent_id, rec.day, rec.key, m.call_key, "unified", 0, None,
                         rec.recording_key, rec.thumbnail_key, m.call_seconds, m.after_call_seconds,
                         m.duration, None, now))  # fmt: skip
            continue
        if m.status == "not-ready":
            report.not_ready.append((rec.contact_id, m.reason or ""))
            continue
        attempts = prior.get(rec.contact_id, NEVER_TRIED)[1] + 1
        error = f"{m.step}: {m.reason}"
        log(f"unify {rec.contact_id} failed (attempt {attempts}) at {error}")
        report.failures.append((rec.contact_id, m.step or "", m.reason or ""))
        if attempts >= max_attempts:
            report.dead += 1
            status, retry_at = "dead", None
            dead.append((rec.key, rec.day, "unified", m.step, m.reason, attempts, now))
        else:
            report.failed += 1
            status, retry_at = "failed", next_attempt(now, attempts, retry_seconds)
        rows.append((rec.contact_id, rec.agent_id, rec.day, rec.key, m.call_key, status, attempts, error,
                     None, None, None, None, None, retry_at, now))  # fmt: skip
    write_outcomes(conn, "recordings.unified", rows, dead)
