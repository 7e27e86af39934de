"""The Dagster shell of the Connect warehouse, end to end in both storage modes."""

import json
from datetime import UTC, date, datetime, timedelta

import duckdb
from dagster import AssetKey, DagsterInstance, Definitions, build_sensor_context, materialize

from cdr_assets.connect.assets import (
    BACKFILL_DAYS_PER_RUN,
    FACT_CONTACT,
    QUARANTINED_CTRS,
    STAGED_CTRS,
    connect_warehouse,
)
from cdr_assets.connect.checks import connect_checks
from cdr_assets.connect.sensors import connect_ctr_sensor
from cdr_assets_tests.connect.factory import concatenated, ctr, put_firehose, sample_versions, star_tables


def _materialize(env, partition_key: str, run_config=None, instance=None):
    return materialize(
        [connect_warehouse, *connect_checks],
        partition_key=partition_key,
        resources=env.resources(),
        run_config=run_config,
        instance=instance,
        raise_on_error=True,
    )


def _metadata(result, key: AssetKey, node: str) -> dict:
    (mat,) = [m for m in result.asset_materializations_for_node(node) if m.asset_key == key]
    return {k: v.value for k, v in mat.metadata.items()}


def _query(env, sql: str):
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _tables(env) -> dict[str, list]:
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"), read_only=True)
    try:
        return star_tables(conn)
    finally:
        conn.close()


def test_definitions_load():
    from cdr_assets.definitions import defs

    Definitions.validate_loadable(defs)
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {
        STAGED_CTRS,
        QUARANTINED_CTRS,
        FACT_CONTACT,
        AssetKey("dim_agent"),
        AssetKey("raw_connect_ctrs"),
    } <= keys
    assert defs.resolve_sensor_def("connect_ctr_sensor")
    # Staging and loading are one step, so a backfill run of several days can overlap them.
    warehouse_def = defs.resolve_assets_def(FACT_CONTACT)
    assert warehouse_def.keys >= {STAGED_CTRS, QUARANTINED_CTRS, FACT_CONTACT}
    assert warehouse_def.backfill_policy.max_partitions_per_run == BACKFILL_DAYS_PER_RUN == 7


def test_real_samples_across_days_and_files(cdr_env):
    """The 6 real deliveries spread over files of two delivery days, in reverse order, plus bad input."""
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    versions = sample_versions()
    day1, day2 = date(2022, 1, 11), date(2022, 1, 12)
    at1 = datetime(2022, 1, 11, 5, 0, 0)
    put_firehose(store, bucket, at1, concatenated(versions[4:6]) + b"}{ not json")
    put_firehose(store, bucket, at1 + timedelta(hours=1), json.dumps(versions[2:4]).encode())  # an array
    put_firehose(store, bucket, datetime(2022, 1, 12, 1, 0, 0), concatenated(versions[0:2], "\n"))

    first = _materialize(cdr_env, str(day1))
    staged = _metadata(first, STAGED_CTRS, "connect_warehouse")
    assert (staged["records_in"], staged["rows_staged"], staged["quarantined"]) == (5, 4, 1)
    assert staged["files_streamed"] == 1  # the garbage; DuckDB's reader takes the array
    assert all(e.passed for e in first.get_asset_check_evaluations())
    second = _materialize(cdr_env, str(day2))
    assert _metadata(second, STAGED_CTRS, "connect_warehouse")["files_streamed"] == 0
    fact = _metadata(second, FACT_CONTACT, "connect_warehouse")
    assert (fact["dagster/row_count"], fact["inserted"], fact["stale_or_duplicate"]) == (1, 0, 1)
    assert all(e.passed for e in second.get_asset_check_evaluations())
    rows = _query(cdr_env, "SELECT contact_id, last_update_timestamp FROM connect.fact_contact")
    assert rows == [("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47", datetime(2022, 1, 11, 4, 9, 47))]
    (quarantine,) = _query(cdr_env, "SELECT count(*) FROM connect.lake_files WHERE kind = 'quarantine'")[0]
    assert quarantine == 1
    # The warehouse file is in the pinned DuckDB's storage format (WAREHOUSE_CONFIG).
    assert _query(cdr_env, "SELECT tags['storage_version'] FROM duckdb_databases() WHERE NOT internal")[0][
        0
    ] == ("v1.4.0+")

    # Rematerializing a partition (replace mode) gives the same tables and no stray files.
    before = _tables(cdr_env)
    again = _materialize(cdr_env, str(day1))
    redo = _metadata(again, STAGED_CTRS, "connect_warehouse")
    assert redo["files_removed"] == 0 and redo["files_written"] == staged["files_written"]  # same names
    assert _tables(cdr_env) == before
    (committed,) = _query(cdr_env, "SELECT count(*) FROM connect.lake_files WHERE state = 'committed'")[0]
    staged_files = [k for k in _list(cdr_env) if k.endswith(".parquet")]
    assert len(staged_files) == committed == 3  # day 1: one ctrs file + quarantine; day 2: one ctrs file


