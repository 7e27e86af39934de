"""Search over a real lake (both storage modes) and the ``cdr-assets search`` command."""

import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from cdr_assets import cli
from cdr_assets.chime.schema import LAKE_PREFIX
from cdr_assets.chime.search import (
    SearchError,
    SearchFilters,
    build_query,
    normalize_number,
    parse_time,
    search_cdrs,
)
from cdr_assets_tests.chime.lake import ALICE, CAROL, DAY, VC2, build_lake, lake_connection


def _ids(env, **filters) -> list[str]:
    conn = lake_connection(env)
    try:
        store = env.storage()
        table = search_cdrs(
            conn, store.uri(env.lake_bucket), SearchFilters(**filters), store.arrow_filesystem()[0]
        )
    finally:
        conn.close()
    return table["transactionid"].to_pylist()


def _t(text: str) -> datetime:
    return parse_time(text)


@pytest.mark.parametrize(
    "text",
    ["+12065550100", "12065550100", "+1 206 555 0100", "1-206-555-0100", "(1) 206.555.0100", "0012065550100"],
)
def test_numbers_are_normalised_to_e164(text):
    assert normalize_number(text) == ALICE


@pytest.mark.parametrize("text", ["", "abc", "+0123", "+1234567890123456", "12;DROP"])
def test_bad_numbers_are_clear_errors(text):
    with pytest.raises(SearchError, match="phone number"):
        normalize_number(text)


def test_times_are_utc_and_a_date_until_means_the_whole_day():
    assert parse_time("2026-02-10") == datetime(2026, 2, 10, tzinfo=UTC)
    assert parse_time("2026-02-10", end_of_day=True) == datetime(2026, 2, 10, 23, 59, 59, tzinfo=UTC)
    assert parse_time("2026-02-10T12:00") == datetime(2026, 2, 10, 12, tzinfo=UTC)
    assert parse_time("2026-02-10T12:00+02:00") == datetime(2026, 2, 10, 10, tzinfo=UTC)
    with pytest.raises(SearchError, match="ISO"):
        parse_time("last week")


def test_no_filter_and_bad_values_are_errors():
    with pytest.raises(SearchError, match="at least one filter"):
        SearchFilters().normalized()
    with pytest.raises(SearchError, match="direction"):
        SearchFilters(direction="sideways").normalized()
    with pytest.raises(SearchError, match="since is after until"):
        SearchFilters(since=_t("2026-02-10"), until=_t("2026-02-01")).normalized()
    with pytest.raises(SearchError, match="limit"):
        SearchFilters(status="Completed", limit=0).normalized()
    with pytest.raises(SearchError, match="negative"):
        SearchFilters(min_duration=-1).normalized()


def test_values_are_bound_never_pasted():
    hostile = "x' OR '1'='1"
    sql, params = build_query(SearchFilters(status=hostile, voice_connector=hostile).normalized(), "/lake")
    assert hostile not in sql and "'1'" not in sql
    assert params.count(hostile) == 2


