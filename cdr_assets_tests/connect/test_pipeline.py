"""Staging the next day while one loads gives what staging and loading each day in turn gives."""

import os
import sys
import threading
import time
from datetime import date
from functools import partial

import duckdb
import pytest

from cdr_assets.connect.generate import generate_ctrs
from cdr_assets.connect.load import load_partition
from cdr_assets.connect.pipeline import STAGING_NICENESS, stage_and_load
from cdr_assets.connect.staging import stage_delivery_day
from cdr_assets.storage import LocalStorage
from cdr_assets_tests.connect.factory import star_tables

START = date(2026, 3, 1)


def _store(tmp_path) -> tuple[LocalStorage, list[date]]:
    store = LocalStorage(tmp_path / "store")
    store.ensure_bucket("c")
    gen = generate_ctrs(store, "c", contacts=600, days=3, start=START, seed=8, records_per_file=40)
    return store, sorted(date.fromisoformat(d) for d in gen.per_delivery_day)


def _stage(store, conn, day, lake="lake"):
    return stage_delivery_day(
        store, conn, connect_bucket="c", lake_bucket=lake, ctr_prefix="ctr/", delivery_day=day, workers=2
    )


def _load(store, conn, day, lake="lake"):
    return load_partition(conn, store, lake, day)


def test_pipelined_days_give_the_tables_of_days_in_turn(tmp_path):
    store, days = _store(tmp_path)
    assert len(days) >= 3  # late deliveries spill past the generated days
    seq = duckdb.connect(str(tmp_path / "seq.duckdb"))
    for day in days:
        _stage(store, seq, day)
        _load(store, seq, day)
    expected = star_tables(seq)
    seq.close()

    conn = duckdb.connect(str(tmp_path / "pipe.duckdb"))
    stage, load = partial(_stage, store, lake="lake2"), partial(_load, store, lake="lake2")
    results = list(stage_and_load(conn, days, stage, load))
    assert [r.delivery_day for r in results] == days
    assert all(r.staging.balanced and r.load.rows_in == r.staging.rows_staged for r in results)
    assert star_tables(conn) == expected
    assert expected["fact_contact"], "the days must load something"
    conn.close()


def test_a_failed_staging_stops_at_its_day_and_keeps_the_days_before(tmp_path):
    store, days = _store(tmp_path)
    staged: list[date] = []

    def stage(conn, day):
        if day == days[1]:
            raise RuntimeError("bucket unreadable")
        staged.append(day)
        return _stage(store, conn, day)

    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    loaded = []
    with pytest.raises(RuntimeError, match="bucket unreadable"):
        for result in stage_and_load(conn, days, stage, partial(_load, store)):
            loaded.append(result.delivery_day)
    assert loaded == [days[0]] and staged == [days[0]]  # nothing after the failed day started
    (loaded_days,) = conn.execute("SELECT list(DISTINCT delivery_day) FROM connect.loaded_files").fetchone()  # type: ignore[misc]
    assert loaded_days == [days[0]]


def test_a_failed_load_waits_for_the_staging_beside_it(tmp_path):
    store, days = _store(tmp_path)
    finished: list[date] = []

    def stage(conn, day):
        report = _stage(store, conn, day)
        finished.append(day)
        return report

    def load(conn, day):
        raise RuntimeError("disk full")

    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    with pytest.raises(RuntimeError, match="disk full"):
        list(stage_and_load(conn, days, stage, load))
    # The next day's staging ran to its commit before the error came out; no thread is left.
    assert finished == days[:2]
    assert not [t for t in threading.enumerate() if t.name.startswith("connect-staging")]
    (committed,) = conn.execute(
        "SELECT count(DISTINCT delivery_day) FROM connect.lake_files WHERE state = 'committed'"
    ).fetchone()  # type: ignore[misc]
    assert committed == 2


def test_no_days_is_nothing(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert list(stage_and_load(conn, [], lambda c, d: None, lambda c, d: None)) == []  # type: ignore[arg-type,return-value]


def test_days_in_the_order_given(tmp_path):
    store, days = _store(tmp_path)
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    order = list(reversed(days))
    results = list(stage_and_load(conn, order, partial(_stage, store), partial(_load, store)))
    assert [r.delivery_day for r in results] == order
    assert [r.staging.delivery_day for r in results] == order


def _threads(conn: duckdb.DuckDBPyConnection) -> int:
    return int(conn.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_loads_beside_a_staging_run_duckdb_on_one_thread_and_the_stagings_yield_to_them(tmp_path):
    store, days = _store(tmp_path)
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), config={"threads": 3})
    stagings: list[tuple[int, int]] = []
    loads: list[tuple[int, int]] = []  # threads as the load starts, and once the staging beside it ended
    load_started = {day: threading.Event() for day in days}

    def stage(c, day):
        stagings.append((_threads(c), _niceness()))
        report = _stage(store, c, day)
        if day != days[0]:  # beside the load of the day before: end only once that load has started
            assert load_started[days[days.index(day) - 1]].wait(30)
        return report

    def load(c, day):
        at_start = _threads(c)
        load_started[day].set()
        report = _load(store, c, day)
        deadline = time.monotonic() + 10  # the staging beside gives the threads back as it ends
        while _threads(c) != 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        loads.append((at_start, _threads(c)))
        return report

    ours = _niceness()
    list(stage_and_load(conn, days, stage, load))
    beside = len(days) - 1
    assert loads == [(1, 3)] * beside + [(3, 3)]  # the last load has no staging beside it
    assert stagings[0] == (3, ours)  # the first day stages alone, as the caller runs
    if sys.platform.startswith("linux"):
        assert stagings[1:] == [(1, min(19, ours + STAGING_NICENESS))] * beside
    assert _threads(conn) == 3 and _niceness() == ours

    def failing(c, day):
        if day == days[1]:
            raise RuntimeError("bucket unreadable")
        return _stage(store, c, day)

    with pytest.raises(RuntimeError, match="bucket unreadable"):
        list(stage_and_load(conn, days, failing, partial(_load, store)))
    assert _threads(conn) == 3
