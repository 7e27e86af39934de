"""The billing report: query binding, files in the lake, mail to a real SMTP server, schedule."""

import csv
import io
import re
import socket
import time
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest
from aiosmtpd.controller import Controller
from dagster import DagsterEventType, build_schedule_context, materialize

from cdr_assets.chime.ingest import ingest_delivery_day, refresh_views
from cdr_assets.chime.search import lake_glob
from cdr_assets.reports.assets import chime_billing_report
from cdr_assets.reports.billing import REFERENCE_QUERY, ReportError, bind_period, run_report
from cdr_assets.reports.mail import Attachment, MailError, build_email, parse_recipients
from cdr_assets.reports.schedules import chime_billing_report_schedule
from cdr_assets.warehouse import configure_lake_access
from cdr_assets_tests.chime.factory import VC, at, cdr, put_cdr
from cdr_assets_tests.chime.lake import VC2, build_lake

RECIPIENTS = ["ops@example.com", "billing@example.org"]


class _Sink:
    def __init__(self) -> None:
        self.envelopes: list = []
        self.unknown: set[str] = set()  # recipients this server refuses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.unknown:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(monkeypatch):
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(controller.port))
    monkeypatch.setenv("SMTP_STARTTLS", "false")
    monkeypatch.setenv("SMTP_FROM", "reports@cdr-assets.test")
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "5")
    yield sink
    controller.stop()


def _lake_with_january(env) -> None:
    """The known February lake plus one January call that a February report must leave out."""
    build_lake(env)
    store = env.storage()
    end = at(date(2026, 1, 31), "23:59:00")
    put_cdr(store, env.chime_cdr_bucket, cdr("jan", end, duration=900), at(date(2026, 1, 31), "23:59:30"))
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"))
    try:
        configure_lake_access(conn, store)
        ingest_delivery_day(
            store,
            conn,
            cdr_bucket=env.chime_cdr_bucket,
            lake_bucket=env.lake_bucket,
            delivery_day=date(2026, 1, 31),
            workers=1,
        )
    finally:
        conn.close()


def _expected_minutes(env, month: int) -> dict[str, float]:
    conn = duckdb.connect()
    configure_lake_access(conn, env.storage())
    glob = lake_glob(env.storage().uri(env.lake_bucket))
    rows = conn.execute(
        "SELECT voiceconnectorid, sum(billabledurationminutes) "
        "FROM read_parquet(?, hive_partitioning = true) WHERE month::INT = ? GROUP BY 1",
        [glob, month],
    ).fetchall()
    conn.close()
    return {vc: round(m, 1) for vc, m in rows}


def test_bind_period_fills_placeholders_and_current_date():
    sql = bind_period(REFERENCE_QUERY, date(2025, 12, 1))
    assert "FROM amazon_chime_sdk_voice_connector_cdrs.processed_cdrs" in sql
    assert "YEAR(DATE '2025-12-31')" in sql and "MONTH(DATE '2025-12-31')" in sql
    assert "CURRENT_DATE" not in sql and not sql.endswith(";")
    leap = bind_period("select year(current_date()), Current_Date from {database}.{table}", date(2024, 2, 1))
    assert leap == (
        "select year(DATE '2024-02-29'), DATE '2024-02-29' from "
        "amazon_chime_sdk_voice_connector_cdrs.processed_cdrs"
    )
    # Only the documented rule: a column merely containing the word is left alone.
    assert "my_current_date_col" in bind_period("select my_current_date_col from t", date(2025, 1, 1))
    with pytest.raises(ReportError, match="single SQL statement"):
        bind_period("select 1; drop table x", date(2025, 1, 1))


