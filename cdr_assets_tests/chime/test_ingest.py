"""The ingestion core against real storage (both modes) and a real DuckDB file."""

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from cdr_assets.chime.ingest import FAILPOINT_ENV, KeyRange, ingest_delivery_day, refresh_views
from cdr_assets.chime.keys import day_prefix
from cdr_assets.chime.ledger import LAKE_VIEW, QUARANTINE_VIEW
from cdr_assets.chime.number_index import index_key
from cdr_assets_tests.chime.factory import VC, at, cdr, put_cdr
from cdr_assets_tests.chime.lake import ingest_day, warehouse_connection

DAY = date(2026, 3, 14)


_conn = warehouse_connection


def _ingest(env, conn, day=DAY, ranges=None):
    return ingest_day(env, conn, day, ranges)


def _lake_rows(env, conn) -> list[tuple]:
    refresh_views(conn, env.storage(), env.lake_bucket)
    return conn.execute(
        f"SELECT transactionid, year, month, day, source_key FROM {LAKE_VIEW} ORDER BY 1"
    ).fetchall()


def _lake_files(env) -> list[str]:
    return sorted(o.key for o in env.storage().list_objects(env.lake_bucket))


def test_end_to_end_counts_dedupe_and_end_day_folders(cdr_env):
    store, bucket = cdr_env.storage(), cdr_env.chime_cdr_bucket
    put_cdr(store, bucket, cdr("t-normal", at(DAY, "10:00:00")), at(DAY, "10:00:05"))
    # Ends 23:59:59 the day before, delivered after midnight: belongs to the previous end day.
    put_cdr(store, bucket, cdr("t-midnight", at(DAY - timedelta(1), "23:59:59")), at(DAY, "00:00:03"))
    # Same call delivered twice (same TransactionId, another key).
    put_cdr(store, bucket, cdr("t-dup", at(DAY, "11:00:00")), at(DAY, "11:00:02"))
    put_cdr(store, bucket, cdr("t-dup", at(DAY, "11:00:00")), at(DAY, "11:07:00"))
    # Quirks: integer minutes, no IsProxyCall, an extra key.
    quirky = cdr(
        "t-quirks", at(DAY, "12:00:00"), duration=0, BillableDurationMinutes=0, pricePerUnitUSD="0.0048"
    )
    del quirky["IsProxyCall"]
    put_cdr(store, bucket, quirky, at(DAY, "12:00:01"))
    put_cdr(store, bucket, b'{"AwsAccountId": "1', at(DAY, "13:00:00"), txn="truncated")
    put_cdr(store, bucket, b"", at(DAY, "13:00:01"), txn="empty")
    put_cdr(
        store, bucket, cdr("t-types", at(DAY, "13:00:00"), BillableDurationSeconds="60"), at(DAY, "13:00:02")
    )

    conn = _conn(cdr_env)
    report = _ingest(cdr_env, conn)
    assert (report.objects_in, report.rows_written, report.quarantined, report.duplicates_dropped) == (
        8,
        4,
        3,
        1,
    )
    assert report.balanced
    assert report.quarantine_reasons == {"truncated_json": 1, "empty_object": 1, "wrong_type": 1}
    assert report.quirks["integer_BillableDurationMinutes"] == 1
    assert report.quirks["missing_IsProxyCall"] == 1

    rows = _lake_rows(cdr_env, conn)
    assert [r[0] for r in rows] == ["t-dup", "t-midnight", "t-normal", "t-quirks"]
    by_txn = {r[0]: r[1:4] for r in rows}
    assert by_txn["t-midnight"] == (2026, 3, 13)
    assert by_txn["t-normal"] == (2026, 3, 14)
    # The first delivery (by key) of a duplicated call is the one kept.
    assert next(r[4] for r in rows if r[0] == "t-dup").split("/")[-1].startswith("11.00.02")
    extra, proxy, minutes = conn.execute(
        "SELECT extra_fields, isproxycall, billabledurationminutes "
        f"FROM {LAKE_VIEW} WHERE transactionid = 't-quirks'"
    ).fetchone()
    assert extra == '{"pricePerUnitUSD":"0.0048"}' and proxy is False and minutes == 0.0

    quarantine = conn.execute(
        f"SELECT reason_code, reason, raw, size_bytes FROM {QUARANTINE_VIEW} ORDER BY reason_code"
    ).fetchall()
    assert [q[0] for q in quarantine] == ["empty_object", "truncated_json", "wrong_type"]
    assert quarantine[1][2] == b'{"AwsAccountId": "1' and quarantine[1][3] == 19
    assert "BillableDurationSeconds" in quarantine[2][1]
    # Every object is accounted for in the ledger.
    outcomes = dict(
        conn.execute("SELECT outcome, count(*) FROM chime.ingested_objects GROUP BY 1").fetchall()
    )
    assert outcomes == {"written": 4, "quarantined": 3, "duplicate": 1}
    # Athena layout: Snappy Parquet in zero-padded Hive folders, named after the delivery day.
    files = [f for f in _lake_files(cdr_env) if not f.startswith("quarantine/")]
    assert all(f"cdrs_delivered-{DAY}_" in f for f in files)
    assert any(f.startswith("Amazon-Chime-Voice-Connector-CDRs/year=2026/month=03/day=13/") for f in files)


