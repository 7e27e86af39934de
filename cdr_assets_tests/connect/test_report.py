"""The generated contact center through the whole Connect pipeline, the KPI report and its mail."""

import csv
import io
from datetime import date
from email import message_from_bytes, policy

from dagster import AssetKey, materialize

from cdr_assets.connect.assets import connect_warehouse
from cdr_assets.connect.checks import connect_checks
from cdr_assets.connect.generate import generate_ctrs
from cdr_assets.connect.parse import parse_file
from cdr_assets.connect.report_asset import contact_center_report
from cdr_assets_tests.connect.test_assets import _query
from cdr_assets_tests.reports.test_billing import smtp  # noqa: F401  (a real SMTP server on 127.0.0.1)

DAY = date(2026, 3, 2)


def _run_all(env, summary) -> dict:
    metadata = {}
    for day in summary.per_delivery_day:
        result = materialize(
            [connect_warehouse, contact_center_report, *connect_checks],
            partition_key=day,
            resources=env.resources(),
            raise_on_error=True,
        )
        assert all(e.passed for e in result.get_asset_check_evaluations())
        (mat,) = [
            m
            for m in result.asset_materializations_for_node("contact_center_report")
            if m.asset_key == AssetKey("contact_center_report")
        ]
        metadata[day] = {k: v.value for k, v in mat.metadata.items()}
    return metadata


def test_generated_contact_center_answers_the_kpis(cdr_env):
    store = cdr_env.storage()
    summary = generate_ctrs(store, cdr_env.connect_bucket, contacts=600, days=1, start=DAY, seed=4)
    assert (
        summary.abandoned and summary.transfers and summary.updated_versions and summary.duplicate_deliveries
    )
    assert set(summary.channels) == {"VOICE", "CHAT", "TASK"}
    metadata = _run_all(cdr_env, summary)

    (contacts,) = _query(cdr_env, "SELECT count(*) FROM connect.fact_contact")[0]
    assert contacts == summary.contacts
    (versions,) = _query(cdr_env, "SELECT count(*) FROM connect.dim_agent")[0]
    (agents,) = _query(cdr_env, "SELECT count(DISTINCT agent_arn) FROM connect.dim_agent")[0]
    assert versions > agents  # some agents changed routing profile: type-2 history
    chains = _query(
        cdr_env,
        "SELECT count(*) FROM connect.fact_contact a JOIN connect.fact_contact b "
        "ON a.next_contact_id = b.contact_id AND b.previous_contact_id = a.contact_id",
    )[0][0]
    assert chains == summary.transfers

    report = metadata[str(DAY)]
    expected = _query(
        cdr_env,
        f"SELECT count(*), count(*) FILTER (WHERE is_abandoned) FROM connect.fact_contact "
        f"WHERE date_key = {DAY:%Y%m%d}",
    )[0]
    assert (report["contacts"], report["abandoned"]) == expected
    assert "| queue |" in report["per_queue"] and "data:image/png;base64," in report["chart"]

    base = f"reports/contact-center/{DAY}/"
    keys = {o.key for o in store.list_objects(cdr_env.lake_bucket, base)}
    assert keys == {base + n for n in ("queues.csv", "agents.csv", "chart.png", "report.html")}
    rows = list(csv.DictReader(io.StringIO(store.get(cdr_env.lake_bucket, base + "queues.csv").decode())))
    assert sum(int(r["contacts"]) for r in rows) == report["contacts"]
    assert all(0 <= float(r["service_level_pct"]) <= 100 for r in rows if r["service_level_pct"])


def test_generated_files_parse_completely(local_env):
    store = local_env.storage()
    summary = generate_ctrs(store, local_env.connect_bucket, contacts=300, days=1, start=DAY, seed=9)
    parsed = [
        parse_file(store.get(local_env.connect_bucket, o.key), o.key)
        for o in store.list_objects(local_env.connect_bucket, "ctr/")
    ]
    assert sum(p.row_count for p in parsed) == summary.records + summary.duplicate_deliveries
    assert not any(p.bad for p in parsed)
    assert any("}{" in a for p in parsed for a in p.rows["attributes"] if a)


def test_report_is_mailed(local_env, smtp, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CONNECT_REPORT_EMAIL", "lead@example.com")
    summary = generate_ctrs(
        local_env.storage(), local_env.connect_bucket, contacts=100, days=1, start=DAY, seed=2
    )
    metadata = _run_all(local_env, summary)
    assert metadata[str(DAY)]["mailed_to"] == "lead@example.com"
    msg = message_from_bytes(smtp.envelopes[0].content, policy=policy.default)
    assert msg["To"] == "lead@example.com" and str(DAY) in msg["Subject"]
    names = {p.get_filename() for p in msg.iter_attachments()}
    assert names == {"queues.csv", "agents.csv"}
