"""Call statistics: the pure query, the daily asset (UI metadata + DuckDB table), the CLI."""

import json
from datetime import date, timedelta

import duckdb
import pytest
from dagster import materialize

from cdr_assets import cli
from cdr_assets.chime.stats import call_stats
from cdr_assets.chime.stats_assets import chime_call_stats
from cdr_assets_tests.chime.factory import VC, at, cdr, put_cdr
from cdr_assets_tests.chime.lake import (
    DAY,
    VC2,
    build_lake,
    ingest_day,
    lake_connection,
    warehouse_connection,
)


def test_stats_per_day_and_voice_connector(cdr_env):
    build_lake(cdr_env)
    conn = lake_connection(cdr_env)
    lake = cdr_env.storage().uri(cdr_env.lake_bucket)
    rows = call_stats(conn, lake, DAY - timedelta(7), DAY).to_pylist()
    totals = call_stats(conn, lake, DAY - timedelta(7), DAY, per_day=False).to_pylist()
    only_vc2 = call_stats(conn, lake, DAY - timedelta(7), DAY, voice_connector=VC2).to_pylist()
    one_day = call_stats(conn, lake, DAY, DAY).to_pylist()
    conn.close()
    assert [(r["day"], r["voiceconnectorid"], r["calls"]) for r in rows] == [
        (DAY - timedelta(3), VC2, 1),
        (DAY - timedelta(1), VC, 1),
        (DAY, VC, 3),
    ]
    (day,) = one_day  # a1 400 s, a2 200 s, a5 600 s; all completed, all outbound
    assert (day["completed"], day["failed"], day["inbound"], day["outbound"]) == (3, 0, 0, 3)
    assert day["avg_billable_seconds"] == 400.0 and day["p50_billable_seconds"] == 400.0
    assert day["p95_billable_seconds"] == pytest.approx(580.0)
    assert day["billable_minutes"] == pytest.approx(20.0)
    by_vc = {r["voiceconnectorid"]: r for r in totals}
    assert by_vc[VC]["calls"] == 4 and by_vc[VC]["inbound"] == 1 and by_vc[VC]["billable_minutes"] == 30.0
    assert (by_vc[VC2]["failed"], by_vc[VC2]["completed"]) == (1, 0)
    assert [r["voiceconnectorid"] for r in only_vc2] == [VC2]


def test_stats_of_an_empty_range_and_a_bad_range(local_env):
    conn = lake_connection(local_env)
    lake = local_env.storage().uri(local_env.lake_bucket)
    assert call_stats(conn, lake, DAY, DAY).num_rows == 0
    with pytest.raises(ValueError, match="before it starts"):
        call_stats(conn, lake, DAY, DAY - timedelta(1))
    conn.close()


def test_stats_asset_shows_numbers_and_fills_the_table(local_env):
    build_lake(local_env)
    result = materialize([chime_call_stats], partition_key=str(DAY), resources=local_env.resources())
    (mat,) = result.asset_materializations_for_node("chime_call_stats")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert (meta["calls"], meta["completed"], meta["failed"], meta["billable_minutes"]) == (3, 3, 0, 20.0)
    assert meta["per_voice_connector"].records[0].data["voiceconnectorid"] == VC
    assert VC in meta["summary"]
    # Materializing again replaces the day's rows.
    materialize([chime_call_stats], partition_key=str(DAY), resources=local_env.resources())
    conn = duckdb.connect(str(local_env.home / "warehouse.duckdb"), read_only=True)
    rows = conn.execute("SELECT day, voiceconnectorid, calls FROM chime.daily_call_stats").fetchall()
    conn.close()
    assert rows == [(DAY, VC, 3)]


def test_cli_stats(local_env, capsys):
    build_lake(local_env)
    frm, to = str(DAY - timedelta(7)), str(DAY)
    assert cli.main(["stats", "--from", frm, "--to", to, "--total", "--format", "json"]) == 0
    by_vc = {r["voiceconnectorid"]: r for r in json.loads(capsys.readouterr().out)}
    assert by_vc[VC]["billable_minutes"] == 30.0 and by_vc[VC2]["calls"] == 1
    assert cli.main(["stats", "--from", frm, "--to", to]) == 0
    out = capsys.readouterr().out
    assert "p95_billable_seconds" in out and str(DAY) in out
    assert cli.main(["stats", "--from", to, "--to", frm]) == 2
    assert date.fromisoformat(to) > date.fromisoformat(frm)


def test_a_late_delivery_refreshes_the_day_it_belongs_to(local_env):
    build_lake(local_env)
    before = DAY - timedelta(1)
    materialize([chime_call_stats], partition_key=str(before), resources=local_env.resources())
    # A call that ended just before midnight, delivered two days later.
    late = cdr("late1", at(before, "23:59:00"), duration=120)
    put_cdr(local_env.storage(), local_env.chime_cdr_bucket, late, at(DAY + timedelta(1), "00:10:00"))
    conn = warehouse_connection(local_env)
    try:
        ingest_day(local_env, conn, DAY + timedelta(1))
    finally:
        conn.close()
    after = str(DAY + timedelta(1))
    result = materialize([chime_call_stats], partition_key=after, resources=local_env.resources())
    (mat,) = result.asset_materializations_for_node("chime_call_stats")
    assert mat.metadata["calls"].value == 0  # nothing ended on the partition day itself
    assert mat.metadata["late_days_recomputed"].value == {str(before): 2}
    conn = duckdb.connect(str(local_env.home / "warehouse.duckdb"), read_only=True)
    rows = conn.execute("SELECT day, calls FROM chime.daily_call_stats ORDER BY day").fetchall()
    conn.close()
    assert rows == [(before, 2)]  # a3 and the late call; the partition day has no calls, so no row
