"""The ``cdr-assets`` command as a user runs it: separate processes, a persistent instance."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from cdr_assets.chime.ledger import LAKE_VIEW


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cdr-assets")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def test_generate_process_backfill(local_env):
    env = dict(os.environ)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=4)
    gen = _cli("generate", "--calls", "600", "--days", "2", "--start", str(start), "--seed", "5", env=env)
    assert gen.returncode == 0, gen.stderr
    assert "wrote" in gen.stdout

    # The sensor's window (2 days back) does not reach the generated days: nothing to do...
    first = _cli("process", env=env)
    assert first.returncode == 0, first.stderr
    # ...so history is loaded by backfilling partitions from the command line.
    back = _cli("backfill", "--from", str(start), "--to", str(today - timedelta(days=1)), env=env)
    assert back.returncode == 0, back.stderr
    assert back.stdout.count("[ok]") == 4
    conn = duckdb.connect(os.environ["CDR_WAREHOUSE"], read_only=True)
    (rows,) = conn.execute(f"SELECT count(*) FROM {LAKE_VIEW}").fetchone()
    conn.close()
    assert rows == 600

    # New objects for today are picked up by the sensor, once.
    gen2 = _cli("generate", "--calls", "50", "--days", "1", "--start", str(today), "--seed", "6", env=env)
    assert gen2.returncode == 0, gen2.stderr
    tick = _cli("process", env=env)
    assert tick.returncode == 0, tick.stderr
    assert "sensor:chime_cdr_sensor" in tick.stdout and "[ok]" in tick.stdout
    again = _cli("process", env=env)
    assert again.returncode == 0 and "[ok]" not in again.stdout
    # The cursor lives under DAGSTER_HOME, so it survives between processes.
    assert (Path(os.environ["DAGSTER_HOME"]) / "headless_cursors.json").exists()


def test_bad_arguments_exit_with_2(local_env):
    bad = _cli("backfill", "--from", "2026-01-05", "--to", "2026-01-01", env=dict(os.environ))
    assert bad.returncode == 2 and "before" in bad.stderr
    unknown = _cli("generate", "--no-such-flag", env=dict(os.environ))
    assert unknown.returncode == 2


def test_process_include_schedules_runs_each_schedule_once(local_env):
    """Headless schedules: what the schedule would request now, and not again (run key)."""
    from dagster import Definitions

    from cdr_assets.chime.assets import chime_cdr_lake, raw_chime_cdrs
    from cdr_assets.headless import process
    from cdr_assets.reports.assets import chime_billing_report
    from cdr_assets.reports.schedules import chime_billing_report_schedule

    defs = Definitions(
        assets=[raw_chime_cdrs, chime_cdr_lake, chime_billing_report],
        schedules=[chime_billing_report_schedule],
        resources=local_env.resources(),
    )
    first = process(defs, include_schedules=True, log=lambda _: None)
    (run,) = [o for o in first if o.source == "schedule:chime_billing_report_schedule"]
    today = datetime.now(UTC).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert run.success and run.partition_key == last_month and not run.skipped
    again = process(defs, include_schedules=True, log=lambda _: None)
    assert [o.skipped for o in again if o.source.startswith("schedule:")] == [True]


def test_backfill_of_the_connect_warehouse(local_env):
    env = dict(os.environ)
    start = datetime.now(UTC).date() - timedelta(days=10)
    gen = _cli(
        "generate",
        "--calls",
        "10",
        "--contacts",
        "300",
        "--days",
        "2",
        "--start",
        str(start),
        "--seed",
        "4",
        env=env,
    )
    assert gen.returncode == 0, gen.stderr
    back = _cli(
        "backfill",
        "--source",
        "connect",
        "--from",
        str(start),
        "--to",
        str(start + timedelta(days=3)),
        env=env,
    )
    assert back.returncode == 0, back.stderr
    # The four days are one run (the asset's backfill policy allows a week), reported as a range.
    assert (
        back.stdout.count("[ok]") == 1
        and f"partition {start}..{start + timedelta(days=3)} [ok]" in back.stdout
    )
    assert "records_in=" in back.stdout and "inserted=" in back.stdout
    conn = duckdb.connect(os.environ["CDR_WAREHOUSE"], read_only=True)
    facts, contacts = conn.execute(
        "SELECT count(*), count(DISTINCT contact_id) FROM connect.fact_contact"
    ).fetchone()
    staged = conn.execute(
        "SELECT sum(row_count) FROM connect.lake_files WHERE kind = 'ctrs' AND state = 'committed'"
    ).fetchone()
    conn.close()
    assert facts == contacts == 300 and staged[0] >= 300  # versions and duplicate deliveries are staged too


def test_backfill_runs_are_consecutive_days_up_to_a_week():
    from datetime import date

    from cdr_assets.cli import _consecutive_runs

    day = date(2026, 1, 1)
    days = [day + timedelta(n) for n in (*range(9), 10, 12, 13)]
    runs = _consecutive_runs(list(reversed(days)) + days[:2], 7)
    assert [(r[0].day, len(r)) for r in runs] == [(1, 7), (8, 2), (11, 1), (13, 2)]
