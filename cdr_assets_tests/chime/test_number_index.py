"""The number index of each lake file: written and committed with its lake file, removed with it,
invisible to the lake's readers, and searches through it find exactly what a full scan finds."""

import os
import random
import subprocess
import sys
from datetime import date, timedelta

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cdr_assets.chime import lake_layout, number_index
from cdr_assets.chime.ingest import FAILPOINT_ENV, refresh_views
from cdr_assets.chime.ledger import LAKE_VIEW
from cdr_assets.chime.number_index import INDEX_FOLDER, index_key, list_lake_files, row_groups_with, rows_with
from cdr_assets.chime.schema import LAKE_PREFIX
from cdr_assets.chime.search import SearchFilters, lake_glob, search_cdrs
from cdr_assets.chime.stats import call_stats
from cdr_assets.warehouse import configure_lake_access
from cdr_assets_tests.chime.factory import at, cdr, put_cdr
from cdr_assets_tests.chime.lake import ingest_day, warehouse_connection

DAY = date(2026, 4, 20)
NUMBERS = [f"+1206555{i:04d}" for i in range(10)]
ABSENT = "+447700900000"
CALLS = 150


@pytest.fixture
def small_row_groups(monkeypatch):
    """Row groups of 16 rows, so a few calls spread over many row groups the index must find."""
    monkeypatch.setattr(lake_layout, "LAKE_ROW_GROUP_ROWS", 16)


def _put_calls(env, first: int = 0, count: int = CALLS) -> None:
    rng = random.Random(first)
    store = env.storage()
    for i in range(first, first + count):
        # Three end-day folders; a small pool of numbers, so each is on both sides of many calls
        # and now and then on both sides of one call.
        end = at(DAY - timedelta(i % 3), f"{i % 23:02d}:{i % 60:02d}:{i * 7 % 60:02d}")
        src, dst = rng.choice(NUMBERS), rng.choice(NUMBERS)
        record = cdr(
            f"c{i:04d}", end, duration=20 + i % 90, SourcePhoneNumber=src, DestinationPhoneNumber=dst
        )
        put_cdr(store, env.chime_cdr_bucket, record, at(DAY, "23:59:59"))


def _lake_keys(env) -> list[str]:
    return sorted(o.key for o in env.storage().list_objects(env.lake_bucket, LAKE_PREFIX))


def _data_keys(env) -> list[str]:
    return [k for k in _lake_keys(env) if f"/{INDEX_FOLDER}/" not in k]


class _Lake:
    """Searches and full scans of one test lake, on one connection."""

    def __init__(self, env):
        store = env.storage()
        self.uri, self.fs = store.uri(env.lake_bucket), store.arrow_filesystem()[0]
        self.conn = duckdb.connect()
        configure_lake_access(self.conn, store)

    def search(self, **filters) -> list[str]:
        table = search_cdrs(self.conn, self.uri, SearchFilters(**filters), self.fs)
        return table["transactionid"].to_pylist()

    def scan(self, where: str, params: list, *, limit: int = 1000, order: str = "newest") -> list[str]:
        """Every row of every lake file, filtered with no index, statistics or Bloom filter."""
        direction = "DESC" if order == "newest" else "ASC"
        rows = self.conn.execute(
            f"SELECT transactionid FROM read_parquet(?, hive_partitioning = true) WHERE {where} "
            f"ORDER BY starttimeepochseconds {direction}, transactionid LIMIT ?",
            [lake_glob(self.uri), *params, limit],
        ).fetchall()
        return [r[0] for r in rows]


def _assert_searches_match_a_full_scan(env, numbers=(*NUMBERS[:6], ABSENT)) -> int:
    lake = _Lake(env)
    either = "(sourcephonenumber = ? OR destinationphonenumber = ?)"
    found = 0
    try:
        for n in numbers:
            for limit, order in ((1, "newest"), (7, "newest"), (7, "oldest"), (1000, "newest")):
                got = lake.search(number=n, limit=limit, order=order)
                assert got == lake.scan(either, [n, n], limit=limit, order=order), (n, limit, order)
                found += len(got)
            assert lake.search(source=n, limit=1000) == lake.scan("sourcephonenumber = ?", [n])
            assert lake.search(destination=n, limit=1000) == lake.scan("destinationphonenumber = ?", [n])
            assert lake.search(number=n, min_duration=60, limit=1000) == lake.scan(
                f"{either} AND billabledurationseconds >= 60", [n, n]
            )
            m = NUMBERS[0]
            assert lake.search(source=n, destination=m, limit=1000) == lake.scan(
                "sourcephonenumber = ? AND destinationphonenumber = ?", [n, m]
            )
    finally:
        lake.conn.close()
    return found


