"""Vectorised parsing of a Firehose CTR file (pure code): the fast path of ``parse.parse_file``.

The streaming decoder in ``parse`` flattens each CTR in Python (~90 us a record, most of a bulk
load). Here a clean file is split into its records on bytes, and all records are decoded and
typed at once by Arrow's JSON reader with an explicit schema of the nested CTR fields; the
flattening is struct-field access on the result.

This path only *accepts* what it can prove it reads exactly as the streaming decoder would, and
returns None otherwise; the caller then takes the streaming decoder for the whole file, so bad
spans, odd shapes and quarantine reasons stay the decoder's. Declined: gzip errors, invalid
UTF-8, JSON arrays, records not back to back (anything but whitespace between them), raw
``\\r``/``\\n`` inside a record (pretty-printed: the reader needs one record a line), ``\\\\`` or
``\\u`` anywhere (quote parity and the ``Attributes`` lookup below rely on their absence), any
value of the wrong JSON type (the reader is strict: ``3.0`` for an integer, ``5`` for a string,
duplicate keys all fail), negative durations, a missing or empty ContactId, a missing
Initiation/LastUpdate timestamp, a timestamp not exactly ``YYYY-MM-DDTHH:MM:SSZ``, and an
``Attributes`` map with nested objects.
"""

from __future__ import annotations

import hashlib
import io
import re

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from cdr_assets.connect.schema import STAGED_SCHEMA, TS

# A `}` followed (after optional whitespace) by `{`: a record boundary unless inside a string.
_CANDIDATE = re.compile(rb"\}[ \t\r\n]*\{")
# `"Attributes"` as a key, then a flat object (no nested braces outside strings).
_ATTRIBUTES = re.compile(rb'"Attributes"[ \t]*:[ \t]*(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})')
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TS_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$"

_S = pa.string()
_I = pa.int64()
_ENDPOINT = pa.struct([("Type", _S), ("Address", _S)])
_GROUP = pa.struct([("ARN", _S), ("GroupName", _S)])
# Only the fields the flattening reads: other fields are ignored, as the decoder ignores them.
_CTR = pa.schema(
    [
        ("ContactId", _S),
        ("InitialContactId", _S),
        ("PreviousContactId", _S),
        ("NextContactId", _S),
        ("AWSAccountId", _S),
        ("InstanceARN", _S),
        ("AWSContactTraceRecordFormatVersion", _S),
        ("Channel", _S),
        ("InitiationMethod", _S),
        ("InitiationTimestamp", _S),
        ("ConnectedToSystemTimestamp", _S),
        ("DisconnectTimestamp", _S),
        ("LastUpdateTimestamp", _S),
        ("TransferCompletedTimestamp", _S),
        ("DisconnectReason", _S),
        ("AgentConnectionAttempts", _I),
        ("CustomerEndpoint", _ENDPOINT),
        ("SystemEndpoint", _ENDPOINT),
        ("TransferredToEndpoint", _ENDPOINT),
        (
            "Agent",
            pa.struct(
                [
                    ("ARN", _S),
                    ("Username", _S),
                    ("ConnectedToAgentTimestamp", _S),
                    ("AgentInteractionDuration", _I),
                    ("CustomerHoldDuration", _I),
                    ("LongestHoldDuration", _I),
                    ("NumberOfHolds", _I),
                    ("AfterContactWorkDuration", _I),
                    ("AfterContactWorkStartTimestamp", _S),
                    ("AfterContactWorkEndTimestamp", _S),
                    ("RoutingProfile", pa.struct([("ARN", _S), ("Name", _S)])),
                    ("HierarchyGroups", pa.struct([(f"Level{n}", _GROUP) for n in range(1, 6)])),
                ]
            ),
        ),
        (
            "Queue",
            pa.struct(
                [
                    ("ARN", _S),
                    ("Name", _S),
                    ("EnqueueTimestamp", _S),
                    ("DequeueTimestamp", _S),
                    ("Duration", _I),
                ]
            ),
        ),
        ("Recording", pa.struct([("Location", _S), ("Status", _S)])),
        ("Recordings", pa.list_(pa.struct([("Location", _S)]))),
        ("Attributes", pa.struct([("Intent", _S)])),
    ]
)
_PARSE = pj.ParseOptions(explicit_schema=_CTR, unexpected_field_behavior="ignore")

