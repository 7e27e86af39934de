"""The sensor's discovery core: cost per tick, late arrivals, run keys, cursor."""

from datetime import date, timedelta

import pytest

from cdr_assets.chime.discovery import Cursor, discover
from cdr_assets.chime.keys import day_prefix
from cdr_assets_tests.chime.factory import VC, at, cdr, put_cdr

TODAY = date(2026, 5, 20)


class CountingStorage:
    """Wraps a storage and counts listing calls and listed keys (the cost of a tick)."""

    def __init__(self, inner):
        self.inner, self.list_calls, self.keys_listed = inner, 0, 0
        self.mode = inner.mode

    def list_objects(self, bucket, prefix="", *, start_after=None):
        self.list_calls += 1
        for obj in self.inner.list_objects(bucket, prefix, start_after=start_after):
            self.keys_listed += 1
            yield obj

    def list_prefixes(self, bucket, prefix="", delimiter="/"):
        self.list_calls += 1
        return self.inner.list_prefixes(bucket, prefix, delimiter)


def _tick(store, bucket, cursor, **kw):
    kw.setdefault("lookback_days", 2)
    return discover(store, bucket, cursor, today=TODAY, **kw)


def test_first_tick_takes_the_window_and_the_next_only_what_is_new(cdr_env):
    store, bucket = cdr_env.storage(), cdr_env.chime_cdr_bucket
    for d in range(5):  # days TODAY-4 .. TODAY; the window is TODAY-2 .. TODAY
        day = TODAY - timedelta(d)
        for i in range(3):
            put_cdr(store, bucket, cdr(f"t{d}{i}", at(day, f"10:0{i}:00")), at(day, f"10:0{i}:05"))
    requests, cursor, stats = _tick(store, bucket, Cursor())
    assert [r.day for r in requests] == [TODAY - timedelta(2), TODAY - timedelta(1), TODAY]
    assert all(r.new_objects == 3 for r in requests)
    assert stats.new_objects == 9

    # Nothing new: no request, and the cursor round-trips through JSON.
    requests, cursor, stats = _tick(store, bucket, Cursor.from_json(cursor.to_json()))
    assert requests == [] and stats.new_objects == 0

    # One new object: exactly one range, starting after the last key seen.
    k = put_cdr(store, bucket, cdr("t-new", at(TODAY, "11:00:00")), at(TODAY, "11:00:03"))
    requests, cursor, _ = _tick(store, bucket, cursor)
    assert len(requests) == 1 and requests[0].day == TODAY
    (rng,) = requests[0].ranges
    assert rng.prefix == day_prefix(VC, TODAY) and rng.end_at == k and rng.start_after < k


def test_tick_cost_grows_with_new_objects_not_with_the_bucket(local_env):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    for i in range(600):
        put_cdr(
            store, bucket, cdr(f"t{i}", at(TODAY, "09:00:00")), at(TODAY, f"09:{i // 60:02d}:{i % 60:02d}")
        )
    _, cursor, _ = _tick(store, bucket, Cursor(), sweep_budget=50)
    counting = CountingStorage(store)
    _, cursor, stats = _tick(counting, bucket, cursor, sweep_budget=50)
    # One delimiter listing + one listing per prefix in the window (+ the bounded sweep);
    # keys returned: none new, at most the sweep budget re-listed.
    assert stats.new_objects == 0
    assert counting.keys_listed <= 50 + 1
    assert counting.list_calls == 1 + 3 + 1


def test_late_object_behind_the_cursor_in_an_older_prefix_is_found(cdr_env):
    store, bucket = cdr_env.storage(), cdr_env.chime_cdr_bucket
    yesterday = TODAY - timedelta(1)
    for i in range(5):
        put_cdr(store, bucket, cdr(f"y{i}", at(yesterday, f"20:0{i}:00")), at(yesterday, f"20:0{i}:05"))
    put_cdr(store, bucket, cdr("t0", at(TODAY, "08:00:00")), at(TODAY, "08:00:05"))
    _, cursor, _ = _tick(store, bucket, Cursor())
    # An object shows up in yesterday's prefix with a name that sorts before the cursor.
    late_key = put_cdr(store, bucket, cdr("late", at(yesterday, "06:00:00")), at(yesterday, "06:00:01"))
    found = []
    for _ in range(8):  # the sweep visits each prefix of the window in turn
        requests, cursor, _ = _tick(store, bucket, cursor, sweep_budget=2)
        found += [r for r in requests if r.late_digest is not None]
        if found:
            break
    assert len(found) == 1
    (late,) = found
    assert late.day == yesterday and late.ranges[0].start_after is None
    assert late.ranges[0].end_at >= late_key  # the range covers the late key
    # Once handled, the same prefix is not requested again.
    for _ in range(6):
        requests, cursor, _ = _tick(store, bucket, cursor, sweep_budget=2)
        assert requests == []
    # A second late arrival into the same prefix gets a different run key.
    put_cdr(store, bucket, cdr("late2", at(yesterday, "05:00:00")), at(yesterday, "05:00:01"))
    again = []
    for _ in range(10):
        requests, cursor, _ = _tick(store, bucket, cursor, sweep_budget=2)
        again += requests
        if again:
            break
    assert len(again) == 1 and again[0].run_key != late.run_key


def test_prefixes_leaving_the_window_leave_the_cursor(local_env):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    old = TODAY - timedelta(2)
    put_cdr(store, bucket, cdr("o", at(old, "10:00:00")), at(old, "10:00:01"))
    _, cursor, _ = _tick(store, bucket, Cursor())
    assert day_prefix(VC, old) in cursor.prefixes
    _, cursor, _ = discover(store, bucket, cursor, today=TODAY + timedelta(1), lookback_days=2)
    assert day_prefix(VC, old) not in cursor.prefixes


def test_run_keys_are_stable_for_the_same_work_and_differ_otherwise(local_env):
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    put_cdr(store, bucket, cdr("a", at(TODAY, "10:00:00")), at(TODAY, "10:00:01"))
    first, _, _ = _tick(store, bucket, Cursor())
    same, _, _ = _tick(store, bucket, Cursor())
    assert [r.run_key for r in first] == [r.run_key for r in same]
    put_cdr(store, bucket, cdr("b", at(TODAY, "10:00:00")), at(TODAY, "10:00:02"))
    other, _, _ = _tick(store, bucket, Cursor())
    assert other[0].run_key != first[0].run_key


def test_unknown_cursor_version_is_a_clear_error():
    with pytest.raises(ValueError, match="cursor version"):
        Cursor.from_json('{"v": 99}')
