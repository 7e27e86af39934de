"""Unified recordings end to end: generated contacts, the sensor, the merge, retries and dead letters."""

from datetime import UTC, date, datetime, timedelta

import duckdb
import orjson
from dagster import DagsterInstance, build_sensor_context, materialize

from cdr_assets.connect.assets import connect_warehouse
from cdr_assets.connect.generate import VoiceContact, generate_ctrs
from cdr_assets.recordings.audio import measure
from cdr_assets.recordings.checks import unified_none_dead
from cdr_assets.recordings.generate import write_contact_media
from cdr_assets.recordings.sensors import unified_recordings_sensor
from cdr_assets.recordings.unified import OUTPUT_PREFIX
from cdr_assets.recordings.unified_assets import unified_call_recordings
from cdr_assets_tests.recordings import media


def _defs():
    from cdr_assets.definitions import defs

    return defs


def _tick(env, instance, cursor=None):
    with build_sensor_context(
        instance=instance, resources=env.resources(), definitions=_defs(), cursor=cursor
    ) as ctx:
        result = unified_recordings_sensor.evaluate_tick(ctx)
    return result


def _merge(env, instance, request=None, partition_key=None, run_config=None):
    result = materialize(
        [unified_call_recordings, unified_none_dead],
        partition_key=request.partition_key if request else partition_key,
        run_config=request.run_config if request else run_config,
        resources=env.resources(),
        instance=instance,
        raise_on_error=False,
    )
    (mat,) = result.asset_materializations_for_node("unified_call_recordings")
    return {k: v.value for k, v in mat.metadata.items()}, result


def _rows(env, sql, params=()):
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"), read_only=True)
    try:
        return conn.execute(sql, list(params)).fetchall()
    finally:
        conn.close()


def _load_contacts(env, days) -> None:
    for day in days:
        materialize(
            [connect_warehouse],
            partition_key=day,
            resources=env.resources(),
            instance=DagsterInstance.ephemeral(),
        )


def test_generated_contacts_are_merged_by_the_sensor(cdr_env, tmp_path):
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    today = datetime.now(UTC).date()
    voice: list[VoiceContact] = []
    yesterday = today - timedelta(days=1)
    ctrs = generate_ctrs(store, bucket, contacts=40, days=1, start=yesterday, seed=3, voice_contacts=voice)
    made = write_contact_media(store, bucket, voice, fraction=0.2, max_seconds=2.0, seed=3)
    assert made.agent_recordings >= 2
    instance = DagsterInstance.ephemeral()

    # Before the contact records are loaded nothing is ready: no run, nothing marked.
    first = _tick(cdr_env, instance)
    assert not first.run_requests

    _load_contacts(cdr_env, [d for d in ctrs.per_delivery_day if d <= str(today)])  # no future partitions
    tick = _tick(cdr_env, instance, first.cursor)
    requested = sorted(c for r in tick.run_requests for c in r.run_config["ops"]["unified_call_recordings"]
                       ["config"]["contact_ids"])  # fmt: skip
    chosen = sorted(
        key.rsplit("/", 1)[-1][: -len(".mp4")]
        for key in (o.key for o in store.list_objects(bucket, "agent-recordings/"))
        if key.endswith(".mp4")
    )
    assert requested == chosen and len(chosen) == made.agent_recordings
    for request in tick.run_requests:
        meta, result = _merge(cdr_env, instance, request)
        assert meta["unified"] == len(
            request.run_config["ops"]["unified_call_recordings"]["config"]["contact_ids"]
        )
        assert result.success

    rows = _rows(
        cdr_env,
        "SELECT contact_id, agent_id, day, status, attempts, recording_key, thumbnail_key, call_seconds, "
        "after_call_seconds, duration_seconds FROM recordings.unified ORDER BY contact_id",
    )
    assert [r[0] for r in rows] == chosen and {r[3] for r in rows} == {"unified"}
    for cid, agent, day, _, attempts, rec_key, thumb_key, call_s, after_s, total in rows:
        assert rec_key == f"{OUTPUT_PREFIX}{day:%Y/%m/%d}/{agent}/{cid}/recording.mp4"
        assert thumb_key == rec_key.replace("recording.mp4", "thumbnail.png") and attempts == 0
        assert abs(total - (call_s + after_s)) <= 0.1 and after_s >= 0.9
        head = store.head(cdr_env.lake_bucket, rec_key)
        assert head.content_type == "video/mp4" and head.metadata["contact-id"] == cid
        assert store.get(cdr_env.lake_bucket, thumb_key)[:8] == b"\x89PNG\r\n\x1a\n"
    # One output, decoded: both streams, the expected duration.
    video = tmp_path / "one.mp4"
    video.write_bytes(store.get(cdr_env.lake_bucket, rows[0][5]))
    assert abs(measure(video).duration - rows[0][9]) < 0.1
    assert media.has_video_stream(video)

    # Later ticks: nothing to do, and a quiet tick does not even read the warehouse.
    again = _tick(cdr_env, instance, tick.cursor)
    assert not again.run_requests
    quiet = _tick(cdr_env, instance, again.cursor)
    assert not quiet.run_requests and "nothing new" in quiet.skip_message
    # A day run from the UI skips what is done.
    meta, _ = _merge(cdr_env, instance, partition_key=str(rows[0][2]))
    assert meta["unified"] == 0 and meta["already_unified"] >= 1


