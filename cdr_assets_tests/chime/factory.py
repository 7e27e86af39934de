"""Small, explicit CDR objects for tests (the generator makes realistic volumes)."""

from datetime import UTC, date, datetime, timedelta

import orjson

from cdr_assets.chime.schema import CDR_PREFIX

VC = "abcdef1ghij2klmno3pqr4"


def cdr(txn: str, end: datetime, *, duration: int = 60, vc: str = VC, **overrides: object) -> dict:
    start = end - timedelta(seconds=duration)
    record = {
        "AwsAccountId": "111122223333",
        "TransactionId": txn,
        "CallId": f"{txn}@203.0.113.9:8080",
        "VoiceConnectorId": vc,
        "Status": "Completed",
        "StatusMessage": "OK",
        "BillableDurationSeconds": duration,
        "BillableDurationMinutes": round(duration / 60, 1),
        "SchemaVersion": "2.0",
        "SourcePhoneNumber": "+12065550100",
        "SourceCountry": "US",
        "DestinationPhoneNumber": "+12065550101",
        "DestinationCountry": "US",
        "UsageType": "USE1-US-US-outbound-minutes",
        "ServiceCode": "AmazonChimeVoiceConnector",
        "Direction": "Outbound",
        "StartTimeEpochSeconds": int(start.timestamp()),
        "EndTimeEpochSeconds": int(end.timestamp()),
        "Region": "us-east-1",
        "Streaming": False,
        "IsProxyCall": False,
    }
    record.update(overrides)
    return record


def key(delivered: datetime, txn: str, vc: str = VC) -> str:
    return f"{CDR_PREFIX}{vc}/{delivered:%Y/%m/%d}/{delivered:%H.%M.%S}.{delivered.microsecond // 1000:03d}_{txn}"


def put_cdr(store, bucket: str, record: dict | bytes, delivered: datetime, txn: str | None = None) -> str:
    txn = txn or (record["TransactionId"] if isinstance(record, dict) else "bad")
    k = key(delivered, txn, record.get("VoiceConnectorId", VC) if isinstance(record, dict) else VC)
    store.put(bucket, k, record if isinstance(record, bytes) else orjson.dumps(record))
    return k


def at(day: date, hms: str = "12:00:00") -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=UTC)
