"""Dagster shell of the monthly billing report: run the query, write the files, mail them."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    Backoff,
    Failure,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    RetryPolicy,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from cdr_assets import settings
from cdr_assets.chime.assets import PROCESSED_CDRS
from cdr_assets.chime.ingest import refresh_views
from cdr_assets.reports.billing import (
    ReportError,
    ReportFiles,
    bind_period,
    month_key,
    render,
    run_report,
)
from cdr_assets.reports.mail import Attachment, MailError, build_email, check_header, parse_recipients
from cdr_assets.resources import CdrStorage, Mailer, ReportSettings, Warehouse
from cdr_assets.storage import S3Storage, Storage

# A partition is the calendar month (UTC) the report covers, e.g. "2025-12".
billing_months = MonthlyPartitionsDefinition(
    start_date=settings.get("CDR_PARTITIONS_START")[:7], fmt="%Y-%m", timezone="UTC"
)

_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "html": "text/html; charset=utf-8",
    "png": "image/png",
}


@asset(
    name="chime_billing_report",
    deps=[PROCESSED_CDRS],
    partitions_def=billing_months,
    group_name="reports",
    kinds={"duckdb", "csv", "html"},
    pool="duckdb",
    # SMTP and S3 hiccups are worth another try; files are rewritten whole, so a retry is safe.
    retry_policy=RetryPolicy(max_retries=2, delay=3, backoff=Backoff.EXPONENTIAL),
    description=(
        "Billable seconds and minutes per voice connector for one month: the reference Athena "
        "query (or CDR_REPORT_QUERY) run in DuckDB with CURRENT_DATE bound to the reported month. "
        "Written to LAKE_BUCKET under reports/billing/<YYYY>-<MM>/ as CSV, Parquet, HTML and PNG, "
        "and mailed to CDR_REPORT_EMAIL when set."
    ),
)
def chime_billing_report(
    context: AssetExecutionContext,
    storage: CdrStorage,
    warehouse: Warehouse,
    mailer: Mailer,
    report_settings: ReportSettings,
) -> MaterializeResult:
    """Run the billing query for the partition's month; store and (optionally) mail the result."""
    month = date.fromisoformat(f"{context.partition_key}-01")
    period = month_key(month)
    # Settings errors fail at once, before any work, and are not retried: a retry cannot fix them.
    try:
        recipients = parse_recipients(report_settings.email) if report_settings.email.strip() else []
        subject = report_settings.subject.replace("{period}", period)
        check_header(subject, "subject")
        bind_period(report_settings.query, month)
    except (MailError, ReportError) as exc:
        raise Failure(str(exc), allow_retries=False) from exc
    store = storage.get()
    with warehouse.get_connection() as conn:
        refresh_views(conn, store, storage.lake_bucket)
        try:
            table = run_report(conn, report_settings.query, month)
        except ReportError as exc:
            raise Failure(str(exc), allow_retries=False) from exc
    files = render(table, month, note=f"Calls that ended in {period} (UTC).")
    keys = files.keys()
    for kind, key in keys.items():
        data = {"csv": files.csv, "parquet": files.parquet, "html": files.html.encode(), "png": files.png}[
            kind
        ]
        store.put(storage.lake_bucket, key, data, content_type=_CONTENT_TYPES[kind])  # type: ignore[arg-type]
    context.log.info(
        f"billing report {period}: {files.rows} rows -> {store.uri(storage.lake_bucket, keys['csv'])}"
    )

    mailed = ""
    if recipients:
        link = _presigned_link(store, storage.lake_bucket, keys["csv"], report_settings.link_expiry_seconds)
        msg = build_email(
            sender=mailer.sender,
            recipients=recipients,
            subject=subject,
            text=_mail_text(files, period, link, report_settings.link_expiry_seconds),
            html=_mail_html(files, link, report_settings.link_expiry_seconds),
            attachments=[Attachment(keys["csv"].rsplit("/", 1)[1], files.csv, "text", "csv")],
        )
        mailer.send(msg)  # raises MailError: the asset fails and is retried
        mailed = ", ".join(recipients)
        context.log.info(f"billing report {period} mailed to {mailed}")

    return MaterializeResult(
        metadata=_metadata(files, keys, store, storage.lake_bucket, mailed, report_settings)
    )


def _presigned_link(store: Storage, bucket: str, key: str, expiry: int) -> str | None:
    if not isinstance(store, S3Storage) or expiry <= 0:
        return None
    return store.client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry
    )


def _expiry_text(seconds: int) -> str:
    # The mail states the expiry it set (the reference said 12 h and set 24 h).
    return f"{seconds // 3600} hours" if seconds % 3600 == 0 else f"{seconds} seconds"


def _mail_text(files: ReportFiles, period: str, link: str | None, expiry: int) -> str:
    lines = [f"Amazon Chime billing report for {period}: {files.rows} row(s).", ""]
    lines += [f"{vc}: {minutes:,.1f} billable minutes" for vc, minutes in files.minutes]
    lines += ["", "The full result is attached as CSV."]
    if link:
        lines.append(f"Download link (valid for {_expiry_text(expiry)}): {link}")
    return "\n".join(lines) + "\n"


def _mail_html(files: ReportFiles, link: str | None, expiry: int) -> str:
    if not link:
        return files.html
    note = f'<p><a href="{link}">Download the CSV</a> (link valid for {_expiry_text(expiry)}).</p>'
    return files.html.replace("</body>", f"{note}</body>")


def _metadata(
    files: ReportFiles, keys: dict[str, str], store: Storage, bucket: str, mailed: str, rs: ReportSettings
) -> dict[str, object]:
    schema = TableSchema(
        columns=[TableColumn("voice_connector_id", "string"), TableColumn("billable_minutes", "float")]
    )
    return {
        "dagster/row_count": files.rows,
        "period": files.month,
        "billable_minutes_total": round(sum(m for _, m in files.minutes), 1),
        "billable_minutes_per_voice_connector": MetadataValue.table(
            [
                TableRecord({"voice_connector_id": vc, "billable_minutes": round(m, 1)})
                for vc, m in files.minutes
            ],
            schema=schema,
        ),
        "query": MetadataValue.md(
            f"```sql\n{bind_period(rs.query, date.fromisoformat(files.month + '-01'))}\n```"
        ),
        "files": MetadataValue.json({k: store.uri(bucket, v) for k, v in keys.items()}),
        "report": MetadataValue.path(store.uri(bucket, keys["html"])),
        "emailed_to": mailed or "(CDR_REPORT_EMAIL not set)",
    }