def test_report_query_runs_for_the_reported_month(local_env):
    _lake_with_january(local_env)
    conn = duckdb.connect(str(local_env.home / "warehouse.duckdb"))
    refresh_views(conn, local_env.storage(), local_env.lake_bucket)
    feb = run_report(conn, "", date(2026, 2, 1)).to_pylist()
    jan = run_report(conn, "", date(2026, 1, 1)).to_pylist()
    pasted = (
        "SELECT voiceconnectorid, count(*) AS calls FROM {database}.{table} "
        "WHERE year = year(current_date) AND month = month(current_date) GROUP BY 1 ORDER BY 1;"
    )
    pasted_feb = run_report(conn, pasted, date(2026, 2, 1)).to_pylist()
    with pytest.raises(ReportError, match="failed"):
        run_report(conn, "SELECT nope FROM {database}.{table}", date(2026, 2, 1))
    conn.close()
    assert {(r["voiceconnectorid"], r["month"], r["year"]) for r in feb} == {(VC, 2, 2026), (VC2, 2, 2026)}
    assert jan == [
        {
            "voiceconnectorid": VC,
            "billabledurationseconds": 900,
            "billabledurationminutes": 15.0,
            "month": 1,
            "year": 2026,
        }
    ]
    assert pasted_feb == [{"voiceconnectorid": VC, "calls": 4}, {"voiceconnectorid": VC2, "calls": 1}]


def test_recipients_and_subject_cannot_inject_headers():
    assert parse_recipients(" ops@example.com,billing@example.org ,") == RECIPIENTS
    for bad in (
        "ops@example.com\r\nBcc: evil@example.net",
        "ops@example.com\nBcc: x@y",
        "not an address",
        "a@b; c@d",
    ):
        with pytest.raises(MailError):
            parse_recipients(bad)
    args = dict(sender="r@x.test", recipients=RECIPIENTS, text="t", html="<p>t</p>", attachments=[])
    with pytest.raises(MailError, match="line break"):
        build_email(subject="Report\r\nBcc: evil@example.net", **args)
    with pytest.raises(MailError, match="line break"):
        build_email(**{**args, "recipients": ["a@b.c\r\nBcc: evil@example.net"]}, subject="s")
    msg = build_email(subject="ok", **{**args, "attachments": [Attachment("r.csv", b"a,b\n", "text", "csv")]})
    assert "Bcc" not in msg and msg["To"] == ", ".join(RECIPIENTS)


def test_schedule_reports_the_month_that_just_ended():
    for when, key in (
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2025-12"),  # January: the reference's bug
        (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), "2026-02"),
    ):
        request = chime_billing_report_schedule(build_schedule_context(scheduled_execution_time=when))
        assert request.partition_key == key and key in request.run_key
    assert chime_billing_report_schedule.cron_schedule == "0 0 1 * *"
    assert chime_billing_report_schedule.execution_timezone == "UTC"


