"""The vectorised path gives exactly the streaming decoder's rows, or declines the file."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from typing import Any

import pytest

from cdr_assets.connect.fastparse import parse_fast, split_records
from cdr_assets.connect.generate import generate_ctrs
from cdr_assets.connect.parse import parse_file
from cdr_assets.storage import LocalStorage
from cdr_assets_tests.conftest import SAMPLES
from cdr_assets_tests.connect.factory import concatenated, ctr, sample_versions

T = datetime(2026, 3, 1, 9, 0, 0)


def _same(data: bytes, *, fast_expected: bool) -> None:
    fast, slow = parse_file(data, "k"), parse_file(data, "k", fast=False)
    assert (fast.arrow is not None) == fast_expected
    assert fast.table().equals(slow.table())
    assert fast.records == slow.records and fast.bad == slow.bad


def _real_records() -> list[dict[str, Any]]:
    return [*sample_versions(), json.loads((SAMPLES / "connect_ctr_sample_single.json").read_text())]


@pytest.mark.parametrize("sep", ["", "\n", "\r\n", " \n\n "])
def test_real_samples_compact_take_the_fast_path(sep):
    _same(concatenated(_real_records(), sep), fast_expected=True)


@pytest.mark.parametrize("name", ["connect_ctr_duplicated_samples.json", "connect_ctr_sample_single.json"])
def test_real_sample_files_as_published_fall_back(name):
    # An array of records, and a pretty-printed record: the decoder's job, same rows either way.
    _same((SAMPLES / name).read_bytes(), fast_expected=False)


def test_generated_contact_center_files(tmp_path):
    store = LocalStorage(tmp_path)
    store.ensure_bucket("b")
    generate_ctrs(store, "b", contacts=400, days=2, start=date(2026, 1, 5), seed=3, records_per_file=60)
    keys = [o.key for o in store.list_objects("b", "ctr/")]
    assert len(keys) > 4
    for key in keys:
        _same(store.get("b", key), fast_expected=True)


def _edited(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    rec = ctr("e1", T, attributes={"Intent": "billing", "n": "x"})
    rec["Queue"] = rec["Queue"] or {}
    node = rec
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return rec


# (edit, whether the fast path takes it): every edit must give the decoder's rows either way.
EDITS = [
    ((("Agent",), None), True),
    ((("Queue",), None), True),
    ((("Agent", "HierarchyGroups"), None), True),
    ((("Agent", "HierarchyGroups", "Level2"), {"ARN": "a2", "GroupName": "G", "X": [1, {"x": 2}]}), True),
    ((("MediaStreams",), [{"Type": "AUDIO"}]), True),
    ((("Recording",), {"Location": "b/r.wav", "Status": "AVAILABLE", "Type": "AUDIO"}), True),
    ((("Recordings",), [{"Location": ""}, {"Location": "b/second.wav"}]), True),
    ((("Recordings",), [None, {"Status": "x"}]), True),
    ((("Attributes",), {}), True),
    ((("Attributes",), None), True),
    ((("Attributes",), {"z": "1", "a": "}{\"}", "Intent": "x", "num": 3, "nil": None}), True),
    ((("Attributes",), {"nested": {"a": 1}}), False),
    ((("Attributes",), {"Intent": 7}), False),
    ((("Agent", "Username"), "Zoë 名"), True),
    ((("Agent", "Username"), 'say "hi" }{'), True),
    ((("Agent", "Username"), "back\\slash"), False),
    ((("Agent", "AgentInteractionDuration"), -1), False),
    ((("Agent", "AgentInteractionDuration"), 3.0), False),
    ((("Agent", "AgentInteractionDuration"), True), False),
    ((("AgentConnectionAttempts",), "1"), False),
    ((("InitiationTimestamp",), "2026-03-01T10:00:00+01:00"), False),
    ((("InitiationTimestamp",), "2026-03-01T09:00:00.5Z"), False),
    ((("DisconnectTimestamp",), ""), False),
    ((("DisconnectTimestamp",), "2026-02-30T09:00:00Z"), False),
    ((("LastUpdateTimestamp",), None), False),
    ((("ContactId",), ""), False),
    ((("ContactId",), None), False),
    ((("Channel",), 5), False),
    ((("Agent",), "nobody"), False),
    ((("Notes",), "Attributes"), False),  # a second literal "Attributes": declined, not guessed
]


@pytest.mark.parametrize(("edit", "fast"), EDITS, ids=[f"{'.'.join(e[0][0])}={e[0][1]!r}" for e in EDITS])
@pytest.mark.parametrize("sep", ["", "\n"])
def test_unusual_records_match_the_decoder(edit, fast, sep):
    path, value = edit
    records = [ctr("before", T), _edited(path, value), ctr("after", T)]
    _same(concatenated(records, sep), fast_expected=fast)


def test_escaped_attributes_key_and_nested_attributes_key_fall_back():
    rec = ctr("n1", T, attributes={"Intent": "a"})
    rec["Agent"]["Attributes"] = {"Intent": "nested"}  # a second key named Attributes
    _same(concatenated([rec]), fast_expected=False)
    plain = concatenated([ctr("n2", T, attributes={"Intent": "b"})])
    escaped = plain.replace(b'"Attributes"', b'"Attribut\\u0065s"')
    _same(escaped, fast_expected=False)


def test_bad_input_falls_back_and_is_quarantined_the_same():
    good = concatenated([ctr("g1", T), ctr("g2", T)])
    for data in (good + b"garbage", good[:-5], b"[" + good + b"]", good + b"\xff", b"", b"  \n"):
        assert parse_fast(data, "k") is None
        _same(data, fast_expected=False)


def test_split_ignores_braces_inside_strings():
    recs = [ctr(f"s{i}", T, attributes={"a": '}{ "}  {', "b": '\\"}{'.replace("\\", "")}) for i in range(3)]
    data = concatenated(recs, "")
    spans = split_records(data)
    assert spans is not None and [json.loads(data[s:e])["ContactId"] for s, e in spans] == ["s0", "s1", "s2"]


def test_latest_version_inputs_hash_alike_on_both_paths():
    # Exact duplicate deliveries hash alike, so the warehouse's tie-break is path-independent.
    versions = copy.deepcopy(sample_versions())
    fast = parse_file(concatenated(versions, "\n"), "k")
    assert fast.arrow is not None and len(set(fast.rows["record_hash"])) == 3