def test_reference_report_query_runs_on_the_view(local_env):
    store = local_env.storage()
    for i, vc in enumerate(["vc-a", "vc-a", "vc-b"]):
        rec = cdr(f"t{i}", at(DAY, f"10:0{i}:00"), duration=90, vc=vc)
        put_cdr(store, local_env.chime_cdr_bucket, rec, at(DAY, f"10:0{i}:30"))
    conn = _conn(local_env)
    _ingest(local_env, conn)
    refresh_views(conn, store, local_env.lake_bucket)
    # REFERENCE.md section 1, with {database}.{table} filled in and the month bound.
    query = (
        "SELECT voiceconnectorId, SUM(billabledurationseconds) as billabledurationseconds, "
        "SUM(billabledurationminutes) as billabledurationminutes, month, year FROM "
        "amazon_chime_sdk_voice_connector_cdrs.processed_cdrs WHERE (year = YEAR(DATE '2026-03-20') "
        "AND month = MONTH(DATE '2026-03-20') ) group by voiceconnectorid, month, year ORDER BY 1"
    )
    assert conn.execute(query).fetchall() == [("vc-a", 180, 3.0, 3, 2026), ("vc-b", 90, 1.5, 3, 2026)]


def test_duplicates_across_delivery_days_appear_once_whatever_the_order(local_env):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    call = cdr("t-x", at(DAY, "23:50:00"))
    put_cdr(store, bucket, call, at(DAY, "23:50:05"))
    put_cdr(store, bucket, call, at(DAY + timedelta(1), "02:00:00"))  # redelivered next day
    conn = _conn(local_env)
    later = _ingest(local_env, conn, day=DAY + timedelta(1))
    earlier = _ingest(local_env, conn, day=DAY)
    assert (later.rows_written, earlier.duplicates_dropped) == (1, 1)
    # Rebuilding either day keeps exactly one row.
    _ingest(local_env, conn, day=DAY + timedelta(1))
    _ingest(local_env, conn, day=DAY)
    assert [r[0] for r in _lake_rows(local_env, conn)] == ["t-x"]


