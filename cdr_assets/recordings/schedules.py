"""The daily schedule of recording compression, with bounded catch-up.

Which days are done comes from the Dagster instance (materialized partitions), not from
DuckDB: a schedule tick must not open the warehouse file a run may be writing.
"""

from datetime import date

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from cdr_assets import settings
from cdr_assets.recordings.assets import COMPRESSION, recording_days, recordings_compression
from cdr_assets.recordings.compress import days_due


@schedule(
    name="recordings_compression_schedule",
    cron_schedule=settings.get("RECORDINGS_CRON"),
    execution_timezone="UTC",
    target=recordings_compression,
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        "Compresses the recordings of the day RECORDINGS_MIN_AGE_DAYS old, and of any day up to "
        "RECORDINGS_CATCHUP_DAYS older that was never done (RECORDINGS_CRON, UTC)."
    ),
)
def recordings_compression_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
    when = context.scheduled_execution_time
    done = context.instance.get_materialized_partitions(COMPRESSION)
    first = date.fromisoformat(recording_days.get_first_partition_key() or "1970-01-01")
    keys = days_due(
        when.date(),
        int(settings.get("RECORDINGS_MIN_AGE_DAYS")),
        int(settings.get("RECORDINGS_CATCHUP_DAYS")),
        set(done),
        first,
    )
    # The tick's date in the run key: a day whose run failed is requested again by the next tick.
    return [RunRequest(run_key=f"recordings:{key}:{when.date()}", partition_key=key) for key in keys]
