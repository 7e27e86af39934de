"""The sensor that turns new raw CDR objects into partitioned, incremental runs."""

from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cdr_assets import settings
from cdr_assets.chime.assets import chime_cdr_lake, delivery_days
from cdr_assets.chime.discovery import Cursor, discover
from cdr_assets.resources import CdrStorage, ChimeSettings
from cdr_assets.sensing import day_run_requests


@sensor(
    name="chime_cdr_sensor",
    target=chime_cdr_lake,
    minimum_interval_seconds=int(settings.get("CDR_SENSOR_INTERVAL_SECONDS")),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Lists the day prefixes of every voice connector inside the look-back window after the "
        "last key seen, and requests an incremental run per delivery day with the new key ranges."
    ),
)
def chime_cdr_sensor(
    context: SensorEvaluationContext, storage: CdrStorage, chime_settings: ChimeSettings
) -> SensorResult:
    store = storage.get()
    today = datetime.now(UTC).date()
    requests, cursor, stats = discover(
        store,
        storage.chime_cdr_bucket,
        Cursor.from_json(context.cursor),
        today=today,
        lookback_days=chime_settings.lookback_days,
        sweep_budget=chime_settings.sweep_keys,
    )
    runs, too_early = day_run_requests(requests, op_name="chime_cdr_lake", partitions_def=delivery_days)
    for day in too_early:
        context.log.warning(f"{day} is before CDR_PARTITIONS_START; not requested")
    context.log.info(
        f"{stats.voice_connectors} voice connectors, {stats.prefixes_listed} prefixes listed, "
        f"{stats.new_objects} new objects, {stats.swept_keys} keys swept, late: {stats.late_prefixes}"
    )
    if not runs:
        return SensorResult(
            skip_reason=SkipReason(f"no new CDR objects ({stats.prefixes_listed} prefixes listed)"),
            cursor=cursor.to_json(),
        )
    return SensorResult(run_requests=runs, cursor=cursor.to_json())
