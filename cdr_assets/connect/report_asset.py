"""Dagster shell of the daily contact-center KPI report."""

import base64
from datetime import date

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from cdr_assets.chime.assets import delivery_days
from cdr_assets.connect.assets import DIMENSIONS, FACT_CONTACT
from cdr_assets.connect.kpi import compute, report_files
from cdr_assets.reports.mail import Attachment, build_email, parse_recipients
from cdr_assets.resources import CdrStorage, ConnectSettings, Mailer, Warehouse
from cdr_assets.tabular import markdown_table


@asset(
    key=AssetKey("contact_center_report"),
    deps=[FACT_CONTACT, *DIMENSIONS.values()],
    partitions_def=delivery_days,
    group_name="connect",
    kinds={"csv", "html", "s3"},
    pool="duckdb",
    description=(
        "KPIs per queue and per agent for contacts initiated on the partition's day (UTC): contacts "
        "handled, abandoned, service level (answered within CONNECT_SERVICE_LEVEL_SECONDS), average "
        "queue wait, average handle time (talk + hold + ACW), transfers. CSV + HTML with a chart under "
        "reports/contact-center/<YYYY-MM-DD>/ in LAKE_BUCKET; mailed when CONNECT_REPORT_EMAIL is set."
    ),
)
def contact_center_report(
    context: AssetExecutionContext,
    storage: CdrStorage,
    warehouse: Warehouse,
    connect_settings: ConnectSettings,
    mailer: Mailer,
) -> MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    with warehouse.get_connection() as conn:
        report = compute(conn, day, connect_settings.service_level_seconds)
    store = storage.get()
    files = report_files(report)
    for key, (data, content_type) in files.items():
        store.put(storage.lake_bucket, key, data, content_type=content_type)
    mailed = ""
    recipients = parse_recipients(connect_settings.report_email)
    if recipients:
        html_key = next(k for k in files if k.endswith(".html"))
        msg = build_email(
            sender=mailer.sender,
            recipients=recipients,
            subject=f"Contact center report {day}",
            text=f"Contact center KPIs for {day}: {report.totals}. "
            f"Files: {store.uri(storage.lake_bucket, html_key)}",
            html=files[html_key][0].decode(),
            attachments=[
                Attachment(k.rsplit("/", 1)[1], files[k][0], "text", "csv")
                for k in files
                if k.endswith(".csv")
            ],
        )
        mailer.send(msg)
        mailed = ", ".join(recipients)
    chart = next(data for k, (data, _) in files.items() if k.endswith(".png"))
    return MaterializeResult(
        metadata={
            **report.totals,
            "service_level_threshold_seconds": report.threshold_seconds,
            "per_queue": MetadataValue.md(
                markdown_table(report.queues.column_names, [r.values() for r in report.queues.to_pylist()])
            ),
            "per_agent": MetadataValue.md(
                markdown_table(
                    [c for c in report.agents.column_names if c != "agent_arn"],
                    [[v for k, v in r.items() if k != "agent_arn"] for r in report.agents.to_pylist()],
                )
            ),
            "chart": MetadataValue.md(
                "![contacts per queue](data:image/png;base64," + base64.b64encode(chart).decode() + ")"
            ),
            "files": MetadataValue.json([store.uri(storage.lake_bucket, k) for k in files]),
            "mailed_to": mailed or "(not mailed: CONNECT_REPORT_EMAIL is empty)",
        }
    )
