"""All of cdr_assets in one ``Definitions``: what ``dagster dev`` and ``cdr-assets process`` load."""

from dagster import Definitions

from cdr_assets import settings

settings.apply_defaults()

from cdr_assets.chime.assets import chime_cdr_lake, raw_chime_cdrs  # noqa: E402
from cdr_assets.chime.checks import chime_checks  # noqa: E402
from cdr_assets.chime.sensors import chime_cdr_sensor  # noqa: E402
from cdr_assets.resources import build_resources  # noqa: E402

defs = Definitions(
    assets=[raw_chime_cdrs, chime_cdr_lake],
    asset_checks=chime_checks,
    sensors=[chime_cdr_sensor],
    resources=build_resources(),
)
