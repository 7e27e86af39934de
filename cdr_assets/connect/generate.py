"""A synthetic Amazon Connect contact center, written as Kinesis Firehose CTR files (pure code).

Agents with routing profiles and a 3-level hierarchy (some change routing profile during the
period), queues, repeat customers, abandoned contacts, transfer chains (InitialContactId /
PreviousContactId / NextContactId), chats and tasks beside voice, updated versions of some
contacts (a later LastUpdateTimestamp), duplicate deliveries, and attribute values holding
``}{``, braces and newlines. Files are keyed by delivery time like Firehose
(``<prefix>YYYY/MM/DD/HH/<stream>-1-<YYYY-MM-DD-HH-MM-SS>-<uuid>``), half concatenated with no
delimiter, half newline-separated. One ``random.Random(seed)`` drives everything.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from cdr_assets.storage import Storage

INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/9f3c2a1e-0000-4000-8000-00000000c0de"
PROFILES = ("Sales", "Support", "Billing", "VIP")
QUEUES = ("BasicQueue", "Sales", "Support", "Billing", "VIP")
INTENTS = ("billing", "new_order", "cancel", "tech_issue", "status")
NOTES = ('customer said "}{" twice', "{escalate: true}", "line one\nline two {", "plain", "")


@dataclass
class CtrSummary:
    files: int = 0
    contacts: int = 0
    records: int = 0
    updated_versions: int = 0
    duplicate_deliveries: int = 0
    abandoned: int = 0
    transfers: int = 0
    channels: Counter[str] = field(default_factory=Counter)
    per_delivery_day: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class VoiceContact:
    """A generated voice contact that reached an agent: what its recordings are made from."""

    contact_id: str
    agent_id: str  # the last part of the agent's ARN
    connected_at: datetime  # to the agent (UTC): the call recording starts here
    disconnect_at: datetime
    after_call_seconds: int


def _ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Center:
    def __init__(self, rng: random.Random, agents: int, customers: int, start: int, end: int):
        self.rng = rng
        self.agents = []
        for i in range(agents):
            region, site = rng.choice(("EMEA", "AMER", "APAC")), rng.randint(1, 3)
            change = rng.randint(start, end) if rng.random() < 0.2 else None
            self.agents.append(
                {
                    "arn": f"{INSTANCE}/agent/{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                    "user": f"agent.{i:03d}",
                    "profiles": (rng.choice(PROFILES), rng.choice(PROFILES)),
                    "change_at": change,
                    "groups": [
                        (f"{INSTANCE}/agent-group/{name.lower()}", name)
                        for name in (region, f"{region}-site{site}", f"{region}-site{site}-team{i % 4}")
                    ],
                }
            )
        self.customers = [
            ("TELEPHONE_NUMBER", f"+1555{rng.randrange(10**7):07d}") for _ in range(max(customers, 1))
        ]

    def agent_block(self, agent: dict[str, Any], at: int, talk: int, hold: int, acw: int, connected: int):
        first, second = agent["profiles"]
        profile = second if agent["change_at"] is not None and at >= agent["change_at"] else first
        groups = {f"Level{n}": None for n in range(1, 6)}
        for n, (arn, name) in enumerate(agent["groups"], 1):
            groups[f"Level{n}"] = {"ARN": arn, "GroupName": name}
        end = connected + talk + hold
        return {
            "ARN": agent["arn"],
            "Username": agent["user"],
            "ConnectedToAgentTimestamp": _ts(connected),
            "AgentInteractionDuration": talk,
            "CustomerHoldDuration": hold,
            "LongestHoldDuration": hold,
            "NumberOfHolds": 1 if hold else 0,
            "AfterContactWorkDuration": acw,
            "AfterContactWorkStartTimestamp": _ts(end),
            "AfterContactWorkEndTimestamp": _ts(end + acw),
            "RoutingProfile": {"ARN": f"{INSTANCE}/routing-profile/{profile.lower()}", "Name": profile},
            "HierarchyGroups": groups,
        }

    def contact(
        self, at: int, method: str = "INBOUND", previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        rng = self.rng
        channel = "VOICE" if previous else rng.choices(("VOICE", "CHAT", "TASK"), (80, 15, 5))[0]
        cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind, address = previous["CustomerEndpoint"].values() if previous else rng.choice(self.customers)
        queue = rng.choice(QUEUES)
        enqueue = at + rng.randint(2, 30)
        wait = int(rng.expovariate(1 / 25)) + 1
        abandoned = previous is None and rng.random() < 0.08
        rec: dict[str, Any] = {
            "AWSAccountId": "123456789012",
            "AWSContactTraceRecordFormatVersion": "2017-03-10",
            "Agent": None,
            "AgentConnectionAttempts": 0 if abandoned else 1,
            "Attributes": {"Intent": rng.choice(INTENTS), "Notes": rng.choice(NOTES)},
            "Channel": channel,
            "ConnectedToSystemTimestamp": _ts(at),
            "ContactId": cid,
            "CustomerEndpoint": {"Type": kind, "Address": address},
            "DisconnectReason": rng.choice(("CUSTOMER_DISCONNECT", "AGENT_DISCONNECT")),
            "InitialContactId": (previous.get("InitialContactId") or previous["ContactId"])
            if previous
            else None,
            "InitiationMethod": method,
            "InitiationTimestamp": _ts(at),
            "InstanceARN": INSTANCE,
            "NextContactId": None,
            "PreviousContactId": previous["ContactId"] if previous else None,
            "Queue": {
                "ARN": f"{INSTANCE}/queue/{queue.lower()}",
                "Name": queue,
                "EnqueueTimestamp": _ts(enqueue),
                "DequeueTimestamp": _ts(enqueue + wait),
                "Duration": wait,
            },
            "Recording": None,
            "SystemEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+18005550100"},
            "TransferCompletedTimestamp": None,
            "TransferredToEndpoint": None,
        }
        if abandoned:
            rec["DisconnectTimestamp"] = _ts(enqueue + wait)
            rec["DisconnectReason"] = "CUSTOMER_DISCONNECT"
        else:
            talk, hold = int(rng.expovariate(1 / 240)) + 10, rng.choice((0, 0, 0, rng.randint(5, 120)))
            acw = rng.randint(0, 60)
            agent = rng.choice(self.agents)
            rec["Agent"] = self.agent_block(agent, at, talk, hold, acw, enqueue + wait)
            rec["DisconnectTimestamp"] = _ts(enqueue + wait + talk + hold)
            if channel == "VOICE":
                rec["Recording"] = {
                    "Location": f"connect-recordings/connect/demo/CallRecordings/{cid}.wav",
                    "Status": "AVAILABLE",
                    "Type": "AUDIO",
                }
        end = enqueue + wait + (0 if abandoned else int(rec["Agent"]["AgentInteractionDuration"]) + 60)
        rec["LastUpdateTimestamp"] = _ts(end + rng.randint(30, 300))
        return rec


def generate_ctrs(
    storage: Storage,
    bucket: str,
    *,
    contacts: int,
    days: int,
    start: date,
    seed: int = 0,
    prefix: str = "ctr/",
    agents: int = 40,
    records_per_file: int = 500,
    alias: str = "demo-instance",
    voice_contacts: list[VoiceContact] | None = None,
) -> CtrSummary:
    """Write ``contacts`` contacts over ``days`` days from ``start`` as Firehose files.

    Voice contacts that reached an agent name their call recording as Connect would
    (``<bucket>/connect/<alias>/CallRecordings/...``) and, if ``voice_contacts`` is given, are
    appended to it so that recordings can be generated for them.
    """
    rng = random.Random(seed)
    t0 = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    t1 = t0 + days * 86400
    center = _Center(rng, agents, contacts // 3, t0, t1)
    summary = CtrSummary()
    deliveries: list[tuple[int, bytes]] = []

    def deliver(rec: dict[str, Any], updated_epoch: int) -> None:
        data = orjson.dumps(rec)
        deliveries.append((updated_epoch + rng.randint(5, 600), data))
        summary.records += 1
        if rng.random() < 0.02:  # at-least-once: the same record again, later
            deliveries.append((updated_epoch + rng.randint(600, 7200), data))
            summary.duplicate_deliveries += 1

    made = 0
    while made < contacts:
        at = rng.randint(t0, t1 - 3600)
        chain = [center.contact(at)]
        if chain[0]["Agent"] is not None and rng.random() < 0.05 and made + 1 < contacts:
            xfer = center.contact(at + 200, "TRANSFER", previous=chain[0])
            chain[0]["NextContactId"] = xfer["ContactId"]
            chain[0]["TransferredToEndpoint"] = {"Type": "TELEPHONE_NUMBER", "Address": "+18005550199"}
            chain[0]["TransferCompletedTimestamp"] = chain[0]["DisconnectTimestamp"]
            chain.append(xfer)
            summary.transfers += 1
        for rec in chain:
            if rec["Recording"] is not None:
                _link_recording(rec, bucket, alias, voice_contacts)
            made += 1
            summary.contacts += 1
            summary.channels[rec["Channel"]] += 1
            summary.abandoned += rec["Agent"] is None
            updated = int(datetime.fromisoformat(rec["LastUpdateTimestamp"]).timestamp())
            deliver(rec, updated)
            if rng.random() < 0.1:  # an updated version: new attributes, a later timestamp
                later = dict(rec, Attributes={**rec["Attributes"], "Survey": "{score: 5}"})
                later["LastUpdateTimestamp"] = _ts(updated + rng.randint(60, 86400))
                deliver(later, updated + 86400)
                summary.updated_versions += 1

    by_hour: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for when, data in deliveries:
        by_hour[when // 3600].append((when, data))
    per_day: Counter[str] = Counter()
    for hour in sorted(by_hour):
        batch = sorted(by_hour[hour])
        for i in range(0, len(batch), records_per_file):
            part = batch[i : i + records_per_file]
            delivered = datetime.fromtimestamp(part[-1][0], UTC)
            sep = b"" if rng.random() < 0.5 else b"\n"
            key = (
                f"{prefix}{delivered:%Y/%m/%d/%H}/connect-ctr-stream-1-"
                f"{delivered:%Y-%m-%d-%H-%M-%S}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            )
            storage.put(bucket, key, sep.join(d for _, d in part))
            summary.files += 1
            per_day[delivered.date().isoformat()] += len(part)
    summary.per_delivery_day = dict(sorted(per_day.items()))
    return summary


def _link_recording(rec: dict[str, Any], bucket: str, alias: str, out: list[VoiceContact] | None) -> None:
    from cdr_assets.recordings.generate import recording_key

    agent = rec["Agent"]
    connected = datetime.fromisoformat(agent["ConnectedToAgentTimestamp"].replace("Z", "+00:00"))
    key = recording_key(alias, rec["ContactId"], connected.replace(tzinfo=None))
    rec["Recording"]["Location"] = f"{bucket}/{key}"
    if out is not None:
        out.append(
            VoiceContact(
                contact_id=rec["ContactId"],
                agent_id=agent["ARN"].rsplit("/", 1)[-1],
                connected_at=connected,
                disconnect_at=datetime.fromisoformat(rec["DisconnectTimestamp"].replace("Z", "+00:00")),
                after_call_seconds=int(agent["AfterContactWorkDuration"]),
            )
        )