def test_each_lake_file_has_its_index_committed_with_it(cdr_env, small_row_groups):
    _put_calls(cdr_env)
    conn = warehouse_connection(cdr_env)
    ingest_day(cdr_env, conn, DAY)
    data = _data_keys(cdr_env)
    assert len(data) == 3 and _lake_keys(cdr_env) == sorted(data + [index_key(k) for k in data])
    ledger = conn.execute(
        "SELECT path, kind, state, row_count FROM chime.lake_files ORDER BY path"
    ).fetchall()
    rows = {p: n for p, kind, _, n in ledger if kind == "cdrs"}
    assert {(p, k, s) for p, k, s, _ in ledger if k != "quarantine"} == {
        *((k, "cdrs", "committed") for k in data),
        *((index_key(k), "cdrs_index", "committed") for k in data),
    }
    assert {p: n for p, kind, _, n in ledger if kind == "cdrs_index"} == {
        index_key(p): n for p, n in rows.items()
    }

    # The index lists exactly the (number, row group) pairs of both number columns, sorted.
    fs, path_of = cdr_env.storage().arrow_filesystem()
    for key in data:
        lake = pq.ParquetFile(path_of(cdr_env.lake_bucket, key), filesystem=fs)
        assert lake.metadata.num_row_groups > 1
        expected = set()
        for g in range(lake.metadata.num_row_groups):
            part = lake.read_row_group(g, columns=list(lake_layout.NUMBER_COLUMNS))
            expected |= {(n, g) for c in part.columns for n in c.to_pylist()}
        index = pq.read_table(path_of(cdr_env.lake_bucket, index_key(key)), filesystem=fs)
        pairs = list(zip(index["number"].to_pylist(), index["row_group"].to_pylist(), strict=True))
        assert pairs == sorted(expected)
    # And a search uses it: every file's index answers for a number the file holds.
    root = cdr_env.storage().uri(cdr_env.lake_bucket).removeprefix("s3://")
    for lake_file in list_lake_files(fs, root, None, None):
        assert lake_file.index is not None and row_groups_with(fs, lake_file, NUMBERS[0])

    # No reader of the lake's glob takes an index for CDRs.
    refresh_views(conn, cdr_env.storage(), cdr_env.lake_bucket)
    assert conn.execute(f"SELECT count(*) FROM {LAKE_VIEW}").fetchone() == (CALLS,)
    stats = call_stats(conn, cdr_env.storage().uri(cdr_env.lake_bucket), DAY - timedelta(2), DAY)
    assert pc.sum(stats["calls"]).as_py() == CALLS
    conn.close()


@pytest.mark.parametrize(
    "busy_share", [1, number_index.BUSY_SHARE], ids=["index-always", "busy-numbers-scanned"]
)
def test_searches_through_the_index_equal_a_full_scan(cdr_env, small_row_groups, monkeypatch, busy_share):
    monkeypatch.setattr(number_index, "BUSY_SHARE", busy_share)
    _put_calls(cdr_env)
    conn = warehouse_connection(cdr_env)
    ingest_day(cdr_env, conn, DAY)
    conn.close()
    # Which path each file takes: the index for every file, or a scan where a number is busy.
    store = cdr_env.storage()
    fs = store.arrow_filesystem()[0]
    files = list_lake_files(fs, store.uri(cdr_env.lake_bucket).removeprefix("s3://"), None, None)
    columns = ["transactionid", *lake_layout.NUMBER_COLUMNS]
    paths = {rows_with(fs, f, NUMBERS[0], columns) is None for f in files}
    # Each number is in most row groups: by default at least one file is scanned for it.
    assert paths == {False} if busy_share == 1 else True in paths
    assert _assert_searches_match_a_full_scan(cdr_env) > 0
    # A number on both sides of one call is found once.
    lake = _Lake(cdr_env)
    both = lake.scan("sourcephonenumber = destinationphonenumber", [])
    assert both
    for txn in both[:3]:
        (n,) = lake.conn.execute(
            "SELECT sourcephonenumber FROM read_parquet(?) WHERE transactionid = ?",
            [lake_glob(lake.uri), txn],
        ).fetchone()
        assert lake.search(number=n, limit=1000).count(txn) == 1
    # Time-bounded: only the day folders that can hold a match, through their indexes.
    n, since = NUMBERS[3], at(DAY - timedelta(1), "00:00:00")
    assert lake.search(number=n, since=since, limit=1000) == lake.scan(
        "(sourcephonenumber = ? OR destinationphonenumber = ?) AND starttimeepochseconds >= ?",
        [n, n, int(since.timestamp())],
    )
    lake.conn.close()