# staged column -> path in the CTR; the rest are derived below.
_PATHS: dict[str, tuple[str, ...]] = {
    "contact_id": ("ContactId",),
    "initial_contact_id": ("InitialContactId",),
    "previous_contact_id": ("PreviousContactId",),
    "next_contact_id": ("NextContactId",),
    "aws_account_id": ("AWSAccountId",),
    "instance_arn": ("InstanceARN",),
    "format_version": ("AWSContactTraceRecordFormatVersion",),
    "channel": ("Channel",),
    "initiation_method": ("InitiationMethod",),
    "initiation_timestamp": ("InitiationTimestamp",),
    "connected_to_system_timestamp": ("ConnectedToSystemTimestamp",),
    "disconnect_timestamp": ("DisconnectTimestamp",),
    "last_update_timestamp": ("LastUpdateTimestamp",),
    "transfer_completed_timestamp": ("TransferCompletedTimestamp",),
    "disconnect_reason": ("DisconnectReason",),
    "agent_connection_attempts": ("AgentConnectionAttempts",),
    "customer_endpoint_type": ("CustomerEndpoint", "Type"),
    "customer_endpoint_address": ("CustomerEndpoint", "Address"),
    "system_endpoint_type": ("SystemEndpoint", "Type"),
    "system_endpoint_address": ("SystemEndpoint", "Address"),
    "transferred_to_endpoint_type": ("TransferredToEndpoint", "Type"),
    "transferred_to_endpoint_address": ("TransferredToEndpoint", "Address"),
    "agent_arn": ("Agent", "ARN"),
    "agent_username": ("Agent", "Username"),
    "connected_to_agent_timestamp": ("Agent", "ConnectedToAgentTimestamp"),
    "agent_interaction_duration": ("Agent", "AgentInteractionDuration"),
    "customer_hold_duration": ("Agent", "CustomerHoldDuration"),
    "longest_hold_duration": ("Agent", "LongestHoldDuration"),
    "number_of_holds": ("Agent", "NumberOfHolds"),
    "acw_duration": ("Agent", "AfterContactWorkDuration"),
    "acw_start_timestamp": ("Agent", "AfterContactWorkStartTimestamp"),
    "acw_end_timestamp": ("Agent", "AfterContactWorkEndTimestamp"),
    "routing_profile_arn": ("Agent", "RoutingProfile", "ARN"),
    "routing_profile_name": ("Agent", "RoutingProfile", "Name"),
    **{
        f"hierarchy_l{n}_{part}": ("Agent", "HierarchyGroups", f"Level{n}", key)
        for n in range(1, 6)
        for part, key in (("arn", "ARN"), ("name", "GroupName"))
    },
    "queue_arn": ("Queue", "ARN"),
    "queue_name": ("Queue", "Name"),
    "enqueue_timestamp": ("Queue", "EnqueueTimestamp"),
    "dequeue_timestamp": ("Queue", "DequeueTimestamp"),
    "queue_duration": ("Queue", "Duration"),
    "recording_status": ("Recording", "Status"),
    "customer_intent": ("Attributes", "Intent"),
}


class _Decline(Exception):
    """The file is not one this path reads exactly like the streaming decoder."""


def split_records(data: bytes) -> list[tuple[int, int]] | None:
    """``(start, end)`` byte spans of back-to-back objects, or None when the file is not that.

    A candidate ``}...{`` is a boundary when an even number of quotes precedes it (it is then
    outside any string); with no ``\\\\`` in the file, ``\\"`` is exactly an escaped quote."""
    start = len(data) - len(data.lstrip())
    end = len(data.rstrip())
    if start >= end or data[start] != 0x7B or data[end - 1] != 0x7D or b"\\\\" in data or b"\\u" in data:
        return None
    spans, seg, quotes, counted = [], start, 0, start
    for m in _CANDIDATE.finditer(data, start, end):
        pos = m.start()
        quotes += data.count(b'"', counted, pos) - data.count(b'\\"', counted, pos)
        counted = pos
        if quotes % 2 == 0:
            spans.append((seg, pos + 1))
            seg = m.end() - 1
    spans.append((seg, end))
    return spans


def _decode(data: bytes) -> tuple[pa.Table, list[bytes], list[int]] | None:
    """The file's records as nested Arrow structs, their raw bytes and offsets; None to decline."""
    if data[:2] == b"\x1f\x8b":
        return None  # gzip: rare for CTRs; the decoder handles it and its errors
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    spans = split_records(data)
    if spans is None:
        return None
    segments = [data[s:e] for s, e in spans]
    if any(b"\n" in s or b"\r" in s for s in segments):
        return None
    try:
        ctrs = pj.read_json(
            io.BytesIO(b"\n".join(segments)),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 20)),
            parse_options=_PARSE,
        )
    except pa.ArrowException:
        return None
    return (ctrs, segments, [s for s, _ in spans]) if ctrs.num_rows == len(segments) else None


def parse_many(files: list[tuple[bytes, str]]) -> list[pa.Table | None]:
    """``parse_fast`` of each ``(data, source_key)``, flattening all accepted files at once (the
    Arrow calls cost ~0.1 ms each, too much per file of a few hundred records)."""
    decoded = [_decode(data) for data, _ in files]
    accepted = [(d, key) for d, (_, key) in zip(decoded, files, strict=True) if d is not None]
    out: list[pa.Table | None] = [None] * len(files)
    if not accepted:
        return out
    try:
        table = _flatten(
            pa.concat_tables([d[0] for d, _ in accepted]),
            [s for d, _ in accepted for s in d[1]],
            [o for d, _ in accepted for o in d[2]],
            [key for d, key in accepted for _ in d[1]],
        )
        parts = iter(_split(table, [len(d[1]) for d, _ in accepted]))
        return [next(parts) if d is not None else None for d in decoded]
    except (pa.ArrowException, _Decline):
        pass
    # Some file is declined: find which, one file at a time (rare).
    for i, d in enumerate(decoded):
        if d is not None:
            try:
                out[i] = _flatten(d[0], d[1], d[2], [files[i][1]] * len(d[1]))
            except (pa.ArrowException, _Decline):
                out[i] = None
    return out


