"""The Dagster shell of recording compression, end to end in both storage modes, and its schedule."""

from datetime import UTC, date, datetime

import duckdb
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    build_schedule_context,
    instance_for_test,
    materialize,
)

from cdr_assets.recordings.assets import COMPRESSION, SAVINGS, recordings_compression, recordings_savings
from cdr_assets.recordings.checks import recordings_checks
from cdr_assets.recordings.compress import days_due
from cdr_assets.recordings.generate import Contact, write_recordings
from cdr_assets.recordings.schedules import recordings_compression_schedule
from cdr_assets_tests.recordings import media

DAY = "2024-03-05"


def _materialize(env, partition_key: str = DAY, run_config=None, instance=None):
    return materialize(
        [recordings_compression, *recordings_checks],
        partition_key=partition_key,
        resources=env.resources(),
        run_config=run_config,
        instance=instance,
        raise_on_error=True,
    )


def _metadata(result, node: str) -> dict:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mat.metadata.items()}


def test_definitions_load():
    from cdr_assets.definitions import defs

    Definitions.validate_loadable(defs)
    assert {
        COMPRESSION,
        SAVINGS,
        AssetKey("connect_call_recordings"),
    } <= defs.resolve_asset_graph().get_all_asset_keys()
    assert defs.resolve_schedule_def("recordings_compression_schedule")


def test_compress_a_day_then_savings(cdr_env, monkeypatch):
    monkeypatch.setenv("RECORDINGS_STORAGE_CLASS", "GLACIER_IR")
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    contacts = [Contact(f"contact-{i}", datetime(2024, 3, 5, 9 + i, 15), 1.0 + i / 2) for i in range(3)]
    summary = write_recordings(store, bucket, "acme", contacts)
    store.put(bucket, media.key("broken"), media.truncated_wav())
    instance = DagsterInstance.ephemeral()
    first = _materialize(cdr_env, instance=instance)
    meta = _metadata(first, "recordings_compression")
    assert (meta["listed"], meta["converted"], meta["failed"], meta["held"]) == (4, 3, 1, 0)
    assert meta["preset"] == "adpcm-stereo" and meta["day_saved_percent"] > 70
    for c in contacts:
        head = store.head(bucket, media.key(c.contact_id, when=c.started))
        assert head.storage_class == "GLACIER_IR" and head.metadata["converted"] == "adpcm-stereo"
    broken = store.head(bucket, media.key("broken"))
    assert "converted" not in broken.metadata and broken.storage_class == "STANDARD"
    assert all(c.passed for c in first.get_asset_check_evaluations())

    monkeypatch.setenv("RECORDINGS_MAX_ATTEMPTS", "2")  # second failure: held, the check warns
    second = _metadata(_materialize(cdr_env, instance=instance), "recordings_compression")
    assert (second["converted"], second["already_converted"], second["failed"]) == (0, 3, 1)
    third = _materialize(cdr_env, instance=instance)
    assert _metadata(third, "recordings_compression")["held"] == 1
    held = {c.check_name: c.passed for c in third.get_asset_check_evaluations()}
    assert held == {"recordings_none_held": False, "recordings_converted_consistent": True}
    reset = _materialize(cdr_env, instance=instance, run_config={
        "ops": {"recordings_compression": {"config": {"reset_keys": [media.key("broken")]}}}
    })  # fmt: skip
    assert _metadata(reset, "recordings_compression")["failed"] == 1

    savings = materialize([recordings_savings], resources=cdr_env.resources(), instance=instance)
    s = _metadata(savings, "recordings_savings")
    assert s["recordings"] == 3 and s["bytes_before"] == summary.bytes_written
    assert s["monthly_cost_after_usd"] < s["monthly_cost_before_usd"] / 10  # 4x smaller, GLACIER_IR
    assert "data:image/png;base64," in s["chart"]
    conn = duckdb.connect(str(cdr_env.home / "warehouse.duckdb"), read_only=True)
    try:
        assert conn.execute("SELECT count(*) FROM recordings.dead_letters").fetchone()[0] == 3
    finally:
        conn.close()


def test_days_due_bounded_catch_up():
    first = date(2024, 1, 1)
    today = date(2024, 3, 20)
    assert days_due(today, 7, 3, {"2024-03-12", "2024-03-11", "2024-03-10", "2024-03-09"}, first) == [
        "2024-03-13"
    ]
    assert days_due(today, 7, 3, {"2024-03-10"}, first) == ["2024-03-13", "2024-03-12", "2024-03-11"]
    assert days_due(date(2024, 1, 9), 7, 30, set(), first) == ["2024-01-02", "2024-01-01"]


def test_schedule_requests_target_and_missing_days(local_env, monkeypatch):
    monkeypatch.setenv("RECORDINGS_MIN_AGE_DAYS", "7")
    monkeypatch.setenv("RECORDINGS_CATCHUP_DAYS", "2")
    with instance_for_test() as instance:  # a schedule context needs a persistent instance
        _materialize(local_env, partition_key="2024-03-11", instance=instance)
        when = datetime(2024, 3, 20, 2, 0, tzinfo=UTC)
        with build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
            requests = recordings_compression_schedule(context)
    assert [r.partition_key for r in requests] == ["2024-03-13", "2024-03-12"]
    assert requests[0].run_key == "recordings:2024-03-13:2024-03-20"
