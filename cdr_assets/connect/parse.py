"""Split a Firehose CTR file into records and flatten each into a typed row (pure code).

This is staging's careful path: files DuckDB's reader (``ctr_reader``) cannot take whole come
here, and this module's checks are the definition of a valid record.

Firehose concatenates records with no delimiter (``{...}{...}``), or one per line. Records are
read with the standard library's streaming decoder (``json.JSONDecoder.raw_decode``), value by
value, so braces, ``}{`` and newlines inside attribute values are just string content. A file
that is a JSON *array* of CTRs (as the published samples are) is accepted too: when the file
starts with ``[``, commas and the closing ``]`` between records are separators.

Fast path: when every non-blank line of a file is a complete JSON object (newline-separated
delivery), lines are decoded with ``orjson``; this gives the same records as the streaming
decoder because a JSON string cannot hold a raw newline. Anything else takes the streaming path.

Bad input never hides good input: when a value cannot be decoded at offset *o*, the decoder
resynchronises at the next ``{`` that starts a decodable object carrying a ``ContactId`` and
quarantines the span in between (file, byte offset, reason). A record that decodes but is not a
valid CTR (no ContactId, bad timestamp, wrong type) is quarantined alone.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from cdr_assets.connect.schema import STAGED_NAMES

RAW_KEEP_CHARS = 64 << 10
_WS = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()
_fromiso = datetime.fromisoformat
_ESCAPED = re.compile("[\udc80-\udcff]")


@dataclass
class Bad:
    offset: int  # byte offset in the file
    code: str
    reason: str
    raw: bytes


@dataclass
class Parsed:
    rows: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in STAGED_NAMES})
    bad: list[Bad] = field(default_factory=list)
    records: int = 0  # values found in the file (= rows + bad records/spans)

    @property
    def row_count(self) -> int:
        return len(self.rows["contact_id"])


class _Offsets:
    """Char offsets -> byte offsets, in one forward pass (identity for ASCII text)."""

    def __init__(self, text: str):
        self.text, self.ascii = text, text.isascii()
        self.char, self.byte = 0, 0

    def __call__(self, pos: int) -> int:
        if self.ascii:
            return pos
        if pos < self.char:
            self.char, self.byte = 0, 0
        self.byte += len(self.text[self.char : pos].encode("utf-8", "surrogateescape"))
        self.char = pos
        return self.byte


def iter_values(text: str) -> Any:
    """Yield ``(start, end, value, error)`` for each top-level value; ``value`` None on error."""
    n = len(text)
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    array = pos < n and text[pos] == "["
    if array:
        pos += 1
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if array:
            while pos < n and text[pos] in ",]":
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        if pos >= n:
            return
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            nxt = _resync(text, pos + 1)
            yield pos, nxt, None, f"invalid JSON at char {exc.pos}: {exc.msg}"
            pos = nxt
            continue
        yield pos, end, value, None
        pos = end


def _resync(text: str, pos: int) -> int:
    """The next position at or after ``pos`` where a decodable object with a ContactId starts."""
    while True:
        pos = text.find("{", pos)
        if pos < 0:
            return len(text)
        try:
            value, _ = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and "ContactId" in value:
            return pos
        pos += 1


def _fast_lines(text: str) -> list[tuple[int, int, Any]] | None:
    """Newline-separated objects decoded with orjson, or None when the file is not that."""
    if "\n" not in text.strip():
        return None
    out = []
    pos = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped:
            if stripped[0] != "{":
                return None
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return None
            if not isinstance(value, dict):
                return None
            start = pos + (len(line) - len(line.lstrip()))
            out.append((start, start + len(stripped), value))
        pos += len(line) + 1
    return out


def decode_file(data: bytes) -> tuple[str, str | None]:
    """Bytes of a delivery -> text (gunzipped when gzip), and a note when bytes were not UTF-8."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        # Undecodable bytes become lone surrogates: offsets and raw bytes stay exact.
        return data.decode("utf-8", "surrogateescape"), f"invalid UTF-8 at byte {exc.start}"


