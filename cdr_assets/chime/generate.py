"""Synthetic Amazon Chime SDK Voice Connector CDRs, written the way Chime delivers them.

Pure code (no Dagster). One compact JSON object per call under
``Amazon-Chime-Voice-Connector-CDRs/json/<vc>/<YYYY>/<MM>/<DD>/<HH.MM.SS.mmm>_<TransactionId>``,
the key dated by *delivery* time, not call time. The output carries what real buckets carry:
the schema quirks of real records, duplicate and late deliveries, deliveries that cross
midnight, and a few malformed or foreign objects under valid-looking keys.
Everything derives from one ``random.Random(seed)``, so a seed always gives the same bytes.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from cdr_assets.storage import Storage

CDR_ROOT = "Amazon-Chime-Voice-Connector-CDRs/json/"

BAD_KINDS: tuple[str, ...] = (
    "truncated_json",
    "not_json",
    "empty_object",
    "empty_json_object",
    "wrong_type",
    "missing_field",
    "end_before_start",
    "negative_duration",
    "sdr_record",
    "business_calling_record",
    "sma_record",
    "json_array",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_S = 86_400
_DAY_MS = _DAY_S * 1000
_REGIONS = (("us-east-1", "USE1"), ("us-west-2", "USW2"))
_SIP_HOST = "@203.0.113.9:8080"
# RFC 4122 version 4: version nibble 4, variant bits 10.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
_FAIL_MESSAGES = ("User Busy", "No Answer", "Unallocated Number", "Call Rejected")
# Fields whose loss makes a record unusable downstream (missing_field picks one).
_REQUIRED = (
    "VoiceConnectorId",
    "EndTimeEpochSeconds",
    "StartTimeEpochSeconds",
    "TransactionId",
    "BillableDurationSeconds",
)
# Call volume by hour of day (UTC taken as the business day): night trough, morning ramp,
# lunch dip, afternoon peak, evening tail. Weekends carry about a third of a weekday.
_HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 19, 17, 13, 15, 18, 17, 14, 10, 7, 5, 4, 3, 2, 1,
)  # fmt: skip
_WEEKEND_WEIGHT = 0.35
_LOG_MEDIAN_CALL_S = math.log(180)  # lognormal durations, median 3 min
_MAX_CALL_S = 7200


@dataclass
class GenerationSummary:
    objects_written: int  # every object put into the bucket
    calls: int  # distinct valid calls
    duplicate_deliveries: int  # extra deliveries of a call already written
    late_deliveries: int  # valid calls whose key date is after the call's end date (UTC)
    bad_objects: dict[str, int] = field(default_factory=dict)
    voice_connectors: list[str] = field(default_factory=list)
    per_delivery_day: dict[str, int] = field(default_factory=dict)


@dataclass
class _VoiceConnector:
    id: str
    region: str
    usage_prefix: str
    dids: list[tuple[str, str]]  # the account's own numbers: (E.164, country)
    customers: list[tuple[str, str]]  # repeat callers, frequent ones first
    sip_users: list[str]
    streaming_rate: float


def cdr_key(voice_connector_id: str, delivered_at: datetime, transaction_id: str) -> str:
    """The S3 key Chime uses; a naive ``delivered_at`` is taken as UTC."""
    dt = delivered_at.replace(tzinfo=UTC) if delivered_at.tzinfo is None else delivered_at
    dt = dt.astimezone(UTC)
    return (
        f"{CDR_ROOT}{voice_connector_id}/{dt:%Y/%m/%d/%H.%M.%S}.{dt.microsecond // 1000:03d}_{transaction_id}"
    )


_day_paths: dict[int, str] = {}


def _key_at(vc_id: str, delivered_ms: int, transaction_id: str) -> str:
    """``cdr_key`` from integer epoch milliseconds, without datetime formatting per key."""
    seconds, ms = divmod(delivered_ms, 1000)
    day, second_of_day = divmod(seconds, _DAY_S)
    day_path = _day_paths.get(day)
    if day_path is None:
        day_path = _day_paths[day] = f"{_EPOCH + timedelta(days=day):%Y/%m/%d}"
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    return f"{CDR_ROOT}{vc_id}/{day_path}/{hour:02d}.{minute:02d}.{second:02d}.{ms:03d}_{transaction_id}"


def _uuid(rng: random.Random) -> str:
    # Same value as str(uuid.UUID(int=..., version=4)), at a third of the cost.
    n = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _phone(rng: random.Random, *, allow_international: bool) -> tuple[str, str]:
    roll = rng.random() if allow_international else 1.0
    if roll < 0.04:
        return f"+447700900{rng.randrange(1000):03d}", "GB"
    if roll < 0.07:
        return f"+4930{rng.randrange(10**7, 10**8)}", "DE"
    if roll < 0.09:
        return f"+331{rng.randrange(10**7, 10**8)}", "FR"
    # NANP: area code and exchange start with 2-9.
    return (
        f"+1{rng.randint(2, 9)}{rng.randrange(100):02d}"
        f"{rng.randint(2, 9)}{rng.randrange(100):02d}{rng.randrange(10000):04d}",
        "US",
    )


def _voice_connectors(rng: random.Random, count: int) -> list[_VoiceConnector]:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    # Ids first, so they depend on the seed alone and not on the other settings.
    ids = ["".join(rng.choice(alphabet) for _ in range(20)) for _ in range(count)]
    vcs = []
    for i, vc_id in enumerate(ids):
        region, prefix = _REGIONS[i % len(_REGIONS)]
        vcs.append(
            _VoiceConnector(
                id=vc_id,
                region=region,
                usage_prefix=prefix,
                dids=[_phone(rng, allow_international=False) for _ in range(rng.randint(3, 8))],
                customers=[_phone(rng, allow_international=True) for _ in range(400)],
                sip_users=[str(rng.randint(1000, 9999)) for _ in range(rng.randint(5, 40))],
                streaming_rate=rng.choice((0.0, 0.1, 0.8)),
            )
        )
    return vcs


def _customer(rng: random.Random, vc: _VoiceConnector) -> tuple[str, str]:
    if rng.random() < 0.25:  # one-off caller
        return _phone(rng, allow_international=True)
    # Squared uniform skews toward the pool's head: a few numbers call very often.
    return vc.customers[int(len(vc.customers) * rng.random() ** 2)]


def _call_record(rng: random.Random, account: str, vc: _VoiceConnector, start: int) -> dict[str, Any]:
    """One valid schema-2.0 CDR for a call starting at ``start`` (epoch seconds)."""
    if rng.random() < 0.9:
        status = "Completed"
        message = "OK" if rng.random() < 0.6 else "Normal Call Clearing"
        length = round(rng.lognormvariate(_LOG_MEDIAN_CALL_S, 1.0))
        duration = min(_MAX_CALL_S, max(1, length))
        billable = -(-duration // 6) * 6
    else:
        status, message = "Failed", rng.choice(_FAIL_MESSAGES)
        duration, billable = int(rng.random() * 41), 0  # ring time only
    own, customer = rng.choice(vc.dids), _customer(rng, vc)
    if rng.random() < 0.55:
        direction, (src, src_cc), (dst, dst_cc) = "Outbound", own, customer
    else:
        direction, (src, src_cc), (dst, dst_cc) = "Inbound", customer, own
    call_id = f"{rng.getrandbits(128):032x}{_SIP_HOST}" if rng.random() < 0.5 else _uuid(rng)
    record: dict[str, Any] = {
        "AwsAccountId": account,
        "TransactionId": _uuid(rng),
        "CallId": call_id,
        "VoiceConnectorId": vc.id,
        "Status": status,
        "StatusMessage": message,
    }
    if rng.random() < 0.5:
        record["SipAuthUser"] = rng.choice(vc.sip_users)
    record.update(
        {
            "BillableDurationSeconds": billable,
            # Real records write integer 0, not 0.0, for unbilled calls.
            "BillableDurationMinutes": round(billable / 60, 1) if billable else 0,
            "SchemaVersion": "2.0",
            "SourcePhoneNumber": src,
            "SourceCountry": src_cc,
            "DestinationPhoneNumber": dst,
            "DestinationCountry": dst_cc,
            "UsageType": f"{vc.usage_prefix}-{src_cc}-{dst_cc}-{direction.lower()}-minutes",
            "ServiceCode": "AmazonChimeVoiceConnector",
            "Direction": direction,
            "StartTimeEpochSeconds": start,
            "EndTimeEpochSeconds": start + duration,
            "Region": vc.region,
            "Streaming": rng.random() < vc.streaming_rate,
        }
    )
    if rng.random() >= 0.2:  # older records lack IsProxyCall
        record["IsProxyCall"] = rng.random() < 0.03
    if rng.random() < 0.03:
        # Records enriched by a pricing step: extra key, and key order scrambled.
        record["pricePerUnitUSD"] = "0.0048000000"
        items = list(record.items())
        rng.shuffle(items)
        record = dict(items)
    return record


class _Clock:
    """Draws call start times over the window with the daily and weekly curve."""

    def __init__(self, start: date, days: int):
        self.base = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
        day_weights = [
            _WEEKEND_WEIGHT if (start + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(days)
        ]
        self.day_cum = _cumulative(day_weights)
        self.hour_cum = _cumulative([float(w) for w in _HOUR_WEIGHTS])

    def draw(self, rng: random.Random) -> int:
        day = bisect.bisect_right(self.day_cum, rng.random() * self.day_cum[-1])
        hour = bisect.bisect_right(self.hour_cum, rng.random() * self.hour_cum[-1])
        return self.base + day * _DAY_S + hour * 3600 + int(rng.random() * 3600)


def _cumulative(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _delivery_delay_ms(rng: random.Random) -> int:
    # Chime writes a CDR seconds after hang-up; a thin tail takes a couple of minutes.
    return 2000 + min(148_000, int(rng.expovariate(1 / 12_000)))


def _bad_payload(
    kind: str, rng: random.Random, account: str, vc: _VoiceConnector, start: int
) -> tuple[bytes, str]:
    """Bytes for one malformed or foreign object, and the TransactionId for its key."""
    record = _call_record(rng, account, vc, start)
    tid = record["TransactionId"]
    if kind == "truncated_json":
        data = orjson.dumps(record)
        return data[: len(data) // 2], tid
    if kind == "not_json":
        # Gzip magic then noise: what a compressed or binary upload looks like.
        return b"\x1f\x8b\x08\x00" + rng.randbytes(rng.randint(60, 250)), tid
    if kind == "empty_object":
        return b"", tid
    if kind == "empty_json_object":
        return b"{}", tid
    if kind == "wrong_type":
        field_name = rng.choice(("BillableDurationSeconds", "StartTimeEpochSeconds", "Streaming"))
        value = record[field_name]
        record[field_name] = str(value).lower() if isinstance(value, bool) else str(value)
    elif kind == "missing_field":
        del record[rng.choice(_REQUIRED)]
    elif kind == "end_before_start":
        record["EndTimeEpochSeconds"] = record["StartTimeEpochSeconds"] - rng.randint(1, 600)
    elif kind == "negative_duration":
        seconds = rng.randint(1, 100) * 6
        record["BillableDurationSeconds"] = -seconds
        record["BillableDurationMinutes"] = -round(seconds / 60, 1)
    elif kind == "sdr_record":
        record = {
            "SchemaVersion": "1.0",
            "AwsAccountId": account,
            "TransactionId": tid,
            "CallId": record["CallId"],
            "VoiceConnectorId": vc.id,
            "StartTimeEpochSeconds": record["StartTimeEpochSeconds"],
            "EndTimeEpochSeconds": record["EndTimeEpochSeconds"],
            "Status": "Completed",
            "StatusMessage": "Streaming succeeded",
            "ServiceCode": "AmazonChime",
            "UsageType": f"{vc.usage_prefix}-VC-kinesis-audio-streaming",
            "BillableDurationSeconds": max(6, record["BillableDurationSeconds"]),
            "Region": vc.region,
        }
    elif kind == "business_calling_record":
        seconds = max(6, record["BillableDurationSeconds"])
        record = {
            "SchemaVersion": "2.0",
            "CdrId": tid,
            "ServiceCode": "AmazonChimeBusinessCalling",
            "ChimeAccountId": _uuid(rng),
            "AwsAccountId": account,
            "CallerPhoneNumber": record["SourcePhoneNumber"],
            "CallerCountry": record["SourceCountry"],
            "DestinationPhoneNumber": record["DestinationPhoneNumber"],
            "DestinationCountry": record["DestinationCountry"],
            # Business Calling writes numbers as strings, minutes like ".4".
            "StartTimeEpochSeconds": str(record["StartTimeEpochSeconds"]),
            "EndTimeEpochSeconds": str(record["EndTimeEpochSeconds"]),
            "BillableDurationSeconds": str(seconds),
            "BillableDurationMinutes": f"{seconds / 60:.1f}".removeprefix("0"),
            "Direction": record["Direction"],
        }
    elif kind == "sma_record":
        record = {
            "AwsAccountId": account,
            "TransactionId": tid,
            "CallId": _uuid(rng),
            "Status": record["Status"],
            "BillableDurationSeconds": record["BillableDurationSeconds"],
            "SchemaVersion": "1.0",
            "SourcePhoneNumber": record["SourcePhoneNumber"],
            "DestinationPhoneNumber": record["DestinationPhoneNumber"],
            "UsageType": f"{vc.usage_prefix}-sip-media-application-minutes",
            "ServiceCode": "AmazonChimeSDKVoice",
            "Direction": record["Direction"],
            "TimeStampEpochSeconds": record["StartTimeEpochSeconds"],
            "Region": vc.region,
            "SipRuleId": _uuid(rng),
            "SipMediaApplicationId": _uuid(rng),
            "CallLegTriggerType": "ToPhoneNumber",
            "BillableDurationMinutes": record["BillableDurationMinutes"],
        }
    elif kind == "json_array":
        return orjson.dumps([record, _call_record(rng, account, vc, start)]), tid
    else:
        raise ValueError(f"unknown bad object kind {kind!r}")
    return orjson.dumps(record), tid


def generate_cdrs(
    storage: Storage,
    bucket: str,
    *,
    calls: int,
    days: int,
    start: date,
    seed: int = 0,
    bad_fraction: float = 0.01,
    duplicate_fraction: float = 0.02,
    late_fraction: float = 0.01,
    voice_connectors: int = 4,
) -> GenerationSummary:
    """Write ``calls`` valid CDRs over ``days`` days from ``start`` (UTC), plus the noise.

    ``late_deliveries`` counts every valid call whose first delivery is keyed on a later
    UTC date than its end: the 1-3-day-late ones and the ones crossing midnight.
    """
    if calls < 0 or days < 1 or voice_connectors < 1:
        raise ValueError("need calls >= 0, days >= 1 and voice_connectors >= 1")
    for name, value in (
        ("bad_fraction", bad_fraction),
        ("duplicate_fraction", duplicate_fraction),
        ("late_fraction", late_fraction),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {value}")

    rng = random.Random(seed)
    vcs = _voice_connectors(rng, voice_connectors)
    account = f"{rng.randint(1, 9)}{rng.randrange(10**11):011d}"
    clock = _Clock(start, days)

    n_late = round(calls * late_fraction)
    # Calls pinned to end at 23:59:5x so some deliveries surely land on the next day.
    n_midnight = min(calls - n_late, calls // 1000)
    special = rng.sample(range(calls), n_late + n_midnight)
    late, midnight = set(special[:n_late]), set(special[n_late:])
    duplicated = set(rng.sample(range(calls), round(calls * duplicate_fraction)))

    day_counts: Counter[int] = Counter()
    written = late_count = duplicates = 0

    def put(vc_id: str, delivered_ms: int, tid: str, data: bytes) -> None:
        nonlocal written
        storage.put(bucket, _key_at(vc_id, delivered_ms, tid), data)
        day_counts[delivered_ms // _DAY_MS] += 1
        written += 1

    for i in range(calls):
        vc = vcs[int(len(vcs) * rng.random() ** 1.5)]  # uneven load across connectors
        record = _call_record(rng, account, vc, clock.draw(rng))
        end = record["EndTimeEpochSeconds"]
        delivered = end * 1000 + int(rng.random() * 1000) + _delivery_delay_ms(rng)
        if i in midnight:
            length = end - record["StartTimeEpochSeconds"]
            end = (end // _DAY_S + 1) * _DAY_S - rng.randint(1, 9)
            record["StartTimeEpochSeconds"], record["EndTimeEpochSeconds"] = end - length, end
            delivered = end * 1000 + rng.randint(15_000, 120_000)
        elif i in late:
            delivered += rng.randint(1, 3) * _DAY_MS
        data = orjson.dumps(record)
        tid = record["TransactionId"]
        put(vc.id, delivered, tid, data)
        if delivered // _DAY_MS > end // _DAY_S:
            late_count += 1
        if i in duplicated:
            # Same bytes redelivered minutes to hours later, now and then the next day.
            put(vc.id, delivered + rng.randint(60_000, 12 * 3600 * 1000), tid, data)
            duplicates += 1

    bad_counts: Counter[str] = Counter()
    for j in range(round(calls * bad_fraction)):
        kind = BAD_KINDS[j % len(BAD_KINDS)]
        vc = rng.choice(vcs)
        call_start = clock.draw(rng)
        data, tid = _bad_payload(kind, rng, account, vc, call_start)
        put(vc.id, (call_start + 60) * 1000 + _delivery_delay_ms(rng), tid, data)
        bad_counts[kind] += 1

    return GenerationSummary(
        objects_written=written,
        calls=calls,
        duplicate_deliveries=duplicates,
        late_deliveries=late_count,
        bad_objects={kind: bad_counts[kind] for kind in BAD_KINDS if bad_counts[kind]},
        voice_connectors=[vc.id for vc in vcs],
        per_delivery_day={
            (_EPOCH + timedelta(days=day)).date().isoformat(): n for day, n in sorted(day_counts.items())
        },
    )
