"""Small, explicit CDR objects for tests (the generator makes realistic volumes)."""

from datetime import UTC, date, datetime, timedelta

import orjson

from cdr_assets.chime.generate import cdr_key

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


def put_cdr(store, bucket: str, record: dict | bytes, delivered: datetime, txn: str | None = None) -> str:
    txn = txn or (record["TransactionId"] if isinstance(record, dict) else "bad")
    vc = record.get("VoiceConnectorId", VC) if isinstance(record, dict) else VC
    k = cdr_key(vc, delivered, txn)
    store.put(bucket, k, record if isinstance(record, bytes) else orjson.dumps(record))
    return k


def at(day: date, hms: str = "12:00:00") -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=UTC)