def parse_file(data: bytes, source_key: str) -> Parsed:
    """Every record of one delivery as a flattened row, or as a quarantine entry."""
    out = Parsed()
    try:
        text, utf8_error = decode_file(data)
    except (OSError, EOFError) as exc:
        out.bad.append(Bad(0, "bad_gzip", f"not readable as gzip: {exc}", data[:RAW_KEEP_CHARS]))
        out.records = 1
        return out
    to_byte = _Offsets(text)
    fast = None if utf8_error else _fast_lines(text)
    values = ((s, e, v, None) for s, e, v in fast) if fast is not None else iter_values(text)
    for start, end, value, error in values:
        out.records += 1
        raw = text[start:end]
        if error is not None:
            code, reason = "invalid_json", error
        elif utf8_error and _ESCAPED.search(raw):
            code, reason = "invalid_utf8", utf8_error
        else:
            invalid = flatten(value, out.rows, source_key, out.records - 1)
            if invalid is None:
                continue
            code, _, reason = invalid.partition(": ")
        out.bad.append(
            Bad(to_byte(start), code, reason, raw[:RAW_KEEP_CHARS].encode("utf-8", "surrogateescape"))
        )
    return out


def _ts(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value) == 20 and value[19] == "Z":  # the CTR format, fast
        try:
            return _fromiso(value[:19])
        except ValueError:
            pass
    if not isinstance(value, str):
        raise _Invalid(f"bad_timestamp: {name} is {type(value).__name__}, not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"bad_timestamp: {name} is {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(_UTC).replace(tzinfo=None)
    return parsed.replace(microsecond=0)


_INT64_MAX = 2**63 - 1


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"bad_type: {name} is {value!r}, not a number")
    if value < 0:
        raise _Invalid(f"bad_value: {name} is negative ({value})")
    # NaN and Infinity (which Python's decoder accepts) and values past a BIGINT cannot be staged.
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"bad_value: {name} is {value!r}, not a finite number")
    if value > _INT64_MAX:
        raise _Invalid(f"bad_value: {name} is {value!r}, beyond a 64-bit integer")
    return int(value)


def _str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _Invalid(f"bad_type: {name} is {type(value).__name__}, not a string")


def _obj(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"bad_type: {name} is {type(value).__name__}, not an object")
    return value


class _Invalid(Exception):
    pass


_UTC = datetime.fromisoformat("2000-01-01T00:00:00+00:00").tzinfo


