"""Unified recordings per contact: the input contract, the status table, and one batch of merges.

Inputs (REFERENCE.md section 5, issue contract), all in CONNECT_BUCKET:

- the agent's screen recording ``agent-recordings/YYYY/MM/DD/<agentId>/<ContactId>.mp4``;
- its sidecar ``<ContactId>.json`` beside it, holding ``call_end_offset`` (``HH:MM:SS[.mmm]`` into
  the recording, as the reference took it) or ``recording_started_at`` (UTC); in the second case
  the offset is the contact's ``DisconnectTimestamp`` (``connect.fact_contact``) minus that;
- the contact's Connect call audio (the recording compression may have archived it elsewhere).

Output, in LAKE_BUCKET: ``unified-recordings/YYYY/MM/DD/<agentId>/<ContactId>/recording.mp4`` and
``thumbnail.png``. Outcomes live in ``recordings.unified``: a contact is ``unified`` only after both
objects are written and read back; a failure is ``failed`` with the time of its next attempt
(exponential backoff), and ``dead`` (plus a row in ``recordings.dead_letters``) after
``max_attempts`` failures, until a user resets it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from cdr_assets.recordings.compress import day_prefixes, ensure_schema
from cdr_assets.recordings.unify import parse_offset
from cdr_assets.storage import Storage

OUTPUT_PREFIX = "unified-recordings/"
_KEY_RE = re.compile(r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<agent>[^/]+)/(?P<contact>[^/]+)\.mp4$")
# A Connect recording location inside a CTR: "<bucket>/connect/<alias>/CallRecordings/...".
_LOCATION_RE = re.compile(r"(?:^|/)(connect/[^/]+/CallRecordings/.+)$")


UNIFIED_SQL = """
CREATE TABLE IF NOT EXISTS recordings.unified (
    contact_id VARCHAR PRIMARY KEY,
    agent_id VARCHAR,
    day DATE,                  -- the day folder of the agent recording
    agent_key VARCHAR,         -- the agent screen recording in CONNECT_BUCKET
    call_key VARCHAR,          -- the Connect call audio used
    status VARCHAR,            -- unified | failed | dead
    attempts INTEGER,          -- failures since the last success or reset
    error VARCHAR,             -- '<step>: <reason>' of the last failure
    recording_key VARCHAR,     -- outputs in LAKE_BUCKET
    thumbnail_key VARCHAR,
    call_seconds DOUBLE,
    after_call_seconds DOUBLE,
    duration_seconds DOUBLE,
    next_attempt_at TIMESTAMP, -- failed: not retried automatically before this
    processed_at TIMESTAMP
);
"""


def ensure_unified_schema(conn: Any) -> None:
    ensure_schema(conn)
    cols = {r[0] for r in conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'recordings' AND table_name = 'unified'"
    ).fetchall()}  # fmt: skip
    if "screen_key" in cols:  # the table of an earlier layout (screen-recordings/...): nothing to keep
        conn.execute("DROP TABLE recordings.unified")
    conn.execute(UNIFIED_SQL)


@dataclass(frozen=True)
class AgentRecording:
    key: str
    day: date
    agent_id: str
    contact_id: str

    @property
    def sidecar_key(self) -> str:
        return self.key[: -len(".mp4")] + ".json"

    @property
    def output_prefix(self) -> str:
        return f"{OUTPUT_PREFIX}{self.day:%Y/%m/%d}/{self.agent_id}/{self.contact_id}/"

    @property
    def recording_key(self) -> str:
        return self.output_prefix + "recording.mp4"

    @property
    def thumbnail_key(self) -> str:
        return self.output_prefix + "thumbnail.png"


def agent_recording(key: str, prefix: str) -> AgentRecording | None:
    """The agent recording named by ``key`` (``<prefix>YYYY/MM/DD/<agentId>/<ContactId>.mp4``), or None."""
    if not key.startswith(prefix):
        return None
    m = _KEY_RE.fullmatch(key[len(prefix) :])
    if m is None:
        return None
    try:
        day = date(int(m["y"]), int(m["m"]), int(m["d"]))
    except ValueError:
        return None
    return AgentRecording(key, day, m["agent"], m["contact"])


def day_prefix(prefix: str, day: date) -> str:
    return f"{prefix}{day:%Y/%m/%d}/"


@dataclass(frozen=True)
class Sidecar:
    call_end_offset: float | None = None
    recording_started_at: datetime | None = None


def parse_sidecar(data: bytes) -> Sidecar:
    """The sidecar JSON; raises ValueError saying what is wrong with it."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"sidecar is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("sidecar is not a JSON object")
    offset, started = doc.get("call_end_offset"), doc.get("recording_started_at")
    if offset not in (None, ""):
        if not isinstance(offset, str):
            raise ValueError("call_end_offset must be a string HH:MM:SS[.mmm]")
        return Sidecar(call_end_offset=parse_offset(offset))
    if started not in (None, ""):
        if not isinstance(started, str):
            raise ValueError("recording_started_at must be an ISO 8601 string")
        try:
            moment = datetime.fromisoformat(started.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"recording_started_at {started!r} is not ISO 8601") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return Sidecar(recording_started_at=moment)
    raise ValueError("sidecar has neither call_end_offset nor recording_started_at")


