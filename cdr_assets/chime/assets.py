"""Dagster shell of the CDR lake: one multi-asset writes the lake and its quarantine."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Backoff,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableRecord,
    TableSchema,
    multi_asset,
)
from pydantic import Field

from cdr_assets import settings
from cdr_assets.chime.ingest import IngestReport, KeyRange, ingest_delivery_day, refresh_views
from cdr_assets.chime.schema import CDR_ARROW_SCHEMA
from cdr_assets.resources import CdrStorage, ChimeSettings, Warehouse
from cdr_assets.tabular import markdown_table

PROCESSED_CDRS = AssetKey("processed_cdrs")
QUARANTINED_CDRS = AssetKey("quarantined_cdrs")
RAW_CDRS = AssetKey("raw_chime_cdrs")

# A partition is the day Chime *delivered* an object (the date in its key), UTC. Today is a
# partition too (end_offset=1) so the sensor can load it while it fills.
delivery_days = DailyPartitionsDefinition(
    start_date=settings.get("CDR_PARTITIONS_START"), timezone="UTC", end_offset=1
)

raw_chime_cdrs = AssetSpec(
    RAW_CDRS,
    description=(
        "Raw call detail records as Amazon Chime SDK Voice Connectors write them: one JSON "
        "object per call under Amazon-Chime-Voice-Connector-CDRs/json/<VoiceConnectorId>/"
        "<YYYY>/<MM>/<DD>/<HH.MM.SS.mmm>_<TransactionId> in CHIME_CDR_BUCKET."
    ),
    group_name="chime",
    kinds={"s3", "json"},
    partitions_def=delivery_days,
)


class KeyRangeConfig(Config):
    prefix: str
    start_after: str | None = None
    end_at: str | None = None


class CdrIngestConfig(Config):
    ranges: list[KeyRangeConfig] | None = Field(
        default=None,
        description=(
            "Key ranges to take in (set by the sensor: only objects not yet ingested are read). "
            "Leave empty to (re)build the whole delivery day, replacing its files."
        ),
    )


_LAKE_COLUMNS = TableSchema(
    columns=[TableColumn(f.name, str(f.type)) for f in CDR_ARROW_SCHEMA]
    + [TableColumn(p, "int32", description="Hive partition (end day, UTC)") for p in ("year", "month", "day")]
)


@multi_asset(
    specs=[
        AssetSpec(
            PROCESSED_CDRS,
            deps=[RAW_CDRS],
            description=(
                "Validated, deduplicated Voice Connector CDRs as Snappy Parquet in LAKE_BUCKET under "
                "Amazon-Chime-Voice-Connector-CDRs/year=/month=/day= of the call's end time (UTC). "
                "DuckDB view: amazon_chime_sdk_voice_connector_cdrs.processed_cdrs."
            ),
            kinds={"parquet", "duckdb", "s3"},
            metadata={"dagster/column_schema": _LAKE_COLUMNS},
        ),
        AssetSpec(
            QUARANTINED_CDRS,
            deps=[RAW_CDRS],
            description=(
                "Raw objects that are not valid Voice Connector CDRs, with source key, reason and raw "
                "bytes (first 64 KiB), as Parquet under quarantine/ in LAKE_BUCKET. DuckDB view: "
                "amazon_chime_sdk_voice_connector_cdrs.quarantined_cdrs."
            ),
            kinds={"parquet", "s3"},
        ),
    ],
    name="chime_cdr_lake",
    group_name="chime",
    partitions_def=delivery_days,
    pool="duckdb",
    retry_policy=RetryPolicy(max_retries=2, delay=5, backoff=Backoff.EXPONENTIAL),
)
def chime_cdr_lake(
    context: AssetExecutionContext,
    config: CdrIngestConfig,
    storage: CdrStorage,
    warehouse: Warehouse,
    chime_settings: ChimeSettings,
):
    """Take one delivery day of raw CDR objects into the lake (incrementally from the sensor)."""
    day = date.fromisoformat(context.partition_key)
    ranges = (
        None
        if config.ranges is None
        else [KeyRange(r.prefix, r.start_after, r.end_at) for r in config.ranges]
    )
    store = storage.get()
    with warehouse.get_connection() as conn:
        report = ingest_delivery_day(
            store,
            conn,
            cdr_bucket=storage.chime_cdr_bucket,
            lake_bucket=storage.lake_bucket,
            delivery_day=day,
            ranges=ranges,
            run_id=context.run.run_id,
            workers=chime_settings.ingest_workers or None,
            duckdb_memory_limit=chime_settings.ingest_duckdb_memory_limit,
        )
        refresh_views(conn, store, storage.lake_bucket)
        totals = conn.execute(
            "SELECT kind, coalesce(sum(row_count), 0) FROM chime.lake_files "
            "WHERE delivery_day = ? AND state = 'committed' GROUP BY kind",
            [day],
        ).fetchall()
    in_partition = dict(totals)
    context.log.info(
        f"{day}: {report.objects_in} objects in -> {report.rows_written} rows, "
        f"{report.quarantined} quarantined, {report.duplicates_dropped} duplicates "
        f"({report.already_ingested} already ingested) in {report.seconds:.1f}s"
    )
    yield MaterializeResult(
        asset_key=PROCESSED_CDRS,
        metadata=_lake_metadata(report, in_partition.get("cdrs", 0), store.uri(storage.lake_bucket)),
    )
    yield MaterializeResult(
        asset_key=QUARANTINED_CDRS,
        metadata={
            "dagster/row_count": in_partition.get("quarantine", 0),
            "quarantined_this_run": report.quarantined,
            "reasons": MetadataValue.md(
                markdown_table(["reason", "objects"], report.quarantine_reasons.items())
            ),
        },
    )


def _lake_metadata(report: IngestReport, partition_rows: int, lake_uri: str) -> dict[str, object]:
    rate = report.objects_in / report.seconds if report.seconds else 0.0
    vc_schema = TableSchema(
        columns=[
            TableColumn("voice_connector_id", "string"),
            TableColumn("calls", "int"),
            TableColumn("not_completed", "int"),
            TableColumn("billable_minutes", "float"),
        ]
    )
    return {
        "dagster/row_count": partition_rows,
        "mode": report.mode,
        "objects_listed": report.objects_listed,
        "already_ingested": report.already_ingested,
        "objects_in": report.objects_in,
        "rows_written": report.rows_written,
        "quarantined": report.quarantined,
        "duplicates_dropped": report.duplicates_dropped,
        "accounting": MetadataValue.text(
            f"{report.objects_in} in = {report.rows_written} written + {report.quarantined} "
            f"quarantined + {report.duplicates_dropped} duplicates"
        ),
        "top_quarantine_reasons": MetadataValue.md(
            markdown_table(["reason", "objects"], list(report.quarantine_reasons.items())[:5])
        ),
        "quirks_coerced": MetadataValue.json(report.quirks),
        "rows_per_end_day": MetadataValue.md(
            markdown_table(["end day", "rows"], report.rows_per_end_day.items())
        ),
        "per_voice_connector": MetadataValue.table(
            [TableRecord(r) for r in report.per_voice_connector], schema=vc_schema
        ),
        "preview": MetadataValue.md(
            markdown_table(list(report.preview[0]), [r.values() for r in report.preview])
            if report.preview
            else "_no new rows_"
        ),
        "files_written": MetadataValue.json(report.files_written),
        "files_removed": len(report.files_removed),
        "objects_per_second": round(rate, 1),
        "seconds": round(report.seconds, 2),
        "lake": MetadataValue.path(lake_uri),
    }