def _list(env) -> list[str]:
    store = env.storage()
    return [o.key for o in store.list_objects(env.lake_bucket, "")]


def test_sensor_requests_new_files_once(cdr_env):
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    today = now.date()
    put_firehose(store, bucket, now - timedelta(days=1), concatenated([ctr("y1", now - timedelta(days=1))]))
    put_firehose(
        store, bucket, now, concatenated([ctr("t1", now), ctr("t2", now, agent=None)]), suffix="5" * 8
    )
    put_firehose(
        store, bucket, now - timedelta(days=30), concatenated([ctr("old", now - timedelta(days=30))])
    )
    instance = DagsterInstance.ephemeral()
    resources = cdr_env.resources()
    from cdr_assets.definitions import defs

    with build_sensor_context(instance=instance, resources=resources, definitions=defs) as ctx:
        tick = connect_ctr_sensor.evaluate_tick(ctx)
    assert sorted(r.partition_key for r in tick.run_requests) == [str(today - timedelta(1)), str(today)]
    for request in tick.run_requests:
        result = _materialize(cdr_env, request.partition_key, request.run_config, instance)
        assert _metadata(result, STAGED_CTRS, "connect_warehouse")["mode"] == "incremental"
    assert _query(cdr_env, "SELECT contact_id FROM connect.fact_contact ORDER BY 1") == [
        ("t1",),
        ("t2",),
        ("y1",),
    ]

    with build_sensor_context(
        instance=instance, resources=resources, cursor=tick.cursor, definitions=defs
    ) as ctx:
        again = connect_ctr_sensor.evaluate_tick(ctx)
    assert not again.run_requests and again.skip_message

    put_firehose(store, bucket, now, concatenated([ctr("t3", now)]), suffix="f" * 8)  # sorts after the cursor
    with build_sensor_context(
        instance=instance, resources=resources, cursor=again.cursor, definitions=defs
    ) as ctx:
        third = connect_ctr_sensor.evaluate_tick(ctx)
    (request,) = third.run_requests
    assert request.run_key.startswith(f"connect-ctrs:{today}:new:")
    (rng,) = request.run_config["ops"]["connect_warehouse"]["config"]["ranges"]
    assert rng["start_after"] is not None  # only the part after the cursor is listed again
    result = _materialize(cdr_env, request.partition_key, request.run_config, instance)
    staged = _metadata(result, STAGED_CTRS, "connect_warehouse")
    assert (staged["files_in"], staged["records_in"]) == (1, 1)
    fact = _metadata(result, FACT_CONTACT, "connect_warehouse")
    assert (fact["files_loaded"], fact["inserted"], fact["dagster/row_count"]) == (1, 1, 4)

    # A file that becomes visible late with a key *before* the cursor is found by the sweep.
    put_firehose(store, bucket, now, concatenated([ctr("t4", now)]), suffix="0" * 8)
    cursor = third.cursor
    late = []
    for _ in range(4):
        with build_sensor_context(
            instance=instance, resources=resources, cursor=cursor, definitions=defs
        ) as ctx:
            tick = connect_ctr_sensor.evaluate_tick(ctx)
        cursor, late = tick.cursor, late + list(tick.run_requests)
    (request,) = late
    assert request.tags["cdr_assets/trigger"] == "late-sweep"
    result = _materialize(cdr_env, request.partition_key, request.run_config, instance)
    staged = _metadata(result, STAGED_CTRS, "connect_warehouse")
    assert (staged["files_listed"], staged["already_ingested"], staged["files_in"]) == (3, 2, 1)
    assert _metadata(result, FACT_CONTACT, "connect_warehouse")["dagster/row_count"] == 5