def parse_fast(data: bytes, source_key: str) -> pa.Table | None:
    """All records of a clean delivery as a STAGED_SCHEMA table, or None to take the decoder."""
    return parse_many([(data, source_key)])[0]


def _split(table: pa.Table, counts: list[int]) -> list[pa.Table]:
    out, at = [], 0
    for n in counts:
        out.append(table.slice(at, n))
        at += n
    return out


def _field(ctrs: pa.Table, path: tuple[str, ...], tops: dict[str, pa.Array]) -> pa.Array:
    if path[0] not in tops:
        tops[path[0]] = ctrs.column(path[0]).combine_chunks()
    arr = tops[path[0]]
    for name in path[1:]:
        arr = pc.struct_field(arr, name)  # null where a parent object is null
    return arr


def _timestamp(arr: pa.Array) -> pa.Array:
    parsed = pc.strptime(arr, format=_TS_FORMAT, unit="s", error_is_null=True)
    if parsed.null_count != arr.null_count:
        raise _Decline
    # Exactly the decoder's fast form. strptime rolls Feb 30 over to March and :60 to the next
    # minute where Python refuses: the pattern bounds the fields, the day must read back.
    if parsed.null_count < len(parsed) and (
        not pc.all(pc.match_substring_regex(arr, _TS_PATTERN)).as_py()
        or not pc.all(pc.equal(pc.day(parsed), pc.utf8_slice_codeunits(arr, 8, 10).cast(_I))).as_py()
        or pc.min(pc.year(parsed)).as_py() < 1
    ):
        raise _Decline
    return parsed.cast(TS)


def _attributes(ctrs: pa.Table, segments: list[bytes]) -> pa.Array:
    """The Attributes map as sorted-key JSON (None when absent or empty), as the decoder writes it."""
    present = pc.is_valid(ctrs.column("Attributes")).to_pylist()
    out: list[str | None] = []
    for seg, has in zip(segments, present, strict=True):
        if not has:
            out.append(None)
            continue
        # One literal `"Attributes"` (no \u escapes in the file) is the top-level key.
        if seg.count(b'"Attributes"') != 1:
            raise _Decline
        m = _ATTRIBUTES.search(seg)
        if m is None:
            raise _Decline
        value = orjson.loads(m.group(1))
        out.append(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if value else None)
    return pa.array(out, _S)


def _recording_location(ctrs: pa.Table, tops: dict[str, pa.Array]) -> pa.Array:
    location = _field(ctrs, ("Recording", "Location"), tops)
    listed = ctrs.column("Recordings").combine_chunks()
    fill = pc.and_(pc.is_null(location), pc.is_valid(listed))
    if not pc.any(fill).as_py():
        return location
    # Rare: the first non-empty Location of the Recordings list, as the decoder does.
    values = location.to_pylist()
    for i in pc.indices_nonzero(fill).to_pylist():
        values[i] = next((r["Location"] for r in listed[i].as_py() if r and r["Location"]), None)
    return pa.array(values, _S)


def _flatten(ctrs: pa.Table, segments: list[bytes], offsets: list[int], keys: list[str]) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    tops: dict[str, pa.Array] = {}
    for name, typ in zip(STAGED_SCHEMA.names, STAGED_SCHEMA.types, strict=True):
        path = _PATHS.get(name)
        if path is None:
            continue
        arr = _field(ctrs, path, tops)
        if typ == TS:
            arr = _timestamp(arr)
        elif typ == _I and len(arr) and (pc.min(arr).as_py() or 0) < 0:
            raise _Decline  # the decoder quarantines negative numbers
        cols[name] = arr
    contact = cols["contact_id"]
    if contact.null_count or (len(contact) and pc.min(pc.utf8_length(contact)).as_py() == 0):
        raise _Decline
    if cols["initiation_timestamp"].null_count or cols["last_update_timestamp"].null_count:
        raise _Decline
    location = _recording_location(ctrs, tops)
    cols["recording_location"] = location
    cols["with_voice_mail"] = pc.is_valid(location)
    cols["attributes"] = _attributes(ctrs, segments)
    cols["record_hash"] = pa.array([hashlib.blake2b(s, digest_size=12).hexdigest() for s in segments], _S)
    cols["source_key"] = pa.array(keys, _S)
    cols["source_offset"] = pa.array(offsets, _I)
    return pa.table([cols[n] for n in STAGED_SCHEMA.names], schema=STAGED_SCHEMA)
