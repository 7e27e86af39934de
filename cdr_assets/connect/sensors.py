"""The sensor that turns new Firehose CTR files into partitioned, incremental runs.

Same cost rules as the CDR sensor (it is the same code, ``chime.discovery.discover``, with the
Firehose layout): per day prefix a cursor (last key, count and digest), one listing after the
cursor per day of the look-back window, a bounded sweep for late keys, and run keys.
"""

from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cdr_assets import settings
from cdr_assets.chime.assets import delivery_days
from cdr_assets.chime.discovery import Cursor, PrefixLayout, discover
from cdr_assets.connect.assets import connect_warehouse, prefix_of
from cdr_assets.connect.report_asset import contact_center_report
from cdr_assets.connect.schema import day_of_prefix, day_prefix
from cdr_assets.resources import CdrStorage, ConnectSettings
from cdr_assets.sensing import day_run_requests


def firehose_layout(ctr_prefix: str) -> PrefixLayout:
    """Firehose has no units above the date folders: one unit, the prefix itself."""
    return PrefixLayout(
        name="connect-ctrs",
        units=lambda storage, bucket: [""],
        day_prefix=lambda _unit, day: day_prefix(ctr_prefix, day),
        day_of_prefix=lambda prefix: day_of_prefix(ctr_prefix, prefix),
    )


@sensor(
    name="connect_ctr_sensor",
    target=[connect_warehouse, contact_center_report],
    minimum_interval_seconds=int(settings.get("CDR_SENSOR_INTERVAL_SECONDS")),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Lists each Firehose day prefix of the look-back window after the last key seen, and requests "
        "an incremental staging + star-schema + report run per delivery day with the new key ranges."
    ),
)
def connect_ctr_sensor(
    context: SensorEvaluationContext, storage: CdrStorage, connect_settings: ConnectSettings
) -> SensorResult:
    requests, cursor, stats = discover(
        storage.get(),
        storage.connect_bucket,
        Cursor.from_json(context.cursor),
        today=datetime.now(UTC).date(),
        lookback_days=connect_settings.lookback_days,
        sweep_budget=connect_settings.sweep_keys,
        layout=firehose_layout(prefix_of(connect_settings)),
    )
    runs, _ = day_run_requests(requests, op_name="connect_warehouse", partitions_def=delivery_days)
    context.log.info(
        f"{stats.prefixes_listed} prefixes listed, {stats.new_objects} new files, "
        f"{stats.swept_keys} keys swept, late: {stats.late_prefixes}"
    )
    if not runs:
        return SensorResult(
            skip_reason=SkipReason(f"no new CTR files ({stats.prefixes_listed} prefixes listed)"),
            cursor=cursor.to_json(),
        )
    return SensorResult(run_requests=runs, cursor=cursor.to_json())
