"""Dagster shell of the Connect warehouse: staging and the star schema, as one step per run.

Staging and loading are one multi-asset so that a run of several delivery days can stage the next
day while the previous one loads (``connect.pipeline``): the two use the cores unevenly, and as
separate steps they could never overlap (both write the one DuckDB file). A backfill runs up to
``BACKFILL_DAYS_PER_RUN`` days per run; the sensor's runs are one day each.
"""

from collections import Counter
from collections.abc import Iterator
from datetime import date

import duckdb
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
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
from cdr_assets.connect.pipeline import DayResult, stage_and_load
from cdr_assets.connect.schema import STAGED_SCHEMA
from cdr_assets.connect.staging import StagingReport, stage_delivery_day
from cdr_assets.resources import CdrStorage, ConnectSettings, Warehouse
from cdr_assets.tabular import markdown_table

RAW_CTRS = AssetKey("raw_connect_ctrs")
STAGED_CTRS = AssetKey("connect_ctrs")
QUARANTINED_CTRS = AssetKey("quarantined_ctrs")
FACT_CONTACT = AssetKey("fact_contact")
DIMENSIONS = {name: AssetKey(name) for name in ("dim_agent", "dim_queue", "dim_customer", "dim_date")}
# Days per backfill run: enough to keep the staging of the next day beside the load, few enough
# that a retry (the whole run again; every step is idempotent) stays cheap.
BACKFILL_DAYS_PER_RUN = 7

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
            "Key ranges to take in (set by the sensor, for a run of one delivery day: only files not yet "
            "ingested are read). Leave empty to (re)build the run's delivery days, replacing their files."
        ),
    )


def prefix_of(settings: ConnectSettings) -> str:
    return settings.ctr_prefix.rstrip("/") + "/"


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
        *(
            AssetSpec(AssetKey(name), deps=[STAGED_CTRS], description=doc, kinds={"duckdb"})
            for name, doc in _STAR_DOCS.items()
        ),
    ],
    name="connect_warehouse",
    group_name="connect",
    partitions_def=delivery_days,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=BACKFILL_DAYS_PER_RUN),
    pool="duckdb",
    retry_policy=_RETRY,
)
def connect_warehouse(
    context: AssetExecutionContext,
    config: CtrStagingConfig,
    storage: CdrStorage,
    warehouse: Warehouse,
    connect_settings: ConnectSettings,
) -> Iterator[MaterializeResult]:
    """Stage the run's delivery days of Firehose CTR files (incrementally from the sensor) and merge
    the staged files not loaded yet into the star schema (upserts only)."""
    days = [date.fromisoformat(k) for k in context.partition_keys]
    if config.ranges is not None and len(days) != 1:
        raise ValueError(f"key ranges apply to a run of one delivery day, not {len(days)}")
    ranges = (
        None
        if config.ranges is None
        else [KeyRange(r.prefix, r.start_after, r.end_at) for r in config.ranges]
    )
    store = storage.get()

    def stage(conn: duckdb.DuckDBPyConnection, day: date) -> StagingReport:
        return stage_delivery_day(
            store,
            conn,
            connect_bucket=storage.connect_bucket,
            lake_bucket=storage.lake_bucket,
            ctr_prefix=prefix_of(connect_settings),
            delivery_day=day,
            ranges=ranges,
            run_id=context.run.run_id,
            workers=connect_settings.ingest_workers or None,
        )

    done: list[DayResult] = []
    with warehouse.get_connection() as conn:
        for result in stage_and_load(
            conn, days, stage, lambda c, day: load_partition(c, store, storage.lake_bucket, day)
        ):
            s, ld = result.staging, result.load
            context.log.info(
                f"{result.delivery_day}: {s.files_in} files, {s.records_in} records -> {s.rows_staged} "
                f"staged, {s.quarantined} quarantined in {s.seconds:.1f}s; {ld.rows_in} rows -> "
                f"{ld.inserted} new contacts, {ld.updated} updated, {ld.stale_versions} stale in "
                f"{ld.seconds:.1f}s"
            )
            done.append(result)
        totals = dict(
            conn.execute(
                "SELECT kind, coalesce(sum(row_count), 0) FROM connect.lake_files "
                "WHERE list_contains(?, delivery_day) AND state = 'committed' GROUP BY kind",
                [days],
            ).fetchall()
        )
    yield from _results(done, totals)