def test_report_lands_in_the_lake_and_in_the_mailbox(cdr_env, smtp, monkeypatch):
    monkeypatch.setenv("CDR_REPORT_EMAIL", ", ".join(RECIPIENTS))
    _lake_with_january(cdr_env)
    result = materialize([chime_billing_report], partition_key="2026-02", resources=cdr_env.resources())
    assert result.success
    expected = _expected_minutes(cdr_env, 2)
    assert expected == {VC: 30.0, VC2: 0.0}  # a1 400 s + a2 200 s + a3 600 s + a5 600 s; a4 failed

    # The files, under reports/billing/2026-02/.
    store = cdr_env.storage()
    keys = sorted(o.key for o in store.list_objects(cdr_env.lake_bucket, "reports/billing/"))
    base = "reports/billing/2026-02/billing_2026-02"
    assert keys == [f"{base}.csv", f"{base}.html", f"{base}.parquet", f"{base}.png"]
    assert store.get(cdr_env.lake_bucket, f"{base}.png").startswith(b"\x89PNG")
    page = store.get(cdr_env.lake_bucket, f"{base}.html").decode()
    assert "data:image/png;base64," in page and f"<td>{VC}</td>" in page
    stored_csv = store.get(cdr_env.lake_bucket, f"{base}.csv")

    # The mail: recipients, subject, HTML table, and the CSV attachment matching the lake.
    (envelope,) = smtp.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(RECIPIENTS)
    msg = message_from_bytes(envelope.content, policy=policy.default)
    assert msg["Subject"] == "Amazon Chime billing report 2026-02"
    html = msg.get_body(("html",)).get_content()
    assert f"<td>{VC}</td>" in html and "<td>30.0</td>" in html and "<table" in html
    # The chart travels as an inline part the HTML references by Content-ID, not as a data: URI.
    assert "data:image" not in html
    (chart,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert f'src="cid:{chart["Content-ID"][1:-1]}"' in html
    assert chart.get_content() == store.get(cdr_env.lake_bucket, f"{base}.png")
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "billing_2026-02.csv"
    data = attachment.get_content()
    data = data.encode() if isinstance(data, str) else data
    assert data.replace(b"\r\n", b"\n") == stored_csv
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert {r["voiceconnectorid"]: round(float(r["billabledurationminutes"]), 1) for r in rows} == expected
    assert {(r["month"], r["year"]) for r in rows} == {("2", "2026")}
    text = msg.get_body(("plain",)).get_content()
    if cdr_env.mode == "s3":
        # The stated expiry is the one set on the link.
        assert "valid for 24 hours" in text
        query = parse_qs(urlparse(re.search(r"https?://\S+", text).group(0)).query)
        if "X-Amz-Expires" in query:  # SigV4
            assert query["X-Amz-Expires"] == ["86400"]
        else:  # SigV2: an absolute time
            assert abs(int(query["Expires"][0]) - (time.time() + 86400)) < 300
    else:
        assert "valid for" not in text

    mat = result.asset_materializations_for_node("chime_billing_report")[0]
    assert mat.metadata["dagster/row_count"].value == 2
    assert mat.metadata["billable_minutes_total"].value == 30.0
    assert "ops@example.com" in mat.metadata["emailed_to"].value


def test_smtp_down_fails_clearly_and_is_retried(local_env, monkeypatch):
    monkeypatch.setenv("CDR_REPORT_EMAIL", "ops@example.com")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(_free_port()))  # nothing listens there
    monkeypatch.setenv("SMTP_STARTTLS", "false")
    build_lake(local_env)
    result = materialize(
        [chime_billing_report], partition_key="2026-02", resources=local_env.resources(), raise_on_error=False
    )
    assert not result.success
    events = result.all_events
    assert sum(e.event_type == DagsterEventType.STEP_UP_FOR_RETRY for e in events) == 2
    (failure,) = [e for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "sending the report to 127.0.0.1" in str(failure.step_failure_data.error)


def test_injected_recipient_fails_before_sending_and_without_retries(local_env, smtp, monkeypatch):
    monkeypatch.setenv("CDR_REPORT_EMAIL", "ops@example.com\r\nBcc: evil@example.net")
    build_lake(local_env)
    result = materialize(
        [chime_billing_report], partition_key="2026-02", resources=local_env.resources(), raise_on_error=False
    )
    assert not result.success and smtp.envelopes == []
    assert not any(e.event_type == DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)
    assert not list(local_env.storage().list_objects(local_env.lake_bucket, "reports/"))


def test_partial_refusal_fails_without_mailing_the_others_twice(local_env, smtp, monkeypatch):
    smtp.unknown.add("gone@example.com")
    monkeypatch.setenv("CDR_REPORT_EMAIL", "ops@example.com, gone@example.com")
    build_lake(local_env)
    result = materialize(
        [chime_billing_report], partition_key="2026-02", resources=local_env.resources(), raise_on_error=False
    )
    assert not result.success
    (envelope,) = smtp.envelopes  # delivered once, to the one the server accepted
    assert envelope.rcpt_tos == ["ops@example.com"]
    assert not any(e.event_type == DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    text = str(failure.step_failure_data.error)
    assert "gone@example.com: 550" in text and "accepted for ops@example.com" in text
