"""All of cdr_assets in one ``Definitions``: what ``dagster dev`` and ``cdr-assets process`` load."""

from dagster import Definitions

from cdr_assets import settings

settings.apply_defaults()

from cdr_assets.chime.assets import chime_cdr_lake, raw_chime_cdrs  # noqa: E402
from cdr_assets.chime.checks import chime_checks  # noqa: E402
from cdr_assets.chime.sensors import chime_cdr_sensor  # noqa: E402
from cdr_assets.chime.stats_assets import chime_call_stats  # noqa: E402
from cdr_assets.connect.assets import (  # noqa: E402
    connect_warehouse,
    raw_connect_ctrs,
)
from cdr_assets.connect.checks import connect_checks  # noqa: E402
from cdr_assets.connect.report_asset import contact_center_report  # noqa: E402
from cdr_assets.connect.sensors import connect_ctr_sensor  # noqa: E402
from cdr_assets.recordings.assets import (  # noqa: E402
    connect_call_recordings,
    recordings_compression,
    recordings_savings,
)
from cdr_assets.recordings.checks import recordings_checks  # noqa: E402
from cdr_assets.recordings.schedules import recordings_compression_schedule  # noqa: E402
from cdr_assets.recordings.sensors import unified_recordings_sensor  # noqa: E402
from cdr_assets.recordings.unified_assets import agent_screen_recordings, unified_call_recordings  # noqa: E402
from cdr_assets.reports.assets import chime_billing_report  # noqa: E402
from cdr_assets.reports.schedules import chime_billing_report_schedule  # noqa: E402
from cdr_assets.resources import build_resources  # noqa: E402

defs = Definitions(
    assets=[
        raw_chime_cdrs,
        chime_cdr_lake,
        chime_call_stats,
        chime_billing_report,
        raw_connect_ctrs,
        connect_warehouse,
        contact_center_report,
        connect_call_recordings,
        recordings_compression,
        recordings_savings,
        agent_screen_recordings,
        unified_call_recordings,
    ],
    asset_checks=[*chime_checks, *connect_checks, *recordings_checks],
    sensors=[chime_cdr_sensor, connect_ctr_sensor, unified_recordings_sensor],
    schedules=[chime_billing_report_schedule, recordings_compression_schedule],
    resources=build_resources(),
)