def test_replace_is_idempotent_and_incremental_reads_only_new_objects(cdr_env):
    store, bucket = cdr_env.storage(), cdr_env.chime_cdr_bucket
    for i in range(5):
        put_cdr(store, bucket, cdr(f"t{i}", at(DAY, f"09:0{i}:00")), at(DAY, f"09:0{i}:10"))
    conn = _conn(cdr_env)
    first = _ingest(cdr_env, conn)
    rows, files = _lake_rows(cdr_env, conn), _lake_files(cdr_env)
    again = _ingest(cdr_env, conn)
    assert (first.rows_written, again.rows_written) == (5, 5)
    assert _lake_rows(cdr_env, conn) == rows and _lake_files(cdr_env) == files

    # Two more objects arrive; the incremental run reads those two only.
    last_key = sorted(o.key for o in store.list_objects(bucket))[-1]
    for i in (5, 6):
        put_cdr(store, bucket, cdr(f"t{i}", at(DAY, f"09:0{i}:00")), at(DAY, f"09:0{i}:10"))
    prefix = day_prefix(VC, DAY)
    inc = _ingest(cdr_env, conn, ranges=[KeyRange(prefix, last_key, None)])
    assert (inc.objects_in, inc.rows_written, inc.already_ingested) == (2, 2, 0)
    # Asking again for the whole prefix reads nothing: the ledger knows every key.
    inc2 = _ingest(cdr_env, conn, ranges=[KeyRange(prefix)])
    assert (inc2.objects_in, inc2.already_ingested, inc2.bytes_read) == (0, 7, 0)
    assert len(_lake_rows(cdr_env, conn)) == 7
    # A rebuild folds the incremental files into one file per end day, same rows.
    before = _lake_rows(cdr_env, conn)
    rebuilt = _ingest(cdr_env, conn)
    assert rebuilt.rows_written == 7 and _lake_rows(cdr_env, conn) == before
    (data,) = [f for f in _lake_files(cdr_env) if f.endswith(".parquet") and "/_numbers/" not in f]
    assert _lake_files(cdr_env) == sorted([data, index_key(data)])  # the old files' indexes went too


def test_rebuild_drops_rows_whose_objects_are_gone(local_env):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    keys = [
        put_cdr(store, bucket, cdr(f"t{i}", at(DAY, f"08:0{i}:00")), at(DAY, f"08:0{i}:01")) for i in range(3)
    ]
    conn = _conn(local_env)
    _ingest(local_env, conn)
    store.delete(bucket, keys[0])
    _ingest(local_env, conn)
    assert [r[0] for r in _lake_rows(local_env, conn)] == ["t1", "t2"]


def test_kill_half_way_then_rerun_repairs(local_env, tmp_path: Path):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    for i in range(4):
        end_day = DAY - timedelta(i % 2)  # two end-day folders, so the kill lands between files
        put_cdr(store, bucket, cdr(f"t{i}", at(end_day, f"23:5{i}:00")), at(DAY, f"00:1{i}:00"))
    put_cdr(store, bucket, b"not json", at(DAY, "01:00:00"), txn="bad")
    script = (
        "import duckdb, sys; from datetime import date;"
        "import os; from cdr_assets.storage import storage_from_env;"
        "from cdr_assets.chime.ingest import ingest_delivery_day;"
        "c = duckdb.connect(sys.argv[1]);"
        "ingest_delivery_day(storage_from_env(), c, cdr_bucket=os.environ['CHIME_CDR_BUCKET'],"
        " lake_bucket=os.environ['LAKE_BUCKET'],"
        f" delivery_day=date.fromisoformat('{DAY}'), workers=1)"
    )
    db = str(local_env.home / "warehouse.duckdb")
    killed = subprocess.run(
        [sys.executable, "-c", script, db], env={**os.environ, FAILPOINT_ENV: "after_first_lake_file"}
    )
    assert killed.returncode == 137
    # The file written before the kill is complete (atomic put), with its index; nothing
    # half-written is visible.
    lake_root = local_env.home / "buckets" / local_env.lake_bucket
    written = sorted(str(p.relative_to(lake_root)) for p in lake_root.rglob("*") if p.is_file())
    assert len(written) == 2 and written[0] == index_key(written[1])
    assert not list((local_env.home / "tmp").glob("*")) if (local_env.home / "tmp").exists() else True
    conn = duckdb.connect(db)
    states = conn.execute("SELECT state, count(*) FROM chime.lake_files GROUP BY 1").fetchall()
    assert states == [("pending", 5)]  # two CDR files, their indexes and the quarantine file
    assert conn.execute("SELECT count(*) FROM chime.ingested_objects").fetchone() == (0,)
    conn.close()

    subprocess.run([sys.executable, "-c", script, db], check=True)
    conn = _conn(local_env)
    assert [r[0] for r in _lake_rows(local_env, conn)] == ["t0", "t1", "t2", "t3"]
    assert conn.execute("SELECT DISTINCT state FROM chime.lake_files").fetchall() == [("committed",)]
    assert len(_lake_files(local_env)) == 5


