"""Asset checks on the star schema (whole tables: they are small next to the lake, and a check
that passes on a partition but not on the table would not mean much)."""

from dagster import AssetCheckResult, asset_check

from cdr_assets.chime.assets import delivery_days
from cdr_assets.connect.assets import FACT_CONTACT
from cdr_assets.connect.quality import (
    DURATION_SQL,
    FOREIGN_KEY_SQL,
    ORDER_SQL,
    UNIQUE_SQL,
    run_check,
)
from cdr_assets.resources import Warehouse

_CHECK = {"asset": FACT_CONTACT, "partitions_def": delivery_days, "pool": "duckdb"}


def _result(warehouse: Warehouse, sql: str) -> AssetCheckResult:
    with warehouse.get_connection() as conn:
        violations, metadata = run_check(conn, sql)
    return AssetCheckResult(passed=violations == 0, metadata=metadata)


@asset_check(description="ContactId is unique in fact_contact.", **_CHECK)
def fact_contact_id_unique(warehouse: Warehouse) -> AssetCheckResult:
    return _result(warehouse, UNIQUE_SQL)


@asset_check(
    description=(
        "Every surrogate key of fact_contact resolves in its dimension; the agent version it points at is "
        "the one in force when the contact was initiated (contacts of one second in ContactId order), and "
        "an agent's versions follow one another without gaps."
    ),
    **_CHECK,
)
def fact_contact_foreign_keys(warehouse: Warehouse) -> AssetCheckResult:
    return _result(warehouse, FOREIGN_KEY_SQL)


@asset_check(description="Durations (queue, talk, hold, ACW) are not negative.", **_CHECK)
def fact_contact_durations(warehouse: Warehouse) -> AssetCheckResult:
    return _result(warehouse, DURATION_SQL)


@asset_check(description="No contact disconnects before it was initiated.", **_CHECK)
def fact_contact_disconnect_after_initiation(warehouse: Warehouse) -> AssetCheckResult:
    return _result(warehouse, ORDER_SQL)


connect_checks = [
    fact_contact_id_unique,
    fact_contact_foreign_keys,
    fact_contact_durations,
    fact_contact_disconnect_after_initiation,
]