def _results(done: list[DayResult], totals: dict[str, int]) -> Iterator[MaterializeResult]:
    """One MaterializeResult per asset. A run of several days records the same metadata on each
    of its partitions, so the figures are the run's: totals and a table per day."""
    staged = [d.staging for d in done]
    loads = [d.load for d in done]
    records_in = sum(s.records_in for s in staged)
    rows_staged = sum(s.rows_staged for s in staged)
    quarantined = sum(s.quarantined for s in staged)
    staging_seconds = sum(s.seconds for s in staged)
    reasons = sum((Counter(s.quarantine_reasons) for s in staged), Counter())
    per_init_day = sum((Counter(s.rows_per_initiation_day) for s in staged), Counter())
    run = {"delivery_days": MetadataValue.json([str(d.delivery_day) for d in done])}
    if len(done) > 1:
        run["per_delivery_day"] = MetadataValue.md(
            markdown_table(
                ["delivery day", "records in", "staged", "quarantined", "new contacts", "updated", "stale"],
                [
                    (
                        str(d.delivery_day),
                        d.staging.records_in,
                        d.staging.rows_staged,
                        d.staging.quarantined,
                        d.load.inserted,
                        d.load.updated,
                        d.load.stale_versions,
                    )
                    for d in done
                ],
            )
        )
    yield MaterializeResult(
        asset_key=STAGED_CTRS,
        metadata={
            **run,
            "dagster/row_count": totals.get("ctrs", 0),
            "mode": staged[0].mode,
            "files_listed": sum(s.files_listed for s in staged),
            "already_ingested": sum(s.already_ingested for s in staged),
            "files_in": sum(s.files_in for s in staged),
            "files_streamed": sum(s.files_streamed for s in staged),
            "records_in": records_in,
            "rows_staged": rows_staged,
            "quarantined": quarantined,
            "accounting": MetadataValue.text(
                f"{records_in} records = {rows_staged} staged + {quarantined} quarantined"
            ),
            "rows_per_initiation_day": MetadataValue.md(
                markdown_table(["initiation day", "rows"], sorted(per_init_day.items()))
            ),
            "files_written": MetadataValue.json([f for s in staged for f in s.files_written]),
            "files_removed": sum(len(s.files_removed) for s in staged),
            "records_per_second": round(records_in / staging_seconds, 1) if staging_seconds else 0.0,
            "seconds": round(staging_seconds, 2),
        },
    )
    yield MaterializeResult(
        asset_key=QUARANTINED_CTRS,
        metadata={
            **run,
            "dagster/row_count": totals.get("quarantine", 0),
            "quarantined_this_run": quarantined,
            "reasons": MetadataValue.md(markdown_table(["reason", "records"], reasons.most_common())),
        },
    )
    last = loads[-1]
    yield MaterializeResult(
        asset_key=FACT_CONTACT,
        metadata={
            **run,
            "dagster/row_count": last.table_rows.get("fact_contact", 0),
            "files_loaded": sum(ld.files for ld in loads),
            "rows_in": sum(ld.rows_in for ld in loads),
            "contacts_in": sum(ld.contacts_in for ld in loads),
            "inserted": sum(ld.inserted for ld in loads),
            "updated_to_newer_version": sum(ld.updated for ld in loads),
            "stale_or_duplicate": sum(ld.stale_versions for ld in loads),
            "seconds": round(sum(ld.seconds for ld in loads), 2),
        },
    )
    for name, key in DIMENSIONS.items():
        extra = (
            {
                "agents_touched": sum(ld.agents_touched for ld in loads),
                "versions_changed": sum(ld.agent_versions_changed for ld in loads),
                "facts_repointed": sum(ld.facts_repointed for ld in loads),
            }
            if name == "dim_agent"
            else {}
        )
        yield MaterializeResult(
            asset_key=key, metadata={"dagster/row_count": last.table_rows.get(name, 0), **extra}
        )