def _initiated() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=10)


# factory.ctr: queued 3 s after initiation, 10 s wait, 100 s talk and 5 s hold.
DISCONNECT_AFTER = timedelta(seconds=118)


def _one_contact(env, contact_id: str, agent_mp4: bytes, sidecar: dict, *, call: bytes | None = None,
                 initiated: datetime | None = None):  # fmt: skip
    """A contact with its record loaded, its call audio and an agent recording with sidecar."""
    from cdr_assets_tests.connect.factory import concatenated, ctr, put_firehose

    store, bucket = env.storage(), env.connect_bucket
    initiated = initiated or _initiated()
    now = initiated + timedelta(minutes=10)
    record = ctr(contact_id, initiated)
    put_firehose(store, bucket, now, concatenated([record]))
    _load_contacts(env, [str(now.date())])
    if call is not None:
        store.put(bucket, media.key(contact_id, when=initiated), call)
    prefix = f"agent-recordings/{now:%Y/%m/%d}/agent-1/{contact_id}"
    store.put(bucket, prefix + ".json", orjson.dumps(sidecar))
    store.put(bucket, prefix + ".mp4", agent_mp4)
    return now.date(), prefix


def _time_passes(env) -> None:
    """The backoff is over: move every retry time into the past."""
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"))
    try:
        conn.execute("UPDATE recordings.unified SET next_attempt_at = next_attempt_at - INTERVAL 1 DAY")
    finally:
        conn.close()


def test_failures_back_off_then_dead_letter_and_keep_inputs(cdr_env):
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    no_audio = media.mp4_without_audio()
    day, prefix = _one_contact(cdr_env, "bad-1", no_audio, {"call_end_offset": "00:00:00.500"},
                               call=media.good_wav(1.0))  # fmt: skip
    instance = DagsterInstance.ephemeral()
    tick = _tick(cdr_env, instance)
    (request,) = tick.run_requests
    meta, result = _merge(cdr_env, instance, request)
    assert (meta["unified"], meta["failed_will_retry"]) == (0, 1)
    ((status, attempts, error, retry_at),) = _rows(
        cdr_env, "SELECT status, attempts, error, next_attempt_at FROM recordings.unified"
    )
    assert status == "failed" and attempts == 1 and error.startswith("merge:")
    assert retry_at > datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=200)  # 300 s backoff
    # Backing off: the sensor requests nothing until the retry is due.
    assert not _tick(cdr_env, instance, tick.cursor).run_requests

    keys = set()
    for _attempt in (2, 3):
        _time_passes(cdr_env)
        due = _tick(cdr_env, instance)
        (request,) = due.run_requests
        keys.add(request.run_key)
        meta, result = _merge(cdr_env, instance, request)
        assert meta["unified"] == 0
    assert len(keys) == 2 and request.run_key != tick.run_requests[0].run_key  # each retry its own run
    assert meta["dead_lettered"] == 1
    ((status, attempts),) = _rows(cdr_env, "SELECT status, attempts FROM recordings.unified")
    assert (status, attempts) == ("dead", 3)
    assert _rows(cdr_env, "SELECT key, preset FROM recordings.dead_letters") == [(prefix + ".mp4", "unified")]
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert not _tick(cdr_env, instance).run_requests  # dead: not retried until reset
    # Nothing was written for it, and its inputs are untouched.
    assert not list(store.list_objects(cdr_env.lake_bucket, OUTPUT_PREFIX))
    assert store.get(bucket, prefix + ".mp4") == no_audio
    # A reset lets it run again.
    meta, _ = _merge(cdr_env, instance, partition_key=str(day), run_config={
        "ops": {"unified_call_recordings": {"config": {"reset_dead": True}}}})  # fmt: skip
    assert meta["failed_will_retry"] == 1


