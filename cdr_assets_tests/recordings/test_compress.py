"""The per-object safe procedure and one day's work, on both storage modes (moto S3 included)."""

from datetime import date

import duckdb
import pytest

from cdr_assets.recordings.compress import compress_day, contact_id_of, reset_failed
from cdr_assets.recordings.presets import get_preset
from cdr_assets.recordings.pricing import DEFAULT_PRICES, parse_prices, savings_by_day, total
from cdr_assets_tests.recordings import media

DAY = date(2024, 3, 5)
BAD = {
    "corrupt": media.corrupt_wav,
    "truncated": media.truncated_wav,
    "empty": lambda: b"",
    "video": media.mp4_without_audio,
}


def _seed(store, bucket) -> dict[str, bytes]:
    objects = {media.key(f"good-{i}"): media.good_wav(1.5 + i, seed=i) for i in range(3)}
    objects |= {media.key(f"bad-{name}"): make() for name, make in BAD.items()}
    objects[media.key("other-alias", alias="beta")] = media.good_wav(1.0)
    objects["connect/acme/CallRecordings/2024/03/05/notes.txt"] = b"not a recording"
    for k, data in objects.items():
        store.put(bucket, k, data)
    return objects


def _run(env, conn, preset="adpcm-stereo", storage_class="STANDARD_IA", max_attempts=3):
    return compress_day(
        env.storage(), conn, bucket=env.connect_bucket, day=DAY, preset=get_preset(preset),
        storage_class=storage_class, max_attempts=max_attempts, workers=2,
    )  # fmt: skip


def test_in_place_day_bad_objects_rerun_and_reset(cdr_env, tmp_path):
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    objects = _seed(store, bucket)
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = _run(cdr_env, conn)
    assert (report.listed, report.converted, report.failed, report.skipped) == (8, 4, 4, 0), report.failures
    for k, original in objects.items():
        head = store.head(bucket, k)
        if "good" in k or "beta" in k:
            assert head.metadata["converted"] == "adpcm-stereo"
            assert head.metadata["original-size"] == str(len(original))
            assert head.metadata["original-format"] == "wav/pcm_s16le/8000Hz/2ch"
            assert head.storage_class == "STANDARD_IA"
            assert head.content_type == "audio/wav"
            assert head.size < len(original) / 3.5
            assert store.get(bucket, k)[:4] == b"RIFF"
        else:  # bad objects (and the .txt, never listed) are intact and unmarked
            assert store.get(bucket, k) == original
            assert "converted" not in head.metadata and head.storage_class == "STANDARD"
    steps = dict(conn.execute("SELECT key, step FROM recordings.dead_letters").fetchall())
    assert steps == {
        media.key("bad-corrupt"): "measure-original",
        media.key("bad-truncated"): "measure-original",
        media.key("bad-empty"): "download",
        media.key("bad-video"): "measure-original",
    }
    row = conn.execute(
        "SELECT contact_id, status, attempts, bytes_before > bytes_after, duration_seconds "
        "FROM recordings.compression WHERE key = ?",
        [media.key("good-1")],
    ).fetchone()
    assert row[:4] == ("good-1", "converted", 1, True) and abs(row[4] - 2.5) < 0.01

    again = _run(cdr_env, conn, max_attempts=2)  # a rerun: converted objects skipped, bad ones retried
    assert (again.converted, again.skipped, again.failed, again.held) == (0, 4, 4, 0)
    third = _run(cdr_env, conn, max_attempts=2)  # two failures: held, not even looked at
    assert (third.converted, third.skipped, third.failed, third.held) == (0, 4, 0, 4)
    assert conn.execute("SELECT count(*) FROM recordings.dead_letters").fetchone()[0] == 8
    assert reset_failed(conn, [media.key("bad-empty")]) == 1
    store.put(bucket, media.key("bad-empty"), media.good_wav(1.0))  # the user fixed it
    fourth = _run(cdr_env, conn, max_attempts=2)
    assert (fourth.converted, fourth.held) == (1, 3)

    days = savings_by_day(conn, DEFAULT_PRICES)
    assert [d.recordings for d in days] == [5]
    assert days[0].saved_percent > 70 and days[0].cost_after < days[0].cost_before / 4
    assert total(days).bytes_before == days[0].bytes_before


@pytest.mark.parametrize("preset", ["alaw-mono", "opus-stereo"])
def test_mono_and_archive_presets(local_env, tmp_path, preset):
    store, bucket = local_env.storage(), local_env.connect_bucket
    k = media.key("c-1")
    original = media.good_wav(2.0)
    store.put(bucket, k, original)
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    report = _run(local_env, conn, preset=preset, storage_class="GLACIER_IR")
    assert report.converted == 1, report.failures
    new_key = conn.execute("SELECT new_key FROM recordings.compression").fetchone()[0]
    head = store.head(bucket, new_key)
    assert head.metadata["converted"] == preset and head.storage_class == "GLACIER_IR"
    if preset == "opus-stereo":
        assert new_key == k[: -len(".wav")] + ".ogg" and store.head(bucket, k) is None
        assert head.content_type == "audio/ogg" and head.metadata["original-key"] == k
        assert head.size * 10 <= len(original)
    else:
        assert new_key == k and head.size * 3.5 < len(original)
    assert _run(local_env, conn, preset=preset).converted == 0  # nothing left to do


def test_helpers():
    assert contact_id_of(media.key("abc-123")) == "abc-123"
    assert contact_id_of("connect/a/CallRecordings/2024/03/05/x.txt") is None
    assert parse_prices('{"STANDARD": 0.03}')["STANDARD"] == 0.03
    with pytest.raises(ValueError, match="unknown storage class"):
        parse_prices('{"DEEP": 1}')
