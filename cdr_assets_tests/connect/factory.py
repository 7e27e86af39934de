"""Build CTRs and Firehose files for tests."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import duckdb

from cdr_assets.connect.warehouse import STAR_TABLES
from cdr_assets_tests.conftest import SAMPLES

INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222-3333-4444-555555555555"


def sample_versions() -> list[dict[str, Any]]:
    """The 6 real deliveries of one contact (3 versions, each twice)."""
    return json.loads((SAMPLES / "connect_ctr_duplicated_samples.json").read_text())


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def ctr(
    contact_id: str,
    initiated: datetime,
    *,
    updated: datetime | None = None,
    agent: str | None = "alice",
    profile: str = "Sales",
    queue: str | None = "Support",
    phone: str = "+15550001111",
    wait: int = 10,
    talk: int = 100,
    hold: int = 5,
    acw: int = 7,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A plausible CTR; ``agent=None`` with a queue is an abandoned contact."""
    enqueue = initiated + timedelta(seconds=3)
    connected = enqueue + timedelta(seconds=wait)
    end = connected + timedelta(seconds=talk + hold) if agent else enqueue + timedelta(seconds=wait)
    rec: dict[str, Any] = {
        "AWSAccountId": "123456789012",
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "Agent": None,
        "AgentConnectionAttempts": 1 if agent else 0,
        "Attributes": attributes or {},
        "Channel": "VOICE",
        "ConnectedToSystemTimestamp": _ts(initiated),
        "ContactId": contact_id,
        "CustomerEndpoint": {"Address": phone, "Type": "TELEPHONE_NUMBER"},
        "DisconnectReason": "CUSTOMER_DISCONNECT",
        "DisconnectTimestamp": _ts(end),
        "InitialContactId": None,
        "InitiationMethod": "INBOUND",
        "InitiationTimestamp": _ts(initiated),
        "InstanceARN": INSTANCE,
        "LastUpdateTimestamp": _ts(updated or end + timedelta(seconds=60)),
        "NextContactId": None,
        "PreviousContactId": None,
        "Queue": None,
        "Recording": None,
        "SystemEndpoint": {"Address": "+18005550100", "Type": "TELEPHONE_NUMBER"},
        "TransferCompletedTimestamp": None,
        "TransferredToEndpoint": None,
    }
    if queue:
        rec["Queue"] = {
            "ARN": f"{INSTANCE}/queue/{queue}",
            "Name": queue,
            "EnqueueTimestamp": _ts(enqueue),
            "DequeueTimestamp": _ts(connected),
            "Duration": wait,
        }
    if agent:
        rec["Agent"] = {
            "ARN": f"{INSTANCE}/agent/{agent}",
            "Username": agent,
            "ConnectedToAgentTimestamp": _ts(connected),
            "AgentInteractionDuration": talk,
            "CustomerHoldDuration": hold,
            "LongestHoldDuration": hold,
            "NumberOfHolds": 1 if hold else 0,
            "AfterContactWorkDuration": acw,
            "AfterContactWorkStartTimestamp": _ts(end),
            "AfterContactWorkEndTimestamp": _ts(end + timedelta(seconds=acw)),
            "RoutingProfile": {"ARN": f"{INSTANCE}/routing-profile/{profile}", "Name": profile},
            "HierarchyGroups": {
                "Level1": {"ARN": f"{INSTANCE}/agent-group/emea", "GroupName": "EMEA"},
                "Level2": None,
                "Level3": None,
                "Level4": None,
                "Level5": None,
            },
        }
    return rec


def concatenated(records: list[dict[str, Any]], sep: str = "") -> bytes:
    return sep.join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in records).encode()


def firehose_key(delivered: datetime, prefix: str = "ctr/", suffix: str | None = None) -> str:
    """Firehose's layout; ``suffix`` replaces the random uuid (to control the key order)."""
    stamp = f"{delivered:%Y-%m-%d-%H-%M-%S}"
    return f"{prefix}{delivered:%Y/%m/%d/%H}/ctr-stream-1-{stamp}-{suffix or uuid.uuid4()}"


def put_firehose(store, bucket: str, delivered: datetime, data: bytes, suffix: str | None = None) -> str:
    key = firehose_key(delivered, suffix=suffix)
    store.put(bucket, key, data)
    return key


def with_update(rec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    out.update(changes)
    return out


def star_tables(conn: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Every star table's rows in order; fact_contact without ``loaded_at`` (when it was loaded)."""
    return {
        t: conn.execute(
            f"SELECT * {'EXCLUDE (loaded_at)' if t == 'fact_contact' else ''} FROM connect.{t} ORDER BY ALL"
        ).fetchall()
        for t in STAR_TABLES
    }