def test_offset_from_recording_started_at_and_missing_inputs_wait(cdr_env, tmp_path):
    from cdr_assets.recordings.generate import agent_mp4

    path = tmp_path / "agent.mp4"
    agent_mp4(str(path), 4.0)
    initiated = _initiated()
    # The recording started 2.5 s before the call ended (naive ISO: UTC).
    sidecar = {"recording_started_at": (initiated + DISCONNECT_AFTER - timedelta(seconds=2.5)).isoformat()}
    _one_contact(cdr_env, "ok-1", path.read_bytes(), sidecar, call=None, initiated=initiated)
    instance = DagsterInstance.ephemeral()
    first = _tick(cdr_env, instance)
    assert not first.run_requests  # no call audio yet: waits, no attempt used (no status table even)
    assert not _rows(cdr_env, "SELECT 1 FROM duckdb_tables() WHERE table_name = 'unified'")
    store = cdr_env.storage()
    store.put(cdr_env.connect_bucket, media.key("ok-1", when=initiated), media.good_wav(2.0))
    (request,) = _tick(cdr_env, instance, first.cursor).run_requests
    meta, _ = _merge(cdr_env, instance, request)
    assert meta["unified"] == 1
    ((call_s, after_s, total),) = _rows(
        cdr_env, "SELECT call_seconds, after_call_seconds, duration_seconds FROM recordings.unified"
    )
    assert abs(call_s - 2.0) < 0.01 and abs(after_s - 1.5) < 0.1 and abs(total - 3.5) < 0.1


def test_day_run_reports_not_ready_without_using_attempts(local_env):
    store, bucket = local_env.storage(), local_env.connect_bucket
    day = date(2024, 3, 5)
    store.put(bucket, f"agent-recordings/{day:%Y/%m/%d}/a/lonely.mp4", media.mp4_without_audio())
    meta, result = _merge(local_env, DagsterInstance.ephemeral(), partition_key=str(day))
    assert result.success and meta["not_ready"] == 1 and meta["failed_will_retry"] == 0
    assert "no sidecar" in meta["waiting"]
    assert _rows(local_env, "SELECT count(*) FROM recordings.unified") == [(0,)]


def test_a_busy_warehouse_skips_the_tick_without_blocking(local_env):
    store = local_env.storage()
    day = datetime.now(UTC)
    store.put(local_env.connect_bucket, f"agent-recordings/{day:%Y/%m/%d}/a/c-9.mp4", b"x")
    instance = DagsterInstance.ephemeral()
    assert "not created yet" in _tick(local_env, instance).skip_message  # no warehouse file yet
    writer = duckdb.connect(str(local_env.home / "warehouse.duckdb"))  # a run holding the file
    try:
        tick = _tick(local_env, instance)
    finally:
        writer.close()
    assert not tick.run_requests and "busy" in tick.skip_message and tick.cursor is None