def call_end_offset(sidecar: Sidecar, disconnect_at: datetime | None) -> float:
    """Seconds into the agent recording where the call ended."""
    if sidecar.call_end_offset is not None:
        return sidecar.call_end_offset
    assert sidecar.recording_started_at is not None
    if disconnect_at is None:
        raise ValueError("the contact record has no DisconnectTimestamp")
    at = disconnect_at.replace(tzinfo=UTC) if disconnect_at.tzinfo is None else disconnect_at
    offset = (at - sidecar.recording_started_at).total_seconds()
    if offset < 0:
        raise ValueError(f"the recording started {-offset:.3f}s after the call ended")
    return offset


@dataclass(frozen=True)
class ContactFacts:
    """What ``connect.fact_contact`` says of a contact."""

    disconnect_at: datetime | None
    recording_location: str | None


def contact_facts(conn: Any, contact_ids: list[str]) -> dict[str, ContactFacts]:
    """Contact records present in the warehouse, by contact id (none when it has no Connect tables)."""
    if not contact_ids or not has_table(conn, "connect", "fact_contact"):
        return {}
    rows = conn.execute(
        "SELECT contact_id, disconnect_timestamp, recording_location FROM connect.fact_contact "
        "WHERE contact_id IN (SELECT unnest(?::VARCHAR[]))",
        [contact_ids],
    ).fetchall()
    return {cid: ContactFacts(disconnect, location) for cid, disconnect, location in rows}


def find_call_audio(
    storage: Storage, bucket: str, rec: AgentRecording, facts: ContactFacts, archived: str | None = None
) -> str | None:
    """The key of the contact's Connect call audio, or None while it is not there.

    In order: where the recording compression archived it, the CTR's recording location, then
    the CallRecordings folders of the agent recording's day and the disconnect day.
    """
    candidates = [archived]
    if facts.recording_location and (m := _LOCATION_RE.search(facts.recording_location)):
        candidates.append(m[1])
    for key in candidates:
        if key and storage.head(bucket, key) is not None:
            return key
    days = {rec.day}
    if facts.disconnect_at is not None:
        days.add(facts.disconnect_at.date())
    for day in sorted(days):
        for prefix in day_prefixes(storage, bucket, day):
            for obj in storage.list_objects(bucket, f"{prefix}{rec.contact_id}_"):
                return obj.key
    return None


def archived_keys(conn: Any, contact_ids: list[str]) -> dict[str, str]:
    """Where compression moved call recordings of these contacts (archive presets change the key)."""
    if not contact_ids or not has_table(conn, "recordings", "compression"):
        return {}
    rows = conn.execute(
        "SELECT contact_id, new_key FROM recordings.compression WHERE status = 'converted' "
        "AND new_key IS NOT NULL AND contact_id IN (SELECT unnest(?::VARCHAR[]))",
        [contact_ids],
    ).fetchall()
    return dict(rows)


NEVER_TRIED = (None, 0, None)


def statuses(conn: Any, contact_ids: list[str]) -> dict[str, tuple[str, int, datetime | None]]:
    """Status, attempts and next attempt time of these contacts' merges (absent: never tried)."""
    if not contact_ids or not has_table(conn, "recordings", "unified"):
        return {}
    rows = conn.execute(
        "SELECT contact_id, status, attempts, next_attempt_at FROM recordings.unified "
        "WHERE contact_id IN (SELECT unnest(?::VARCHAR[]))",
        [contact_ids],
    ).fetchall()
    return {cid: (status, attempts, retry_at) for cid, status, attempts, retry_at in rows}


def missing_input(rec: AgentRecording, sidecars: set[str], facts: dict[str, ContactFacts]) -> str | None:
    if rec.sidecar_key not in sidecars:
        return "no sidecar JSON yet"
    if rec.contact_id not in facts:
        return "no contact record in connect.fact_contact yet"
    return None


def has_table(conn: Any, schema: str, table: str) -> bool:
    return bool(conn.execute(
        "SELECT 1 FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, table]
    ).fetchone())  # fmt: skip


def reset_unified(conn: Any, contact_ids: list[str] | None = None) -> int:
    """Let dead (or failed) merges run again: all of them, or only ``contact_ids``."""
    ensure_unified_schema(conn)
    sql = (
        "UPDATE recordings.unified SET status = 'failed', attempts = 0, next_attempt_at = NULL "
        "WHERE status IN ('dead', 'failed')"
    )
    params: list[Any] = []
    if contact_ids is not None:
        sql += " AND list_contains(?, contact_id)"
        params.append(contact_ids)
    return len(conn.execute(sql + " RETURNING contact_id", params).fetchall())


def list_day(storage: Storage, bucket: str, prefix: str, day: date) -> tuple[list[AgentRecording], set[str]]:
    """The agent recordings of one day folder, and the sidecar keys present there (one listing)."""
    recs, sidecars = [], set()
    for obj in storage.list_objects(bucket, day_prefix(prefix, day)):
        if obj.key.endswith(".json"):
            sidecars.add(obj.key)
        elif (rec := agent_recording(obj.key, prefix)) is not None:
            recs.append(rec)
    return recs, sidecars


def pending_retries(conn: Any, prefix: str) -> list[tuple[AgentRecording, datetime | None]]:
    """Failed merges (not dead) and when each may run again (naive UTC; None: at once)."""
    if not has_table(conn, "recordings", "unified"):
        return []
    rows = conn.execute(
        "SELECT agent_key, next_attempt_at FROM recordings.unified WHERE status = 'failed'"
    ).fetchall()
    return [(rec, at) for key, at in rows if (rec := agent_recording(key, prefix)) is not None]
