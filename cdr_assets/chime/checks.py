"""Asset checks on each delivery-day partition of the lake, read back from the written files."""

from datetime import date

import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from cdr_assets.chime.assets import PROCESSED_CDRS, QUARANTINED_CDRS, delivery_days
from cdr_assets.chime.quality import (
    RANGE_CHECK_SQL,
    partition_files,
    partition_outcomes,
)
from cdr_assets.chime.schema import CDR_ARROW_SCHEMA
from cdr_assets.resources import CdrStorage, ChimeSettings, Warehouse

_CHECK = {"partitions_def": delivery_days, "pool": "duckdb"}


@asset_check(
    asset=PROCESSED_CDRS, description="Every Parquet file of the partition has the lake schema.", **_CHECK
)
def cdr_schema_matches(
    context: AssetCheckExecutionContext, storage: CdrStorage, warehouse: Warehouse
) -> AssetCheckResult:
    with warehouse.get_connection() as conn:
        files = partition_files(conn, date.fromisoformat(context.partition_key), "cdrs")
    fs, path_of = storage.get().arrow_filesystem()
    bad = []
    for key in files:
        schema = pq.read_schema(path_of(storage.lake_bucket, key), filesystem=fs)
        if not schema.remove_metadata().equals(CDR_ARROW_SCHEMA.remove_metadata()):
            bad.append(key)
    return AssetCheckResult(
        passed=not bad, metadata={"files_checked": len(files), "mismatched_files": bad[:20]}
    )


@asset_check(asset=PROCESSED_CDRS, description="No TransactionId appears twice in the partition.", **_CHECK)
def cdr_transaction_ids_unique(
    context: AssetCheckExecutionContext, storage: CdrStorage, warehouse: Warehouse
) -> AssetCheckResult:
    store = storage.get()
    with warehouse.get_connection() as conn:
        files = partition_files(conn, date.fromisoformat(context.partition_key), "cdrs")
        if not files:
            return AssetCheckResult(passed=True, metadata={"rows": 0})
        uris = [store.uri(storage.lake_bucket, k) for k in files]
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT transactionid) FROM read_parquet(?)", [uris]
        ).fetchone()  # type: ignore[misc]
    return AssetCheckResult(
        passed=rows == distinct, metadata={"rows": rows, "duplicate_rows": rows - distinct}
    )


@asset_check(
    asset=PROCESSED_CDRS,
    description=(
        "Durations are not negative, no call is longer than a day, calls end after they start "
        "and not after their delivery day (+1 day of clock skew)."
    ),
    **_CHECK,
)
def cdr_values_in_range(
    context: AssetCheckExecutionContext, storage: CdrStorage, warehouse: Warehouse
) -> AssetCheckResult:
    store = storage.get()
    day = date.fromisoformat(context.partition_key)
    with warehouse.get_connection() as conn:
        files = partition_files(conn, day, "cdrs")
        if not files:
            return AssetCheckResult(passed=True, metadata={"rows": 0})
        uris = [store.uri(storage.lake_bucket, k) for k in files]
        counts = conn.execute(RANGE_CHECK_SQL, [day, uris]).fetchone()
        names = [d[0] for d in conn.description]  # type: ignore[union-attr]
    result = dict(zip(names, counts, strict=True))  # type: ignore[arg-type]
    violations = sum(v for k, v in result.items() if k != "rows")
    return AssetCheckResult(passed=violations == 0, metadata=result)


@asset_check(
    asset=QUARANTINED_CDRS,
    description=(
        "Share of the partition's objects that were quarantined stays under CDR_QUARANTINE_WARN_PERCENT."
    ),
    **_CHECK,
)
def cdr_quarantine_rate(
    context: AssetCheckExecutionContext, warehouse: Warehouse, chime_settings: ChimeSettings
) -> AssetCheckResult:
    with warehouse.get_connection() as conn:
        outcomes = partition_outcomes(conn, date.fromisoformat(context.partition_key))
    total = sum(outcomes.values())
    rate = 100.0 * outcomes.get("quarantined", 0) / total if total else 0.0
    return AssetCheckResult(
        passed=rate <= chime_settings.quarantine_warn_percent,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "quarantined_percent": round(rate, 3),
            "threshold_percent": chime_settings.quarantine_warn_percent,
            **{f"objects_{k}": v for k, v in outcomes.items()},
        },
    )


chime_checks = [cdr_schema_matches, cdr_transaction_ids_unique, cdr_values_in_range, cdr_quarantine_rate]
