"""The sensor that requests merges of agent screen recordings whose inputs are all present.

A tick lists the agent-recording day folders of the look-back window (recordings and sidecars in
one listing per 1,000 keys), then reads ``recordings.unified`` and ``connect.fact_contact`` for
those contacts through a read-only DuckDB connection (a tick never waits for a writer: when a
run holds the file, the tick is skipped and the next one tries again), and checks the call audio
only of the recordings not yet done. Ready recordings become one run per day, keyed by the
contacts and their attempt counts, so a retry after backoff gets a run of its own.
"""

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cdr_assets import settings
from cdr_assets.recordings.merges import Plan, plan_merges
from cdr_assets.recordings.unified import AgentRecording, list_day, pending_retries
from cdr_assets.recordings.unified_assets import agent_recording_days, unified_call_recordings
from cdr_assets.resources import CdrStorage, RecordingsSettings, Warehouse


def _open_read_only(database: str) -> duckdb.DuckDBPyConnection | None:
    for delay in (0.05, 0.2, 0.5):
        try:
            return duckdb.connect(database, read_only=True)
        except duckdb.Error:  # a run holds the write lock, the file does not exist yet, or this
            # process has it open with another configuration
            time.sleep(delay)
    return None


@dataclass(frozen=True)
class Progress:
    """The sensor cursor: a digest of the last listing, how many waited for an input, the next retry."""

    listing: str = ""
    waiting: int = 0  # recordings waiting for an input, or requested and not yet merged
    retry_at: datetime | None = None  # naive UTC

    def to_json(self) -> str:
        at = self.retry_at.isoformat() if self.retry_at else None
        return json.dumps({"listing": self.listing, "waiting": self.waiting, "retry_at": at})

    def quiet(self, listing: str, now: datetime) -> bool:
        """Nothing new listed, nothing waiting or in flight, no retry due: no warehouse read needed."""
        no_retry_due = self.retry_at is None or self.retry_at > now
        return listing == self.listing and self.waiting == 0 and no_retry_due

    @classmethod
    def from_json(cls, text: str | None) -> "Progress":
        if not text:
            return cls()
        doc = json.loads(text)
        at = doc.get("retry_at")
        retry_at = datetime.fromisoformat(at) if at else None
        return cls(doc.get("listing", ""), int(doc.get("waiting", 0)), retry_at)


def _digest(recs: list[AgentRecording], sidecars: set[str]) -> str:
    h = hashlib.sha1()
    for key in sorted([r.key for r in recs] + list(sidecars)):
        h.update(key.encode() + b"\n")
    return h.hexdigest()


def run_requests(plan: Plan, first_day: date) -> list[RunRequest]:
    by_day: dict[date, list[AgentRecording]] = {}
    for rec in plan.ready:
        if rec.day >= first_day:
            by_day.setdefault(rec.day, []).append(rec)
    runs = []
    for day, recs in sorted(by_day.items()):
        ids = sorted(r.contact_id for r in recs)
        token = hashlib.sha1(",".join(f"{c}:{plan.attempts.get(c, 0)}" for c in ids).encode()).hexdigest()
        runs.append(
            RunRequest(
                run_key=f"unified:{day}:{token[:16]}",
                partition_key=day.isoformat(),
                run_config={"ops": {"unified_call_recordings": {"config": {"contact_ids": ids}}}},
                tags={"cdr_assets/contacts": str(len(ids))},
            )
        )
    return runs


@sensor(
    name="unified_recordings_sensor",
    target=[unified_call_recordings],
    minimum_interval_seconds=int(settings.get("CDR_SENSOR_INTERVAL_SECONDS")),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Finds agent screen recordings (with sidecar) of the last RECORDINGS_UNIFY_LOOKBACK_DAYS days whose "
        "contact record (connect.fact_contact) and Connect call audio are present and that are not merged, "
        "dead or backing off after a failure, and requests their merge, one run per day."
    ),
)
def unified_recordings_sensor(
    context: SensorEvaluationContext,
    storage: CdrStorage,
    warehouse: Warehouse,
    recordings_settings: RecordingsSettings,
) -> SensorResult:
    now = datetime.now(UTC)
    naive_now = now.replace(tzinfo=None)
    store, bucket, prefix = storage.get(), storage.connect_bucket, recordings_settings.agent_prefix
    recs: list[AgentRecording] = []
    sidecars: set[str] = set()
    for n in range(recordings_settings.unify_lookback_days + 1):
        day_recs, day_sidecars = list_day(store, bucket, prefix, (now - timedelta(n)).date())
        recs += day_recs
        sidecars |= day_sidecars
    last = Progress.from_json(context.cursor)
    listing = _digest(recs, sidecars)
    if last.quiet(listing, naive_now):
        return SensorResult(skip_reason=SkipReason(f"nothing new ({len(recs)} agent recordings listed)"))
    conn = _open_read_only(warehouse.database)
    if conn is None:
        return SensorResult(skip_reason=SkipReason("the warehouse is busy or not created yet; next tick"))
    try:
        retries = pending_retries(conn, prefix)
        listed = {r.contact_id for r in recs}
        for rec, at in retries:  # failed merges older than the window are retried too
            if rec.contact_id not in listed and (at is None or at <= naive_now):
                recs.append(rec)
                if store.head(bucket, rec.sidecar_key) is not None:
                    sidecars.add(rec.sidecar_key)
        plan = plan_merges(store, conn, recs, sidecars, connect_bucket=bucket, now=now)
    finally:
        conn.close()
    future = [at for _, at in retries if at is not None and at > naive_now]
    # Requested merges count as waiting until a tick sees them done or failed (then backing off).
    in_flight = len(plan.waiting) + len(plan.ready)
    cursor = Progress(listing, in_flight, min(future) if future else None).to_json()
    first = date.fromisoformat(agent_recording_days.get_first_partition_key() or "1970-01-01")
    runs = run_requests(plan, first)
    context.log.info(
        f"{len(recs)} agent recordings listed: {len(plan.ready)} ready, {plan.done} done, "
        f"{len(plan.waiting)} waiting, {plan.backing_off} backing off, {plan.dead} dead"
    )
    if not runs:
        return SensorResult(
            skip_reason=SkipReason(
                f"nothing to merge ({len(recs)} listed, {len(plan.waiting)} waiting for inputs)"
            ),
            cursor=cursor,
        )
    return SensorResult(run_requests=runs, cursor=cursor)
