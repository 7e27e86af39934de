"""Asset checks on recording compression (whole tables: the status table is small)."""

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from cdr_assets.recordings.assets import COMPRESSION, recording_days
from cdr_assets.recordings.compress import ensure_schema
from cdr_assets.recordings.unified import ensure_unified_schema
from cdr_assets.recordings.unified_assets import UNIFIED, agent_recording_days
from cdr_assets.resources import RecordingsSettings, Warehouse
from cdr_assets.tabular import markdown_table

_CHECK = {"asset": COMPRESSION, "partitions_def": recording_days, "pool": "duckdb"}


@asset_check(
    description=(
        "No recording is held after RECORDINGS_MAX_ATTEMPTS failures (a held recording stays uncompressed "
        "until reset with the asset's reset_failed / reset_keys config)."
    ),
    **_CHECK,
)
def recordings_none_held(warehouse: Warehouse, recordings_settings: RecordingsSettings) -> AssetCheckResult:
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        rows = conn.execute(
            "SELECT key, error FROM recordings.compression WHERE status = 'failed' AND attempts >= ? "
            "ORDER BY key",
            [recordings_settings.max_attempts],
        ).fetchall()
    return AssetCheckResult(
        passed=not rows,
        severity=AssetCheckSeverity.WARN,
        metadata={"held": len(rows), "sample": markdown_table(["key", "error"], rows[:20])},
    )


@asset_check(
    description="Every converted recording is smaller than its original and has a known location.",
    **_CHECK,
)
def recordings_converted_consistent(warehouse: Warehouse) -> AssetCheckResult:
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        (bad,) = conn.execute(
            "SELECT count(*) FROM recordings.compression WHERE status = 'converted' "
            "AND (new_key IS NULL OR bytes_after IS NULL "
            "OR (bytes_before > 0 AND bytes_after >= bytes_before))"
        ).fetchone()
    return AssetCheckResult(passed=bad == 0, metadata={"violations": bad})


@asset_check(
    asset=UNIFIED,
    partitions_def=agent_recording_days,
    pool="duckdb",
    description=(
        "No merge is dead-lettered (failed RECORDINGS_MAX_ATTEMPTS times; it runs again only after a reset "
        "with the asset's reset_dead / reset_contact_ids config), and every unified contact has both outputs."
    ),
)
def unified_none_dead(warehouse: Warehouse) -> AssetCheckResult:
    with warehouse.get_connection() as conn:
        ensure_unified_schema(conn)
        dead = conn.execute(
            "SELECT contact_id, error FROM recordings.unified WHERE status = 'dead' ORDER BY contact_id"
        ).fetchall()
        (incomplete,) = conn.execute(
            "SELECT count(*) FROM recordings.unified WHERE status = 'unified' "
            "AND (recording_key IS NULL OR thumbnail_key IS NULL OR duration_seconds IS NULL)"
        ).fetchone()
    return AssetCheckResult(
        passed=not dead and incomplete == 0,
        severity=AssetCheckSeverity.WARN if incomplete == 0 else AssetCheckSeverity.ERROR,
        metadata={
            "dead": len(dead),
            "incomplete": incomplete,
            "sample": markdown_table(["contact", "error"], dead[:20]),
        },
    )


recordings_checks = [recordings_none_held, recordings_converted_consistent, unified_none_dead]
