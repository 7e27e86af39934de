"""Dagster shell of call recording compression: one day of recordings, and the savings."""

import base64
from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    AutomationCondition,
    Backoff,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)
from pydantic import Field

from cdr_assets import settings
from cdr_assets.recordings.compress import compress_day, ensure_schema, reset_failed
from cdr_assets.recordings.presets import get_preset
from cdr_assets.recordings.pricing import parse_prices, savings_by_day, savings_chart, total
from cdr_assets.resources import CdrStorage, RecordingsSettings, Warehouse
from cdr_assets.storage import STORAGE_CLASSES
from cdr_assets.tabular import markdown_table

RAW_RECORDINGS = AssetKey("connect_call_recordings")
COMPRESSION = AssetKey("recordings_compression")
SAVINGS = AssetKey("recordings_savings")

# A partition is the day in a recording's key (when Connect wrote it), UTC.
recording_days = DailyPartitionsDefinition(start_date=settings.get("CDR_PARTITIONS_START"), timezone="UTC")

RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)

connect_call_recordings = AssetSpec(
    RAW_RECORDINGS,
    description=(
        "Amazon Connect call recordings in CONNECT_BUCKET: connect/<instance-alias>/CallRecordings/"
        "YYYY/MM/DD/<ContactId>_<YYYYMMDD>T<HH:MM>_UTC.wav, 8 kHz 16-bit PCM stereo "
        "(customer left, agent right)."
    ),
    group_name="recordings",
    kinds={"s3", "wav"},
    partitions_def=recording_days,
)


class CompressionConfig(Config):
    reset_failed: bool = Field(
        default=False, description="First let every held (failed too often) recording be tried again."
    )
    reset_keys: list[str] = Field(
        default_factory=list, description="First let these held recordings (object keys) be tried again."
    )


def md_table(headers: list[str], rows) -> MetadataValue:
    return MetadataValue.md(markdown_table(headers, [list(r) for r in rows]))


@asset(
    key=COMPRESSION,
    deps=[RAW_RECORDINGS],
    description=(
        "The recordings of one day compressed with RECORDINGS_PRESET and moved to RECORDINGS_STORAGE_CLASS, "
        "each verified against its original before it replaces it; outcomes in DuckDB "
        "recordings.compression, failures in recordings.dead_letters."
    ),
    group_name="recordings",
    kinds={"s3", "duckdb", "ffmpeg"},
    partitions_def=recording_days,
    pool="duckdb",
    retry_policy=RETRY,
)
def recordings_compression(
    context: AssetExecutionContext,
    config: CompressionConfig,
    storage: CdrStorage,
    warehouse: Warehouse,
    recordings_settings: RecordingsSettings,
) -> MaterializeResult:
    """Compress one day of Connect call recordings safely, in parallel."""
    day = date.fromisoformat(context.partition_key)
    preset = get_preset(recordings_settings.preset)
    if recordings_settings.storage_class not in STORAGE_CLASSES:
        raise ValueError(f"RECORDINGS_STORAGE_CLASS must be one of {', '.join(STORAGE_CLASSES)}")
    with warehouse.get_connection() as conn:
        if config.reset_failed or config.reset_keys:
            n = reset_failed(conn, None if config.reset_failed else config.reset_keys)
            context.log.info(f"reset {n} failed recordings")
        report = compress_day(
            storage.get(),
            conn,
            bucket=storage.connect_bucket,
            day=day,
            preset=preset,
            storage_class=recordings_settings.storage_class,
            max_attempts=recordings_settings.max_attempts,
            workers=recordings_settings.workers,
            alias=recordings_settings.instance_alias,
            log=context.log.warning,
        )
        stored = conn.execute(
            "SELECT count(*), coalesce(sum(bytes_before), 0), coalesce(sum(bytes_after), 0) "
            "FROM recordings.compression WHERE day = ? AND status = 'converted'",
            [day],
        ).fetchone()
    context.log.info(
        f"{day}: {report.listed} listed, {report.converted} converted, {report.skipped} already done, "
        f"{report.failed} failed, {report.held} held in {report.seconds:.1f}s"
    )
    saved = stored[1] - stored[2]
    return MaterializeResult(
        metadata={
            "preset": preset.name,
            "storage_class": recordings_settings.storage_class,
            "listed": report.listed,
            "converted": report.converted,
            "already_converted": report.skipped,
            "failed": report.failed,
            "held": report.held,
            "bytes_before_this_run": report.bytes_before,
            "bytes_after_this_run": report.bytes_after,
            "day_recordings_converted": stored[0],
            "day_bytes_saved": saved,
            "day_saved_percent": round(100 * saved / stored[1], 1) if stored[1] else 0.0,
            "failures": md_table(["key", "step", "reason"], report.failures[:50]),
            "seconds": round(report.seconds, 2),
        }
    )


@asset(
    key=SAVINGS,
    deps=[COMPRESSION],
    description=(
        "Bytes and percentage saved per day and in total by recording compression, and the estimated "
        "monthly storage cost before (STANDARD) and after (the storage class set), from the price table "
        "of RECORDINGS_PRICES (pricing.py), with a chart."
    ),
    group_name="recordings",
    kinds={"duckdb"},
    pool="duckdb",
    automation_condition=AutomationCondition.eager(),
)
def recordings_savings(warehouse: Warehouse, recordings_settings: RecordingsSettings) -> MaterializeResult:
    """Savings of recording compression, per day and in total."""
    prices = parse_prices(recordings_settings.prices)
    with warehouse.get_connection() as conn:
        ensure_schema(conn)
        days = savings_by_day(conn, prices)
    all_days = total(days)
    metadata: dict[str, object] = {"days": len(days), "prices_usd_per_gb_month": MetadataValue.json(prices)}
    if all_days is not None:
        metadata |= {
            "recordings": all_days.recordings,
            "bytes_before": all_days.bytes_before,
            "bytes_after": all_days.bytes_after,
            "bytes_saved": all_days.bytes_before - all_days.bytes_after,
            "saved_percent": round(all_days.saved_percent, 1),
            "monthly_cost_before_usd": float(f"{all_days.cost_before:.6g}"),
            "monthly_cost_after_usd": float(f"{all_days.cost_after:.6g}"),
            "per_day": md_table(
                ["day", "recordings", "bytes before", "bytes after", "saved %", "USD/month before", "after"],
                [
                    (
                        d.day,
                        d.recordings,
                        d.bytes_before,
                        d.bytes_after,
                        f"{d.saved_percent:.1f}",
                        f"{d.cost_before:.4f}",
                        f"{d.cost_after:.4f}",
                    )
                    for d in days[-60:]
                ],
            ),
            "chart": MetadataValue.md(
                "![savings](data:image/png;base64,"
                + base64.b64encode(savings_chart(days[-60:])).decode()
                + ")"
            ),
        }
    return MaterializeResult(metadata=metadata)
