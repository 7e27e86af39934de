"""The Dagster shell: definitions, the multi-asset, its checks and the sensor, end to end."""

from datetime import UTC, date, datetime, timedelta

import duckdb
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    Definitions,
    build_sensor_context,
    materialize,
)

from cdr_assets.chime.assets import PROCESSED_CDRS, QUARANTINED_CDRS, chime_cdr_lake
from cdr_assets.chime.checks import chime_checks
from cdr_assets.chime.generate import generate_cdrs
from cdr_assets.chime.ledger import LAKE_VIEW, QUARANTINE_VIEW
from cdr_assets.chime.sensors import chime_cdr_sensor
from cdr_assets.warehouse import configure_lake_access
from cdr_assets_tests.chime.factory import at, cdr, put_cdr


def _materialize(env, partition_key: str, run_config=None, instance=None):
    return materialize(
        [chime_cdr_lake, *chime_checks],
        partition_key=partition_key,
        resources=env.resources(),
        run_config=run_config,
        instance=instance,
        raise_on_error=True,
    )


def _metadata(result, key: AssetKey) -> dict:
    (mat,) = [m for m in result.asset_materializations_for_node("chime_cdr_lake") if m.asset_key == key]
    return {k: v.value for k, v in mat.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _query(env, sql: str):
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"), read_only=True)
    try:
        configure_lake_access(conn, env.storage())
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_definitions_load():
    from cdr_assets.definitions import defs

    Definitions.validate_loadable(defs)
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {PROCESSED_CDRS, QUARANTINED_CDRS, AssetKey("raw_chime_cdrs")} <= keys
    assert defs.resolve_sensor_def("chime_cdr_sensor")
    check_keys = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "cdr_schema_matches",
        "cdr_transaction_ids_unique",
        "cdr_values_in_range",
        "cdr_quarantine_rate",
    } <= (check_keys)


def test_partition_materializes_with_metadata_and_passing_checks(local_env):
    day = date(2026, 2, 10)
    store, bucket = local_env.storage(), local_env.chime_cdr_bucket
    for i in range(4):
        put_cdr(store, bucket, cdr(f"t{i}", at(day, f"10:0{i}:00"), duration=120), at(day, f"10:0{i}:30"))
    put_cdr(store, bucket, cdr("t0", at(day, "10:00:00"), duration=120), at(day, "10:09:00"))  # duplicate
    put_cdr(store, bucket, b"\x00\xff garbage", at(day, "11:00:00"), txn="junk")

    result = _materialize(local_env, str(day))
    lake = _metadata(result, PROCESSED_CDRS)
    assert (lake["objects_in"], lake["rows_written"], lake["quarantined"], lake["duplicates_dropped"]) == (
        6,
        4,
        1,
        1,
    )
    assert lake["dagster/row_count"] == 4 and lake["mode"] == "replace"
    assert "6 in = 4 written + 1 quarantined + 1 duplicates" in lake["accounting"]
    assert lake["per_voice_connector"].records[0].data["billable_minutes"] == 8.0
    assert "not_json" in lake["top_quarantine_reasons"]
    quarantine = _metadata(result, QUARANTINED_CDRS)
    assert quarantine["dagster/row_count"] == 1
    # 1 of 6 objects quarantined: above the 5 % default, so the rate check warns.
    assert _checks(result) == {
        "cdr_schema_matches": True,
        "cdr_transaction_ids_unique": True,
        "cdr_values_in_range": True,
        "cdr_quarantine_rate": False,
    }
    (warn,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "cdr_quarantine_rate"]
    assert warn.severity.value == "WARN"

    # Materializing the partition again gives the same rows.
    before = _query(local_env, f"SELECT * FROM {LAKE_VIEW} ORDER BY transactionid")
    _materialize(local_env, str(day))
    assert _query(local_env, f"SELECT * FROM {LAKE_VIEW} ORDER BY transactionid") == before


def test_range_check_fails_on_a_call_ending_long_after_delivery(local_env):
    """Checks read the written files: a row with an impossible end day is caught."""
    day = date(2026, 2, 10)
    store = local_env.storage()
    put_cdr(
        store,
        local_env.chime_cdr_bucket,
        cdr("future", at(day + timedelta(5), "10:00:00")),
        at(day, "10:00:00"),
    )
    result = _materialize(local_env, str(day))
    assert _checks(result)["cdr_values_in_range"] is False
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "cdr_values_in_range"]
    assert ev.metadata["ends_after_delivery"].value == 1


def test_sensor_to_lake_end_to_end(cdr_env):
    """Generated landing zone -> sensor tick -> requested runs -> lake, in both storage modes."""
    today = datetime.now(UTC).date()
    store = cdr_env.storage()
    gen = generate_cdrs(
        store,
        cdr_env.chime_cdr_bucket,
        calls=400,
        days=2,
        start=today - timedelta(1),
        seed=3,
        late_fraction=0,
    )
    instance = DagsterInstance.ephemeral()
    resources = cdr_env.resources()
    from cdr_assets.definitions import defs

    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as ctx:
        tick = chime_cdr_sensor.evaluate_tick(ctx)
    in_window = {d: n for d, n in gen.per_delivery_day.items() if date.fromisoformat(d) <= today}
    assert sorted(r.partition_key for r in tick.run_requests) == sorted(in_window)
    assert len({r.run_key for r in tick.run_requests}) == len(tick.run_requests)
    for request in tick.run_requests:
        result = _materialize(cdr_env, request.partition_key, request.run_config, instance)
        lake = _metadata(result, PROCESSED_CDRS)
        assert lake["mode"] == "incremental" and lake["objects_in"] == in_window[request.partition_key]
        assert all(_checks(result)[c] for c in ("cdr_schema_matches", "cdr_transaction_ids_unique"))

    # Every valid call appears once; every malformed object is in the quarantine.
    rows, distinct = _query(cdr_env, f"SELECT count(*), count(DISTINCT transactionid) FROM {LAKE_VIEW}")[0]
    assert rows == distinct == gen.calls
    (quarantined,) = _query(cdr_env, f"SELECT count(*) FROM {QUARANTINE_VIEW}")[0]
    assert quarantined == sum(gen.bad_objects.values())

    # The next tick with the saved cursor requests nothing.
    with build_sensor_context(
        instance=instance, resources=resources, cursor=tick.cursor, definitions=defs
    ) as ctx:
        again = chime_cdr_sensor.evaluate_tick(ctx)
    assert not again.run_requests and again.skip_message

    # In S3 mode the lake objects really are in the S3 server's bucket.
    if cdr_env.mode == "s3":
        keys = [o.key for o in store.list_objects(cdr_env.lake_bucket, "Amazon-Chime-Voice-Connector-CDRs/")]
        assert keys and all(k.endswith(".parquet") for k in keys)


def test_check_keys_exist_for_both_assets():
    names = {(c.asset_key, c.name) for d in chime_checks for c in d.check_keys}
    assert (PROCESSED_CDRS, "cdr_schema_matches") in names
    assert (QUARANTINED_CDRS, "cdr_quarantine_rate") in names
    assert AssetCheckKey(PROCESSED_CDRS, "cdr_values_in_range") in {
        c for d in chime_checks for c in d.check_keys
    }
