"""Tests for the synthetic Chime Voice Connector CDR generator."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_assets.chime.generate import (
    BAD_KINDS,
    CDR_ROOT,
    GenerationSummary,
    cdr_key,
    generate_cdrs,
)
from cdr_assets.storage import LocalStorage

BUCKET = "chime-cdrs"
KEY_RE = re.compile(
    rf"^{re.escape(CDR_ROOT)}(?P<vc>[a-z0-9]{{20}})/(?P<y>\d{{4}})/(?P<m>\d{{2}})/(?P<d>\d{{2}})/"
    r"(?P<H>\d{2})\.(?P<M>\d{2})\.(?P<S>\d{2})\.(?P<ms>\d{3})_(?P<tid>[0-9a-f-]{36})$"
)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "AwsAccountId": str,
    "TransactionId": str,
    "CallId": str,
    "VoiceConnectorId": str,
    "Status": str,
    "StatusMessage": str,
    "SipAuthUser": str,
    "BillableDurationSeconds": int,
    "BillableDurationMinutes": (int, float),
    "SchemaVersion": str,
    "SourcePhoneNumber": str,
    "SourceCountry": str,
    "DestinationPhoneNumber": str,
    "DestinationCountry": str,
    "UsageType": str,
    "ServiceCode": str,
    "Direction": str,
    "StartTimeEpochSeconds": int,
    "EndTimeEpochSeconds": int,
    "Region": str,
    "Streaming": bool,
    "IsProxyCall": bool,
    "pricePerUnitUSD": str,
}
OPTIONAL = {"SipAuthUser", "IsProxyCall", "pricePerUnitUSD"}
REQUIRED = set(FIELD_TYPES) - OPTIONAL
COUNTRY_PREFIX = {"US": "+1", "GB": "+44", "DE": "+49", "FR": "+33"}


@dataclass
class Obj:
    key: str
    data: bytes
    delivered: datetime
    kind: str  # "valid" or one of BAD_KINDS
    record: Any = None


@dataclass
class Run:
    summary: GenerationSummary
    objects: list[Obj]

    @property
    def valid(self) -> list[Obj]:
        return [o for o in self.objects if o.kind == "valid"]


def classify(data: bytes) -> tuple[str, Any]:
    """What a strict reader would make of an object: a valid CDR or which bad kind."""
    if not data:
        return "empty_object", None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ("truncated_json" if data.startswith(b"{") else "not_json"), None
    if isinstance(doc, list):
        return "json_array", doc
    if doc == {}:
        return "empty_json_object", doc
    if doc.get("ServiceCode") == "AmazonChimeBusinessCalling":
        return "business_calling_record", doc
    if "SipMediaApplicationId" in doc:
        return "sma_record", doc
    if doc.get("SchemaVersion") == "1.0" and doc.get("ServiceCode") == "AmazonChime":
        return "sdr_record", doc
    if not REQUIRED.issubset(doc):
        return "missing_field", doc
    for name, value in doc.items():
        expected = FIELD_TYPES[name]
        # bool is an int subclass; a bool where a number belongs is a wrong type too.
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            return "wrong_type", doc
    if doc["EndTimeEpochSeconds"] < doc["StartTimeEpochSeconds"]:
        return "end_before_start", doc
    if doc["BillableDurationSeconds"] < 0:
        return "negative_duration", doc
    return "valid", doc


def key_time(key: str) -> datetime:
    m = KEY_RE.match(key)
    assert m, key
    g = {k: int(v) for k, v in m.groupdict().items() if k not in ("vc", "tid")}
    return datetime(g["y"], g["m"], g["d"], g["H"], g["M"], g["S"], g["ms"] * 1000, tzinfo=UTC)


def generate(root: Path, **kwargs: Any) -> Run:
    storage = LocalStorage(root)
    storage.ensure_bucket(BUCKET)
    params: dict[str, Any] = {"calls": 3000, "days": 7, "start": date(2024, 3, 1), "seed": 1}
    params.update(kwargs)
    summary = generate_cdrs(storage, BUCKET, **params)
    objects = []
    for info in storage.list_objects(BUCKET):
        data = storage.get(BUCKET, info.key)
        kind, record = classify(data)
        objects.append(Obj(info.key, data, key_time(info.key), kind, record))
    return Run(summary, objects)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return generate(tmp_path_factory.mktemp("chime"))


def test_cdr_key_formats_delivery_time_in_utc() -> None:
    at = datetime(2024, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)
    expected = f"{CDR_ROOT}vc1/2024/01/02/03.04.05.678_tid"
    assert cdr_key("vc1", at, "tid") == expected
    assert cdr_key("vc1", at.replace(tzinfo=None), "tid") == expected
    assert cdr_key("vc1", at.astimezone(timezone(timedelta(hours=-5))), "tid") == expected


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    def snapshot(run: Run) -> dict[str, bytes]:
        return {o.key: o.data for o in run.objects}

    a = generate(tmp_path / "a", calls=500, seed=7)
    b = generate(tmp_path / "b", calls=500, seed=7)
    c = generate(tmp_path / "c", calls=500, seed=8)
    assert snapshot(a) == snapshot(b)
    assert a.summary == b.summary
    assert not snapshot(a).keys() & snapshot(c).keys()
    assert a.summary.voice_connectors != c.summary.voice_connectors


def test_key_layout(run: Run) -> None:
    vcs = set(run.summary.voice_connectors)
    assert len(vcs) == 4
    for obj in run.objects:
        m = KEY_RE.match(obj.key)
        assert m, obj.key
        assert m["vc"] in vcs
        if obj.kind == "valid":
            assert m["tid"] == obj.record["TransactionId"]
            assert m["vc"] == obj.record["VoiceConnectorId"]


def test_summary_counts_add_up(run: Run) -> None:
    s = run.summary
    assert s.calls == 3000
    assert s.objects_written == len(run.objects)
    assert s.objects_written == s.calls + s.duplicate_deliveries + sum(s.bad_objects.values())
    assert s.duplicate_deliveries == 60
    assert sum(s.bad_objects.values()) == 30
    by_day = Counter(o.delivered.date().isoformat() for o in run.objects)
    assert s.per_delivery_day == dict(by_day)
    assert list(s.per_delivery_day) == sorted(s.per_delivery_day)


def test_every_object_is_a_cdr_or_a_declared_bad_kind(run: Run) -> None:
    kinds = Counter(o.kind for o in run.objects if o.kind != "valid")
    assert dict(kinds) == run.summary.bad_objects
    assert set(kinds) == set(BAD_KINDS)  # 30 bad objects cycle through all 12 kinds
    assert len({o.record["TransactionId"] for o in run.valid}) == run.summary.calls


def test_valid_records_follow_schema_2(run: Run) -> None:
    regions = {}
    for obj in run.valid:
        r = obj.record
        assert r["SchemaVersion"] == "2.0"
        assert r["ServiceCode"] == "AmazonChimeVoiceConnector"
        assert re.fullmatch(r"\d{12}", r["AwsAccountId"])
        assert UUID_RE.match(r["TransactionId"])
        assert UUID_RE.match(r["CallId"]) or re.fullmatch(r"[0-9a-f]{32}@203\.0\.113\.9:8080", r["CallId"])
        assert r["Direction"] in ("Inbound", "Outbound")
        assert r["Region"] in ("us-east-1", "us-west-2")
        regions.setdefault(r["VoiceConnectorId"], set()).add(r["Region"])
        prefix = {"us-east-1": "USE1", "us-west-2": "USW2"}[r["Region"]]
        assert r["UsageType"] == (
            f"{prefix}-{r['SourceCountry']}-{r['DestinationCountry']}-{r['Direction'].lower()}-minutes"
        )
        for side in ("Source", "Destination"):
            number, country = r[f"{side}PhoneNumber"], r[f"{side}Country"]
            assert re.fullmatch(r"\+[1-9]\d{9,13}", number)
            assert number.startswith(COUNTRY_PREFIX[country])
            if country == "US":
                assert re.fullmatch(r"\+1[2-9]\d{2}[2-9]\d{6}", number)
        seconds, length = r["BillableDurationSeconds"], r["EndTimeEpochSeconds"] - r["StartTimeEpochSeconds"]
        assert 0 <= length <= 7200
        assert seconds % 6 == 0
        if r["Status"] == "Completed":
            assert r["StatusMessage"] in ("OK", "Normal Call Clearing")
            assert length <= seconds < length + 6
            assert r["BillableDurationMinutes"] == round(seconds / 60, 1)
        else:
            assert r["Status"] == "Failed"
            assert r["StatusMessage"] in (
                "User Busy",
                "No Answer",
                "Unallocated Number",
                "Call Rejected",
            )
            assert seconds == 0
    assert all(len(r) == 1 for r in regions.values())  # one region per connector


def test_duplicates_share_transaction_id_and_bytes(run: Run) -> None:
    by_tid: dict[str, list[Obj]] = defaultdict(list)
    for obj in run.valid:
        by_tid[obj.record["TransactionId"]].append(obj)
    dups = [objs for objs in by_tid.values() if len(objs) > 1]
    assert len(dups) == run.summary.duplicate_deliveries
    crossed_day = 0
    for objs in dups:
        assert len(objs) == 2
        first, second = sorted(objs, key=lambda o: o.delivered)
        assert first.data == second.data
        assert first.key != second.key
        crossed_day += second.delivered.date() > first.delivered.date()
    assert crossed_day > 0


def test_late_and_midnight_crossing_deliveries(run: Run) -> None:
    first: dict[str, Obj] = {}
    for obj in sorted(run.valid, key=lambda o: o.delivered):
        first.setdefault(obj.record["TransactionId"], obj)
    late = midnight = 0
    delays = []
    for obj in first.values():
        end = datetime.fromtimestamp(obj.record["EndTimeEpochSeconds"], UTC)
        delay = obj.delivered - end
        delays.append(delay)
        assert delay > timedelta(0)
        if obj.delivered.date() > end.date():
            late += 1
            if delay < timedelta(hours=1):
                midnight += 1
    assert late == run.summary.late_deliveries
    assert midnight >= 1
    assert sum(d > timedelta(days=1) for d in delays) == round(3000 * 0.01)
    # Normal deliveries come a few seconds to a couple of minutes after hang-up.
    prompt = [d for d in delays if d < timedelta(days=1)]
    assert all(timedelta(seconds=2) <= d <= timedelta(minutes=3) for d in prompt)


def test_real_world_quirks_present(run: Run) -> None:
    records = [o.record for o in run.valid]
    n = len(records)

    def share(pred: Any) -> float:
        return sum(1 for r in records if pred(r)) / n

    assert 0.12 < share(lambda r: "IsProxyCall" not in r) < 0.28
    assert 0.01 < share(lambda r: "pricePerUnitUSD" in r) < 0.06
    assert 0.35 < share(lambda r: "SipAuthUser" in r) < 0.65
    assert 0.05 < share(lambda r: r["Status"] == "Failed") < 0.15
    assert 0.3 < share(lambda r: r["Direction"] == "Inbound") < 0.7
    assert 0.2 < share(lambda r: "@" in r["CallId"]) < 0.8
    zero = [o.data for o in run.valid if o.record["BillableDurationSeconds"] == 0]
    assert zero and all(b'"BillableDurationMinutes":0,' in d or d.endswith(b":0}") for d in zero)
    assert all(o.data == orjson.dumps(o.record) for o in run.valid)  # compact, no whitespace
    countries = Counter(r["SourceCountry"] for r in records) + Counter(
        r["DestinationCountry"] for r in records
    )
    assert countries["US"] > 0.8 * 2 * n
    assert {"GB", "DE", "FR"} <= countries.keys()
    assert {r["Region"] for r in records} == {"us-east-1", "us-west-2"}


def test_customers_repeat_within_a_connector(run: Run) -> None:
    numbers: Counter[tuple[str, str]] = Counter()
    for obj in run.valid:
        r = obj.record
        side = "Source" if r["Direction"] == "Inbound" else "Destination"
        numbers[r["VoiceConnectorId"], r[f"{side}PhoneNumber"]] += 1
    assert sum(1 for count in numbers.values() if count >= 3) >= 20


def test_business_hours_are_busier(run: Run) -> None:
    hours = Counter(datetime.fromtimestamp(o.record["StartTimeEpochSeconds"], UTC).hour for o in run.valid)
    assert sum(hours[h] for h in range(9, 17)) > 5 * sum(hours[h] for h in range(0, 6))


def test_zero_fractions_write_only_valid_calls(tmp_path: Path) -> None:
    result = generate(tmp_path, calls=200, days=2, bad_fraction=0, duplicate_fraction=0, late_fraction=0)
    s = result.summary
    assert s.objects_written == s.calls == len(result.valid) == 200
    assert s.duplicate_deliveries == 0
    assert s.bad_objects == {}


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(ValueError):
        generate_cdrs(storage, BUCKET, calls=10, days=0, start=date(2024, 1, 1))
    with pytest.raises(ValueError):
        generate_cdrs(storage, BUCKET, calls=10, days=1, start=date(2024, 1, 1), bad_fraction=2)