def flatten(rec: Any, rows: dict[str, list[Any]], source_key: str, record_no: int) -> str | None:
    """Append ``rec`` as one row to ``rows``; return a quarantine reason instead when invalid.

    ``record_no`` is the record's position among the values of its file. ``record_hash`` is left
    empty: ``ctr_reader.finish`` sets it, for the rows of both staging paths alike."""
    if not isinstance(rec, dict):
        return f"bad_record: top-level value is {type(rec).__name__}, not an object"
    try:
        row = _row(rec)
    except _Invalid as exc:
        return str(exc)
    row["record_hash"] = None
    row["source_key"] = source_key
    row["source_record"] = record_no
    for name, value in row.items():
        rows[name].append(value)
    return None


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    contact_id = rec.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise _Invalid("bad_record: no ContactId")
    agent, queue = _obj(rec.get("Agent"), "Agent"), _obj(rec.get("Queue"), "Queue")
    cust = _obj(rec.get("CustomerEndpoint"), "CustomerEndpoint")
    system = _obj(rec.get("SystemEndpoint"), "SystemEndpoint")
    xfer = _obj(rec.get("TransferredToEndpoint"), "TransferredToEndpoint")
    profile = _obj(agent.get("RoutingProfile"), "Agent.RoutingProfile")
    groups = _obj(agent.get("HierarchyGroups"), "Agent.HierarchyGroups")
    recording = _obj(rec.get("Recording"), "Recording")
    recordings = rec.get("Recordings") or []
    attributes = _obj(rec.get("Attributes"), "Attributes")
    initiated = _ts(rec.get("InitiationTimestamp"), "InitiationTimestamp")
    updated = _ts(rec.get("LastUpdateTimestamp"), "LastUpdateTimestamp")
    if initiated is None or updated is None:
        raise _Invalid("bad_record: no InitiationTimestamp or LastUpdateTimestamp")
    location = recording.get("Location")
    if location is None and isinstance(recordings, list):
        location = next(
            (r.get("Location") for r in recordings if isinstance(r, dict) and r.get("Location")), None
        )
    row: dict[str, Any] = {
        "contact_id": contact_id,
        "initial_contact_id": _str(rec.get("InitialContactId"), "InitialContactId"),
        "previous_contact_id": _str(rec.get("PreviousContactId"), "PreviousContactId"),
        "next_contact_id": _str(rec.get("NextContactId"), "NextContactId"),
        "aws_account_id": _str(rec.get("AWSAccountId"), "AWSAccountId"),
        "instance_arn": _str(rec.get("InstanceARN"), "InstanceARN"),
        "format_version": _str(rec.get("AWSContactTraceRecordFormatVersion"), "FormatVersion"),
        "channel": _str(rec.get("Channel"), "Channel"),
        "initiation_method": _str(rec.get("InitiationMethod"), "InitiationMethod"),
        "initiation_timestamp": initiated,
        "connected_to_system_timestamp": _ts(
            rec.get("ConnectedToSystemTimestamp"), "ConnectedToSystemTimestamp"
        ),
        "disconnect_timestamp": _ts(rec.get("DisconnectTimestamp"), "DisconnectTimestamp"),
        "last_update_timestamp": updated,
        "transfer_completed_timestamp": _ts(
            rec.get("TransferCompletedTimestamp"), "TransferCompletedTimestamp"
        ),
        "disconnect_reason": _str(rec.get("DisconnectReason"), "DisconnectReason"),
        "agent_connection_attempts": _int(rec.get("AgentConnectionAttempts"), "AgentConnectionAttempts"),
        "customer_endpoint_type": _str(cust.get("Type"), "CustomerEndpoint.Type"),
        "customer_endpoint_address": _str(cust.get("Address"), "CustomerEndpoint.Address"),
        "system_endpoint_type": _str(system.get("Type"), "SystemEndpoint.Type"),
        "system_endpoint_address": _str(system.get("Address"), "SystemEndpoint.Address"),
        "transferred_to_endpoint_type": _str(xfer.get("Type"), "TransferredToEndpoint.Type"),
        "transferred_to_endpoint_address": _str(xfer.get("Address"), "TransferredToEndpoint.Address"),
        "agent_arn": _str(agent.get("ARN"), "Agent.ARN"),
        "agent_username": _str(agent.get("Username"), "Agent.Username"),
        "connected_to_agent_timestamp": _ts(agent.get("ConnectedToAgentTimestamp"), "Agent.ConnectedToAgent"),
        "agent_interaction_duration": _int(agent.get("AgentInteractionDuration"), "AgentInteractionDuration"),
        "customer_hold_duration": _int(agent.get("CustomerHoldDuration"), "CustomerHoldDuration"),
        "longest_hold_duration": _int(agent.get("LongestHoldDuration"), "LongestHoldDuration"),
        "number_of_holds": _int(agent.get("NumberOfHolds"), "NumberOfHolds"),
        "acw_duration": _int(agent.get("AfterContactWorkDuration"), "AfterContactWorkDuration"),
        "acw_start_timestamp": _ts(agent.get("AfterContactWorkStartTimestamp"), "AfterContactWorkStart"),
        "acw_end_timestamp": _ts(agent.get("AfterContactWorkEndTimestamp"), "AfterContactWorkEnd"),
        "routing_profile_arn": _str(profile.get("ARN"), "RoutingProfile.ARN"),
        "routing_profile_name": _str(profile.get("Name"), "RoutingProfile.Name"),
        "queue_arn": _str(queue.get("ARN"), "Queue.ARN"),
        "queue_name": _str(queue.get("Name"), "Queue.Name"),
        "enqueue_timestamp": _ts(queue.get("EnqueueTimestamp"), "Queue.EnqueueTimestamp"),
        "dequeue_timestamp": _ts(queue.get("DequeueTimestamp"), "Queue.DequeueTimestamp"),
        "queue_duration": _int(queue.get("Duration"), "Queue.Duration"),
        "recording_location": _str(location, "Recording.Location"),
        "recording_status": _str(recording.get("Status"), "Recording.Status"),
        "with_voice_mail": location is not None,
        "customer_intent": _str(attributes.get("Intent"), "Attributes.Intent"),
        "attributes": orjson.dumps(attributes).decode() if attributes else None,  # normalised in finish
    }
    for level, arn_col, name_col in _LEVELS:
        group = groups.get(level)
        if group is None:
            row[arn_col] = row[name_col] = None
            continue
        group = _obj(group, level)
        row[arn_col] = _str(group.get("ARN"), arn_col)
        row[name_col] = _str(group.get("GroupName"), name_col)
    return row


_LEVELS = tuple((f"Level{n}", f"hierarchy_l{n}_arn", f"hierarchy_l{n}_name") for n in range(1, 6))