def test_a_backfill_run_of_several_days_loads_as_one_run_per_day_would(cdr_env):
    """A run over a range of delivery days (as the backfill policy cuts a backfill) stages the next
    day while one loads; its tables are those of staging and loading each day in turn, and every
    day of the range is recorded as materialized."""
    from cdr_assets.connect.generate import generate_ctrs
    from cdr_assets.connect.load import load_partition
    from cdr_assets.connect.staging import stage_delivery_day
    from cdr_assets.warehouse import configure_lake_access

    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    gen = generate_ctrs(store, bucket, contacts=400, days=3, start=date(2026, 3, 1), seed=21)
    days = sorted(gen.per_delivery_day)
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [connect_warehouse, *connect_checks],
        resources=cdr_env.resources(),
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert instance.get_materialized_partitions(FACT_CONTACT) == set(days)
    assert instance.get_materialized_partitions(STAGED_CTRS) == set(days)
    staged = _metadata_of_day(result, STAGED_CTRS, days[0])
    assert staged["delivery_days"] == days and staged["records_in"] == gen.records + gen.duplicate_deliveries
    assert staged["per_delivery_day"].count("\n") == len(days) + 1  # header, rule, a line per day
    fact = _metadata_of_day(result, FACT_CONTACT, days[-1])
    assert fact["inserted"] == fact["dagster/row_count"] == 400

    # The same days staged and loaded one after the other, into another lake bucket and file.
    store.ensure_bucket("lake-in-turn")
    conn = duckdb.connect(str(cdr_env.home / "in-turn.duckdb"))
    configure_lake_access(conn, store)
    try:
        for day in days:
            stage_delivery_day(
                store,
                conn,
                connect_bucket=bucket,
                lake_bucket="lake-in-turn",
                ctr_prefix="ctr/",
                delivery_day=date.fromisoformat(day),
            )
            load_partition(conn, store, "lake-in-turn", date.fromisoformat(day))
        in_turn = star_tables(conn)
    finally:
        conn.close()
    assert _tables(cdr_env) == in_turn


def test_sensor_key_ranges_need_a_run_of_one_day(cdr_env):
    config = {"ops": {"connect_warehouse": {"config": {"ranges": [{"prefix": "ctr/2026/03/01/"}]}}}}
    result = materialize(
        [connect_warehouse],
        resources=cdr_env.resources(),
        run_config=config,
        tags={
            "dagster/asset_partition_range_start": "2026-03-01",
            "dagster/asset_partition_range_end": "2026-03-02",
        },
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "key ranges apply to a run of one delivery day, not 2" in str(failure.step_failure_data.error)


def _metadata_of_day(result, key: AssetKey, day: str) -> dict:
    (mat,) = [
        m.materialization
        for m in (e.step_materialization_data for e in result.get_asset_materialization_events())
        if m.materialization.asset_key == key and m.materialization.partition == day
    ]
    return {k: v.value for k, v in mat.metadata.items()}