def test_cleanup_of_stale_pending_files_from_a_dead_run(local_env):
    """A dead run whose batch differs from the rerun's must not leave its rows behind."""
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    put_cdr(store, bucket, cdr("t0", at(DAY, "08:00:00")), at(DAY, "08:00:01"))
    conn = _conn(local_env)
    _ingest(local_env, conn)
    stray = (
        "Amazon-Chime-Voice-Connector-CDRs/year=2026/month=03/day=14/cdrs_delivered-2026-03-14_dead.parquet"
    )
    store.put(local_env.lake_bucket, stray, b"PAR1-not-really")
    conn.execute(
        "INSERT INTO chime.lake_files VALUES (?, 'cdrs', ?, ?, 1, 'pending', 'dead-run', now())",
        [stray, DAY, DAY],
    )
    put_cdr(store, bucket, cdr("t1", at(DAY, "09:00:00")), at(DAY, "09:00:01"))
    report = _ingest(local_env, conn, ranges=[KeyRange(day_prefix(VC, DAY))])
    assert stray in report.files_removed
    assert store.head(local_env.lake_bucket, stray) is None
    assert [r[0] for r in _lake_rows(local_env, conn)] == ["t0", "t1"]


@pytest.mark.parametrize("size", [2 << 20])
def test_huge_object_is_quarantined_with_a_bounded_prefix(local_env, size):
    store = local_env.storage()
    put_cdr(store, local_env.chime_cdr_bucket, b"{" + b" " * (size - 2) + b"}", at(DAY), txn="huge")
    conn = _conn(local_env)
    report = _ingest(local_env, conn)
    assert report.quarantine_reasons == {"too_large": 1}
    refresh_views(conn, store, local_env.lake_bucket)
    raw_len, truncated, size_bytes = conn.execute(
        f"SELECT octet_length(raw), raw_truncated, size_bytes FROM {QUARANTINE_VIEW}"
    ).fetchone()
    assert raw_len == 64 << 10 and truncated and size_bytes == size


def test_empty_day_creates_queryable_empty_views(local_env):
    conn = _conn(local_env)
    report = _ingest(local_env, conn)
    assert report.objects_in == 0
    refresh_views(conn, local_env.storage(), local_env.lake_bucket)
    assert conn.execute(f"SELECT count(*) FROM {LAKE_VIEW}").fetchone() == (0,)
    assert conn.execute(f"SELECT count(*) FROM {QUARANTINE_VIEW}").fetchone() == (0,)


def test_parallel_workers_give_the_same_rows_as_one(local_env):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    from cdr_assets.chime import read

    for i in range(30):
        put_cdr(store, bucket, cdr(f"t{i:02d}", at(DAY, f"10:{i:02d}:00")), at(DAY, f"10:{i:02d}:05"))
    put_cdr(store, bucket, b"[]", at(DAY, "11:00:00"), txn="arr")
    objects = sorted(store.list_objects(bucket), key=lambda o: o.key)
    old = read.CHUNK
    read.CHUNK = 4  # many chunks, so the process pool is really used
    try:
        many = read.read_objects(store, bucket, objects, DAY, workers=2)
    finally:
        read.CHUNK = old
    one = read.read_objects(store, bucket, objects, DAY, workers=1)
    assert many.rows.equals(one.rows) and many.quarantine.equals(one.quarantine)
    assert many.rows.num_rows == 30 and many.quarantine.num_rows == 1


def test_duckdb_memory_limit_is_validated_and_applied(local_env):
    conn = _conn(local_env)
    with pytest.raises(ValueError, match="memory limit"):
        ingest_delivery_day(
            local_env.storage(),
            conn,
            cdr_bucket=local_env.chime_cdr_bucket,
            lake_bucket=local_env.lake_bucket,
            delivery_day=DAY,
            duckdb_memory_limit="300MB'; DROP TABLE x; --",
        )
    ingest_delivery_day(
        local_env.storage(),
        conn,
        cdr_bucket=local_env.chime_cdr_bucket,
        lake_bucket=local_env.lake_bucket,
        delivery_day=DAY,
        duckdb_memory_limit="256MB",
    )
    (limit,) = conn.execute("SELECT current_setting('memory_limit')").fetchone()
    assert limit.replace(" ", "").upper().startswith(("244.1MIB", "256.0MB", "256MB", "244MIB"))
