"""Staging writes each initiation day as staged files of at most ``STAGED_FILE_ROWS`` rows."""

from datetime import date, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdr_assets.connect import schema
from cdr_assets.connect.ctr_reader import in_staged_order
from cdr_assets.connect.generate import generate_ctrs
from cdr_assets.connect.load import load_partition
from cdr_assets.connect.staging import stage_delivery_day
from cdr_assets.storage import LocalStorage
from cdr_assets_tests.connect.factory import firehose_key

DAY = date(2026, 3, 1)


@pytest.mark.parametrize("rows", [1, 40, 41, 99, 120, 121, 1000])
def test_file_parts_are_equal_and_cover_every_row(monkeypatch, rows):
    monkeypatch.setattr(schema, "STAGED_FILE_ROWS", 40)
    parts = schema.file_parts(rows)
    assert len(parts) == -(-rows // 40)
    assert [offset for offset, _ in parts] == [sum(n for _, n in parts[:i]) for i in range(len(parts))]
    assert sum(n for _, n in parts) == rows
    assert max(n for _, n in parts) <= 40 and max(n for _, n in parts) - min(n for _, n in parts) <= 1


def test_a_big_initiation_day_is_split_into_parts_that_load_like_one_file(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "STAGED_FILE_ROWS", 40)
    store = LocalStorage(tmp_path / "store")
    store.ensure_bucket("c")
    generate_ctrs(store, "c", contacts=300, days=1, start=DAY, seed=5, records_per_file=50)
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = stage_delivery_day(
        store, conn, connect_bucket="c", lake_bucket="lake", ctr_prefix="ctr/", delivery_day=DAY, workers=2
    )
    staged = [k for k in report.files_written if k.startswith(schema.STAGING_PREFIX)]
    by_day: dict[str, list[tuple[int, str]]] = {}
    for key in staged:
        folder, name = key.rsplit("/", 1)
        by_day.setdefault(folder, []).append((int(name.rsplit("-", 1)[1].removesuffix(".parquet")), key))
    big = max(by_day.values(), key=len)
    assert len(big) > 2, "the delivery day's own initiation day needs several parts"
    tables = [pq.read_table(store.uri("lake", key)) for _, key in sorted(big)]
    assert all(0 < t.num_rows <= 40 for t in tables)
    # Parts in order are the day's rows in staged order, cut; nothing lost or repeated.
    whole = pa.concat_tables(tables)
    assert whole.equals(in_staged_order(whole))
    assert sum(report.rows_per_initiation_day.values()) == report.rows_staged
    assert sum(pq.read_metadata(store.uri("lake", k)).num_rows for k in staged) == report.rows_staged
    # Values that repeat are dictionary-encoded; a column with a value per contact is not.
    group = pq.read_metadata(store.uri("lake", big[0][1])).row_group(0)
    columns = [group.column(i) for i in range(group.num_columns)]
    encodings = {c.path_in_schema: c.has_dictionary_page for c in columns}
    assert encodings["agent_arn"] and encodings["channel"] and encodings["source_key"]
    assert not (encodings["contact_id"] or encodings["initiation_timestamp"] or encodings["record_hash"])

    loaded = load_partition(conn, store, "lake", DAY)
    assert loaded.files == len(staged) and loaded.rows_in == report.rows_staged
    (facts, contacts) = conn.execute(
        "SELECT count(*), count(DISTINCT contact_id) FROM connect.fact_contact"
    ).fetchone()  # type: ignore[misc]
    staged_ids = {c for k in staged for c in pq.read_table(store.uri("lake", k))["contact_id"].to_pylist()}
    assert facts == contacts == len(staged_ids)


def test_a_day_without_a_valid_record_stages_nothing_and_balances(tmp_path):
    # Replace mode (UI, backfill) on a day with no files, then on a day whose only record is bad.
    store = LocalStorage(tmp_path / "store")
    store.ensure_bucket("c")
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    empty = stage_delivery_day(
        store, conn, connect_bucket="c", lake_bucket="lake", ctr_prefix="ctr/", delivery_day=DAY, workers=1
    )
    assert (empty.records_in, empty.rows_staged, empty.files_written) == (0, 0, [])
    store.put("c", firehose_key(datetime(2026, 3, 1, 9)), b'{"ContactId": 5}')
    bad = stage_delivery_day(
        store, conn, connect_bucket="c", lake_bucket="lake", ctr_prefix="ctr/", delivery_day=DAY, workers=1
    )
    assert (bad.records_in, bad.rows_staged, bad.quarantined) == (1, 0, 1)
    assert [k for k in bad.files_written if k.startswith(schema.STAGING_PREFIX)] == []
    assert load_partition(conn, store, "lake", DAY).inserted == 0