def test_search_filters(cdr_env):
    build_lake(cdr_env)
    # The same number however it is written; newest first by default, oldest on request.
    for written in ("+1 206 555 0100", "1-206-555-0100", "12065550100"):
        assert _ids(cdr_env, source=written) == ["a2", "a1"]
    assert _ids(cdr_env, source=ALICE, order="oldest") == ["a1", "a2"]
    assert _ids(cdr_env, destination=ALICE) == ["a3"]
    assert _ids(cdr_env, number=ALICE) == ["a2", "a1", "a3"]
    assert _ids(cdr_env, number=ALICE, limit=1) == ["a2"]
    # "Which calls did +1 206 555 0100 make in the last week longer than 5 minutes?"
    week = dict(since=_t(str(DAY - timedelta(6))), until=parse_time(str(DAY), end_of_day=True))
    assert _ids(cdr_env, source="+1 206 555 0100", min_duration=301, **week) == ["a1"]
    assert _ids(cdr_env, number=ALICE, min_duration=300, max_duration=600) == ["a1", "a3"]
    assert _ids(cdr_env, status="failed") == ["a4"]
    assert _ids(cdr_env, direction="inbound") == ["a3"]
    assert _ids(cdr_env, voice_connector=VC2) == ["a4"]
    # a5 started before midnight and ended after: not "since DAY", not "until the day before".
    assert "a5" not in _ids(cdr_env, since=_t(str(DAY)))
    assert "a5" not in _ids(cdr_env, until=parse_time(str(DAY - timedelta(1)), end_of_day=True))
    assert "a5" in _ids(cdr_env, since=_t(f"{DAY - timedelta(1)}T23:00"), until=_t(f"{DAY}T00:05"))
    assert _ids(cdr_env, source=CAROL, since=_t(str(DAY - timedelta(1)))) == ["a5", "a3"]
    # No match is an empty result, not an error; values are bound, not pasted.
    assert _ids(cdr_env, source="+447700900000") == []
    assert _ids(cdr_env, status="x' OR '1'='1") == []


def test_time_bounded_search_reads_only_its_days(local_env):
    """A garbage file in a day outside the window would fail any query that opened it."""
    build_lake(local_env)
    store = local_env.storage()
    old = DAY - timedelta(3)
    junk = f"{LAKE_PREFIX}year={old:%Y}/month={old:%m}/day={old:%d}/x.parquet"
    store.put(local_env.lake_bucket, junk, b"junk")
    assert _ids(local_env, since=_t(str(DAY - timedelta(1)))) == ["a2", "a1", "a5", "a3"]
    assert _ids(local_env, until=_t(f"{DAY - timedelta(4)}T23:59:59")) == []
    with pytest.raises(Exception, match=r"x\.parquet"):
        _ids(local_env, source=ALICE)  # no time bound: every day is read


def test_lake_files_are_sorted_with_bloom_filters(local_env):
    build_lake(local_env)
    store = local_env.storage()
    keys = store.list_objects(local_env.lake_bucket, LAKE_PREFIX)
    key = next(o.key for o in keys if "day=10" in o.key and "/_numbers/" not in o.key)
    path = store.uri(local_env.lake_bucket, key)
    sources = pq.read_table(path, columns=["sourcephonenumber"])["sourcephonenumber"].to_pylist()
    assert sources == sorted(sources)
    conn = lake_connection(local_env)
    rows = conn.execute(
        "SELECT path_in_schema, bloom_filter_offset FROM parquet_metadata(?)", [path]
    ).fetchall()
    conn.close()
    blooms = {name for name, offset in rows if offset is not None}
    assert {"sourcephonenumber", "destinationphonenumber"} <= blooms


def test_empty_lake_gives_an_empty_result(cdr_env):
    assert _ids(cdr_env, source=ALICE) == []


def test_cli_search(local_env, capsys):
    build_lake(local_env)
    assert cli.main(["search", "--source", "+1 206 555 0100", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["transactionid"] for r in rows] == ["a2", "a1"]
    assert rows[0]["sourcephonenumber"] == ALICE and rows[0]["billabledurationseconds"] == 200
    assert cli.main(["search", "--number", ALICE, "--min-duration", "500", "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('"transactionid"') and len(out) == 2 and '"a3"' in out[1]
    assert cli.main(["search", "--direction", "Inbound"]) == 0
    table = capsys.readouterr()
    assert "a3" in table.out and "(1 call)" in table.err
    # No match: empty, exit 0.
    assert cli.main(["search", "--source", "+447700900000", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_search_errors_exit_2(local_env, capsys):
    assert cli.main(["search"]) == 2
    assert "at least one filter" in capsys.readouterr().err
    assert cli.main(["search", "--source", "not-a-number"]) == 2
    assert "phone number" in capsys.readouterr().err
    for argv in (["search", "--no-such-filter", "x"], ["search", "--format", "xml", "--status", "Failed"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
