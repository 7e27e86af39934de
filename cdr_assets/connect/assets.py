"""Dagster shell of the Connect warehouse: staging, the star schema, the contact-center report."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Backoff,
    Config,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableSchema,
    multi_asset,
)
from pydantic import Field

from cdr_assets.chime.assets import KeyRangeConfig, delivery_days
from cdr_assets.chime.ingest import KeyRange
from cdr_assets.connect.load import load_partition
from cdr_assets.connect.schema import STAGED_SCHEMA
from cdr_assets.connect.staging import stage_delivery_day
from cdr_assets.resources import CdrStorage, ConnectSettings, Warehouse
from cdr_assets.tabular import markdown_table

RAW_CTRS = AssetKey("raw_connect_ctrs")
STAGED_CTRS = AssetKey("connect_ctrs")
QUARANTINED_CTRS = AssetKey("quarantined_ctrs")
FACT_CONTACT = AssetKey("fact_contact")
DIMENSIONS = {name: AssetKey(name) for name in ("dim_agent", "dim_queue", "dim_customer", "dim_date")}

_RETRY = RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL)

raw_connect_ctrs = AssetSpec(
    RAW_CTRS,
    description=(
        "Amazon Connect contact trace records as Kinesis Firehose writes them to CONNECT_BUCKET: "
        "many CTRs per file, concatenated or newline-separated, under "
        "<CONNECT_CTR_PREFIX>YYYY/MM/DD/HH/<stream>-<n>-<YYYY-MM-DD-HH-MM-SS>-<uuid> (delivery time)."
    ),
    group_name="connect",
    kinds={"s3", "json"},
    partitions_def=delivery_days,
)


class CtrStagingConfig(Config):
    ranges: list[KeyRangeConfig] | None = Field(
        default=None,
        description=(
            "Key ranges to take in (set by the sensor: only files not yet ingested are read). Leave empty to "
            "(re)build the whole delivery day, replacing its files."
        ),
    )


def prefix_of(settings: ConnectSettings) -> str:
    return settings.ctr_prefix.rstrip("/") + "/"


@multi_asset(
    specs=[
        AssetSpec(
            STAGED_CTRS,
            deps=[RAW_CTRS],
            description=(
                "Every delivered CTR (all versions and duplicate deliveries) flattened to a typed row, as "
                "Snappy Parquet in LAKE_BUCKET under connect-ctr/year=/month=/day= of InitiationTimestamp "
                "(UTC), with its source file and byte offset."
            ),
            kinds={"parquet", "s3"},
            metadata={
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(f.name, str(f.type)) for f in STAGED_SCHEMA]
                )
            },
        ),
        AssetSpec(
            QUARANTINED_CTRS,
            deps=[RAW_CTRS],
            description=(
                "CTR records or file spans that could not be staged, with file, byte offset, reason and "
                "raw text, as Parquet under quarantine/connect-ctr/ in LAKE_BUCKET."
            ),
            kinds={"parquet", "s3"},
        ),
    ],
    name="connect_ctr_staging",
    group_name="connect",
    partitions_def=delivery_days,
    pool="duckdb",
    retry_policy=_RETRY,
)
def connect_ctr_staging(
    context: AssetExecutionContext,
    config: CtrStagingConfig,
    storage: CdrStorage,
    warehouse: Warehouse,
    connect_settings: ConnectSettings,
):
    """Stage one delivery day of Firehose CTR files (incrementally from the sensor)."""
    day = date.fromisoformat(context.partition_key)
    ranges = (
        None
        if config.ranges is None
        else [KeyRange(r.prefix, r.start_after, r.end_at) for r in config.ranges]
    )
    with warehouse.get_connection() as conn:
        report = stage_delivery_day(
            storage.get(),
            conn,
            connect_bucket=storage.connect_bucket,
            lake_bucket=storage.lake_bucket,
            ctr_prefix=prefix_of(connect_settings),
            delivery_day=day,
            ranges=ranges,
            run_id=context.run.run_id,
            workers=connect_settings.ingest_workers or None,
        )
        totals = dict(
            conn.execute(
                "SELECT kind, coalesce(sum(row_count), 0) FROM connect.lake_files "
                "WHERE delivery_day = ? AND state = 'committed' GROUP BY kind",
                [day],
            ).fetchall()
        )
    context.log.info(
        f"{day}: {report.files_in} files, {report.records_in} records -> {report.rows_staged} staged, "
        f"{report.quarantined} quarantined in {report.seconds:.1f}s"
    )
    yield MaterializeResult(
        asset_key=STAGED_CTRS,
        metadata={
            "dagster/row_count": totals.get("ctrs", 0),
            "mode": report.mode,
            "files_listed": report.files_listed,
            "already_ingested": report.already_ingested,
            "files_in": report.files_in,
            "files_streamed": report.files_streamed,
            "records_in": report.records_in,
            "rows_staged": report.rows_staged,
            "quarantined": report.quarantined,
            "accounting": MetadataValue.text(
                f"{report.records_in} records = {report.rows_staged} staged "
                f"+ {report.quarantined} quarantined"
            ),
            "rows_per_initiation_day": MetadataValue.md(
                markdown_table(["initiation day", "rows"], report.rows_per_initiation_day.items())
            ),
            "files_written": MetadataValue.json(report.files_written),
            "files_removed": len(report.files_removed),
            "records_per_second": round(report.records_in / report.seconds, 1) if report.seconds else 0.0,
            "seconds": round(report.seconds, 2),
        },
    )
    yield MaterializeResult(
        asset_key=QUARANTINED_CTRS,
        metadata={
            "dagster/row_count": totals.get("quarantine", 0),
            "quarantined_this_run": report.quarantined,
            "reasons": MetadataValue.md(
                markdown_table(["reason", "records"], report.quarantine_reasons.items())
            ),
        },
    )


_STAR_DOCS = {
    "fact_contact": (
        "One row per ContactId: the CTR version with the latest LastUpdateTimestamp, with surrogate keys "
        "to dim_agent (version valid at initiation), dim_queue, dim_customer, dim_date, queue wait, "
        "handle time and an abandoned flag. DuckDB table connect.fact_contact."
    ),
    "dim_agent": (
        "Agents (ARN, username, routing profile, hierarchy levels 1-5), type 2: a new version when the "
        "routing profile or hierarchy changes (valid_from / valid_to / is_current). connect.dim_agent."
    ),
    "dim_queue": "Queues (ARN, name). connect.dim_queue.",
    "dim_customer": (
        "Customers: customer_id = UUIDv5 of endpoint type + address, type, address. connect.dim_customer."
    ),
    "dim_date": "Calendar days of contact initiation (UTC). connect.dim_date.",
}


@multi_asset(
    specs=[
        AssetSpec(
            AssetKey(name),
            deps=[STAGED_CTRS],
            description=doc,
            kinds={"duckdb"},
        )
        for name, doc in _STAR_DOCS.items()
    ],
    name="connect_star_schema",
    group_name="connect",
    partitions_def=delivery_days,
    pool="duckdb",
    retry_policy=_RETRY,
)
def connect_star_schema(context: AssetExecutionContext, storage: CdrStorage, warehouse: Warehouse):
    """Merge the partition's staged files not loaded yet into the star schema (upserts only)."""
    day = date.fromisoformat(context.partition_key)
    with warehouse.get_connection() as conn:
        report = load_partition(conn, storage.get(), storage.lake_bucket, day)
    context.log.info(
        f"{day}: {report.files} files, {report.rows_in} rows -> {report.inserted} new contacts, "
        f"{report.updated} updated, {report.stale_versions} stale in {report.seconds:.1f}s"
    )
    yield MaterializeResult(
        asset_key=FACT_CONTACT,
        metadata={
            "dagster/row_count": report.table_rows.get("fact_contact", 0),
            "files_loaded": report.files,
            "rows_in": report.rows_in,
            "contacts_in": report.contacts_in,
            "inserted": report.inserted,
            "updated_to_newer_version": report.updated,
            "stale_or_duplicate": report.stale_versions,
            "seconds": round(report.seconds, 2),
        },
    )
    for name, key in DIMENSIONS.items():
        extra = (
            {
                "agents_touched": report.agents_touched,
                "versions_changed": report.agent_versions_changed,
                "facts_repointed": report.facts_repointed,
            }
            if name == "dim_agent"
            else {}
        )
        yield MaterializeResult(
            asset_key=key, metadata={"dagster/row_count": report.table_rows.get(name, 0), **extra}
        )
