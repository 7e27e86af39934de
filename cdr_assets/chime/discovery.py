"""Find new raw CDR objects with a cost that grows with what is new, not with the bucket.

Per tick:
1. One delimiter listing finds the voice connectors (``json/<vc>/``).
2. For each voice connector and each day inside the look-back window, list the day prefix
   *after* the last key seen there (S3 ``StartAfter``): one request when nothing is new.
3. Chime names objects by delivery time, so new objects normally sort after the cursor. One
   that becomes visible late with an *earlier* name would be skipped by ``StartAfter``; to
   never miss it, each prefix keeps a count and an order-free digest (XOR of key hashes) of
   the keys up to its cursor, and a bounded *sweep* re-lists one prefix a tick (at most
   ``sweep_budget`` keys, resuming next tick). A mismatch means keys appeared behind the
   cursor, and the whole prefix up to the cursor is requested again; the run skips keys its
   ledger already holds, so it reads only the late objects.

Everything here is plain code over the ``Storage`` protocol; the Dagster sensor wraps it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date

import orjson

from cdr_assets.chime.ingest import KeyRange
from cdr_assets.chime.keys import day_of_prefix, day_prefix, days_back, voice_connector_of_prefix
from cdr_assets.chime.schema import CDR_PREFIX
from cdr_assets.storage import Storage

CURSOR_VERSION = 1


@dataclass(frozen=True)
class PrefixLayout:
    """Where a source keeps its day prefixes (the CDR lake by default; Connect CTRs reuse this).

    ``units`` lists the top-level units once per tick (voice connectors; ``[""]`` for a source
    without units), ``day_prefix(unit, day)`` is the prefix of one unit's day, and
    ``day_of_prefix`` reads the day back. ``name`` starts the run keys.
    """

    name: str
    units: Callable[[Storage, str], list[str]]
    day_prefix: Callable[[str, date], str]
    day_of_prefix: Callable[[str], date]


CHIME_LAYOUT = PrefixLayout(
    name="chime-cdrs",
    units=lambda storage, bucket: [
        voice_connector_of_prefix(p) for p in storage.list_prefixes(bucket, CDR_PREFIX)
    ],
    day_prefix=day_prefix,
    day_of_prefix=day_of_prefix,
)


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


@dataclass
class PrefixProgress:
    after: str | None = None  # last key seen (inclusive bound of what is done)
    count: int = 0  # keys seen up to ``after``
    digest: int = 0  # XOR of key_hash over those keys


@dataclass
class Sweep:
    prefix: str
    position: str | None = None
    count: int = 0
    digest: int = 0


@dataclass
class Cursor:
    prefixes: dict[str, PrefixProgress] = field(default_factory=dict)
    sweep: Sweep | None = None
    last_swept: str | None = None

    def to_json(self) -> str:
        doc = {
            "v": CURSOR_VERSION,
            "prefixes": {p: [s.after, s.count, f"{s.digest:016x}"] for p, s in self.prefixes.items()},
            "sweep": asdict(self.sweep) if self.sweep else None,
            "last_swept": self.last_swept,
        }
        return orjson.dumps(doc).decode()

    @classmethod
    def from_json(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        doc = orjson.loads(text)
        if doc.get("v") != CURSOR_VERSION:
            raise ValueError(f"unsupported CDR sensor cursor version {doc.get('v')!r}")
        return cls(
            prefixes={
                p: PrefixProgress(after, count, int(digest, 16))
                for p, (after, count, digest) in doc["prefixes"].items()
            },
            sweep=Sweep(**doc["sweep"]) if doc.get("sweep") else None,
            last_swept=doc.get("last_swept"),
        )


@dataclass
class DayRequest:
    """Work for one delivery day (one Dagster partition)."""

    day: date
    ranges: list[KeyRange]
    new_objects: int
    # Set when a sweep found keys behind the cursor: the prefix digest it found, so that a
    # second late arrival into the same prefix gets a run key of its own.
    late_digest: int | None = None
    source: str = CHIME_LAYOUT.name

    @property
    def run_key(self) -> str:
        payload = orjson.dumps([[r.prefix, r.start_after, r.end_at] for r in self.ranges])
        kind = "new" if self.late_digest is None else f"late-{self.late_digest:016x}"
        return f"{self.source}:{self.day}:{kind}:{hashlib.sha1(payload).hexdigest()[:16]}"


@dataclass
class TickStats:
    voice_connectors: int = 0
    prefixes_listed: int = 0
    new_objects: int = 0
    swept_keys: int = 0
    late_prefixes: list[str] = field(default_factory=list)


def discover(
    storage: Storage,
    bucket: str,
    cursor: Cursor,
    *,
    today: date,
    lookback_days: int,
    sweep_budget: int = 10_000,
    layout: PrefixLayout = CHIME_LAYOUT,
) -> tuple[list[DayRequest], Cursor, TickStats]:
    """One sensor tick: what is new since ``cursor``, and the cursor after it."""
    stats = TickStats()
    window = days_back(today, lookback_days)
    vcs = layout.units(storage, bucket)
    stats.voice_connectors = len(vcs)

    ranges: dict[date, list[KeyRange]] = defaultdict(list)
    counts: dict[date, int] = defaultdict(int)
    progress: dict[str, PrefixProgress] = {}
    for vc in vcs:
        for day in window:
            prefix = layout.day_prefix(vc, day)
            state = cursor.prefixes.get(prefix) or PrefixProgress()
            stats.prefixes_listed += 1
            new = [o.key for o in storage.list_objects(bucket, prefix, start_after=state.after)]
            if new:
                ranges[day].append(KeyRange(prefix, state.after, new[-1]))
                counts[day] += len(new)
                digest = state.digest
                for key in new:
                    digest ^= key_hash(key)
                state = PrefixProgress(new[-1], state.count + len(new), digest)
            if state.after is not None:
                progress[prefix] = state  # prefixes that left the window are dropped here
    stats.new_objects = sum(counts.values())
    requests = [DayRequest(day, ranges[day], counts[day], source=layout.name) for day in sorted(ranges)]

    nxt = Cursor(progress, cursor.sweep, cursor.last_swept)
    late = _sweep_step(storage, bucket, nxt, sweep_budget, stats, layout)
    if late is not None:
        requests.append(late)
    return requests, nxt, stats


def _sweep_step(
    storage: Storage,
    bucket: str,
    cursor: Cursor,
    budget: int,
    stats: TickStats,
    layout: PrefixLayout = CHIME_LAYOUT,
) -> DayRequest | None:
    """Advance the round-robin re-listing by at most ``budget`` keys; mutates ``cursor``."""
    if cursor.sweep is None or cursor.sweep.prefix not in cursor.prefixes:
        order = sorted(cursor.prefixes)
        if not order:
            cursor.sweep = None
            return None
        later = [p for p in order if cursor.last_swept is None or p > cursor.last_swept]
        cursor.sweep = Sweep(prefix=(later or order)[0])
    sweep = cursor.sweep
    state = cursor.prefixes[sweep.prefix]
    finished = True
    seen = 0
    for obj in storage.list_objects(bucket, sweep.prefix, start_after=sweep.position):
        if state.after is None or obj.key > state.after:
            break
        if seen >= budget:
            finished = False
            break
        sweep.position = obj.key
        sweep.count += 1
        sweep.digest ^= key_hash(obj.key)
        seen += 1
    stats.swept_keys += seen
    if not finished:
        return None

    cursor.sweep, cursor.last_swept = None, sweep.prefix
    if (sweep.count, sweep.digest) == (state.count, state.digest):
        return None
    # Keys appeared (or vanished) behind the cursor: take the prefix again up to the cursor.
    stats.late_prefixes.append(sweep.prefix)
    grew = sweep.count - state.count
    cursor.prefixes[sweep.prefix] = PrefixProgress(state.after, sweep.count, sweep.digest)
    return DayRequest(
        layout.day_of_prefix(sweep.prefix),
        [KeyRange(sweep.prefix, None, state.after)],
        new_objects=max(grew, 0),
        late_digest=sweep.digest,
        source=layout.name,
    )
