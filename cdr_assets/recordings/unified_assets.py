"""Dagster shell of unified recordings: agent screen recordings in, one merged recording per contact out."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    asset,
)
from pydantic import Field

from cdr_assets import settings
from cdr_assets.connect.assets import FACT_CONTACT
from cdr_assets.recordings.assets import RAW_RECORDINGS, RETRY, md_table
from cdr_assets.recordings.merges import unify_recordings
from cdr_assets.recordings.unified import list_day, reset_unified
from cdr_assets.resources import CdrStorage, RecordingsSettings, Warehouse

AGENT_RECORDINGS = AssetKey("agent_screen_recordings")
UNIFIED = AssetKey("unified_call_recordings")

# A partition is the day folder of an agent recording (UTC). Today is a partition too (end_offset=1):
# the sensor merges recordings the day they arrive.
agent_recording_days = DailyPartitionsDefinition(
    start_date=settings.get("CDR_PARTITIONS_START"), timezone="UTC", end_offset=1
)

agent_screen_recordings = AssetSpec(
    AGENT_RECORDINGS,
    description=(
        "Agent screen recordings (MP4, video and audio running on through after-call work) in CONNECT_BUCKET "
        "under <RECORDINGS_AGENT_PREFIX>YYYY/MM/DD/<agentId>/<ContactId>.mp4, each with a sidecar "
        "<ContactId>.json holding call_end_offset (HH:MM:SS[.mmm]) or recording_started_at (UTC)."
    ),
    group_name="recordings",
    kinds={"s3", "mp4"},
    partitions_def=agent_recording_days,
)


class UnifyConfig(Config):
    contact_ids: list[str] = Field(
        default_factory=list,
        description="Merge only these contacts of the day (the sensor sets this); empty: every recording.",
    )
    reset_dead: bool = Field(default=False, description="First let every dead-lettered merge run again.")
    reset_contact_ids: list[str] = Field(
        default_factory=list, description="First let these dead-lettered contacts run again."
    )


@asset(
    key=UNIFIED,
    deps=[AGENT_RECORDINGS, RAW_RECORDINGS, FACT_CONTACT],
    description=(
        "Per contact: the Connect call audio followed by the after-call part of the agent's screen recording "
        "audio (both brought to one format first), muxed with its video (copied) as AAC, plus a thumbnail at "
        "1 s, stored in LAKE_BUCKET as unified-recordings/YYYY/MM/DD/<agentId>/<ContactId>/recording.mp4 and "
        "thumbnail.png and verified (both streams, duration within 100 ms). Status in DuckDB "
        "recordings.unified: retried with backoff, dead-lettered after RECORDINGS_MAX_ATTEMPTS failures."
    ),
    group_name="recordings",
    kinds={"s3", "duckdb", "ffmpeg"},
    partitions_def=agent_recording_days,
    pool="duckdb",
    retry_policy=RETRY,
)
def unified_call_recordings(
    context: AssetExecutionContext,
    config: UnifyConfig,
    storage: CdrStorage,
    warehouse: Warehouse,
    recordings_settings: RecordingsSettings,
) -> MaterializeResult:
    """Merge the call audio and agent screen recordings of one day (or of the contacts asked for)."""
    day = date.fromisoformat(context.partition_key)
    store = storage.get()
    recs, sidecars = list_day(store, storage.connect_bucket, recordings_settings.agent_prefix, day)
    if config.contact_ids:
        wanted = set(config.contact_ids)
        recs = [r for r in recs if r.contact_id in wanted]
    with warehouse.get_connection() as conn:
        if config.reset_dead or config.reset_contact_ids:
            n = reset_unified(conn, None if config.reset_dead else config.reset_contact_ids)
            context.log.info(f"reset {n} failed or dead merges")
        report = unify_recordings(
            store,
            conn,
            recs,
            connect_bucket=storage.connect_bucket,
            lake_bucket=storage.lake_bucket,
            max_attempts=recordings_settings.max_attempts,
            retry_seconds=recordings_settings.unify_retry_seconds,
            sidecars=sidecars,
            workers=recordings_settings.workers,
            log=context.log.warning,
        )
        (day_unified,) = conn.execute(
            "SELECT count(*) FROM recordings.unified WHERE day = ? AND status = 'unified'", [day]
        ).fetchone()
    context.log.info(
        f"{day}: {report.requested} requested, {report.unified} unified, {report.already_unified} already, "
        f"{report.failed} failed (will retry), {report.dead} dead-lettered, {len(report.not_ready)} not ready"
    )
    return MaterializeResult(
        metadata={
            "requested": report.requested,
            "unified": report.unified,
            "already_unified": report.already_unified,
            "failed_will_retry": report.failed,
            "dead_lettered": report.dead,
            "held_dead": report.held,
            "not_ready": len(report.not_ready),
            "day_unified_total": day_unified,
            "outputs": md_table(["contact", "recording.mp4", "seconds"], report.outputs[:50]),
            "failures": md_table(["contact", "step", "reason"], report.failures[:50]),
            "waiting": md_table(["contact", "missing"], report.not_ready[:50]),
        }
    )