def test_index_goes_with_its_lake_file_on_rebuild(local_env, small_row_groups):
    _put_calls(local_env)
    conn = warehouse_connection(local_env)
    ingest_day(local_env, conn, DAY)
    before = _lake_keys(local_env)
    # One more object: the rebuild reads another set of keys, so new file names (new batch id).
    _put_calls(local_env, first=CALLS, count=1)
    ingest_day(local_env, conn, DAY)
    after = _lake_keys(local_env)
    assert not set(before) & set(after)
    assert after == sorted(_data_keys(local_env) + [index_key(k) for k in _data_keys(local_env)])
    assert conn.execute("SELECT DISTINCT state FROM chime.lake_files").fetchall() == [("committed",)]
    assert (
        sorted(
            p
            for (p,) in conn.execute(
                "SELECT path FROM chime.lake_files WHERE kind <> 'quarantine'"
            ).fetchall()
        )
        == after
    )
    conn.close()
    _assert_searches_match_a_full_scan(local_env, numbers=NUMBERS[:3])


def test_lake_files_without_a_usable_index_are_still_searched(cdr_env, small_row_groups):
    _put_calls(cdr_env)
    conn = warehouse_connection(cdr_env)
    ingest_day(cdr_env, conn, DAY)
    conn.close()
    store = cdr_env.storage()
    first, second, third = _data_keys(cdr_env)
    # Written before indexes existed: no index at all.
    store.delete(cdr_env.lake_bucket, index_key(first))
    # Rewritten since its index was built (fewer rows): the index no longer describes it.
    fs, path_of = store.arrow_filesystem()
    table = pq.read_table(path_of(cdr_env.lake_bucket, second), filesystem=fs)
    store.put(cdr_env.lake_bucket, second, lake_layout.lake_file_bytes(table.slice(5)))
    root = store.uri(cdr_env.lake_bucket).removeprefix("s3://")
    files = list_lake_files(fs, root, None, None)  # in key order, like the keys
    assert [f.info.path.endswith(k) for f, k in zip(files, (first, second, third), strict=True)] == [True] * 3
    assert [row_groups_with(fs, f, NUMBERS[0]) is None for f in files] == [True, True, False]
    _assert_searches_match_a_full_scan(cdr_env, numbers=NUMBERS[:4])


def test_kill_between_a_lake_file_and_its_index(local_env, small_row_groups):
    """The lake file is visible before its index exists: a search must scan it, not miss it."""
    _put_calls(local_env)
    script = (
        "import duckdb, os, sys; from datetime import date;"
        "from cdr_assets.storage import storage_from_env;"
        "from cdr_assets.chime import lake_layout; lake_layout.LAKE_ROW_GROUP_ROWS = 16;"
        "from cdr_assets.chime.ingest import ingest_delivery_day;"
        "ingest_delivery_day(storage_from_env(), duckdb.connect(sys.argv[1]),"
        " cdr_bucket=os.environ['CHIME_CDR_BUCKET'], lake_bucket=os.environ['LAKE_BUCKET'],"
        f" delivery_day=date.fromisoformat('{DAY}'), workers=1)"
    )
    local_env.home.mkdir(parents=True, exist_ok=True)
    db = str(local_env.home / "warehouse.duckdb")
    env = {**os.environ, FAILPOINT_ENV: "before_first_index"}
    assert subprocess.run([sys.executable, "-c", script, db], env=env).returncode == 137
    assert len(_lake_keys(local_env)) == 1 and _data_keys(local_env) == _lake_keys(local_env)
    conn = duckdb.connect(db)
    assert conn.execute("SELECT DISTINCT state FROM chime.lake_files").fetchall() == [("pending",)]
    conn.close()
    _assert_searches_match_a_full_scan(local_env, numbers=NUMBERS[:4])

    subprocess.run([sys.executable, "-c", script, db], check=True)
    data = _data_keys(local_env)
    assert len(data) == 3 and _lake_keys(local_env) == sorted(data + [index_key(k) for k in data])
    conn = duckdb.connect(db)
    assert conn.execute("SELECT DISTINCT state FROM chime.lake_files").fetchall() == [("committed",)]
    conn.close()
    _assert_searches_match_a_full_scan(local_env, numbers=NUMBERS[:4])
