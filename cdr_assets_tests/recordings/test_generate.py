"""Synthetic recordings: Connect keys, 8 kHz stereo with clearly different channels; the CLI option."""

from datetime import date

from cdr_assets.cli import main
from cdr_assets.recordings.audio import describe_wav
from cdr_assets.recordings.compress import KEY_RE
from cdr_assets.recordings.generate import generate_recordings


def test_generate_recordings(local_env):
    store, bucket = local_env.storage(), local_env.connect_bucket
    summary = generate_recordings(
        store, bucket, count=4, days=2, start=date(2024, 3, 5), seed=1, max_seconds=3
    )
    keys = [o.key for o in store.list_objects(bucket, "connect/")]
    assert summary.recordings == len(keys) == 4
    assert all(KEY_RE.match(k) for k in keys)
    assert {k.split("/")[5] for k in keys} <= {"05", "06"}
    data = store.get(bucket, keys[0])
    assert describe_wav(data) == "wav/pcm_s16le/8000Hz/2ch" and len(data) <= 44 + 3 * 8000 * 4


def test_cli_generate_recordings(local_env, capsys):
    argv = ["generate", "--calls", "5", "--days", "1", "--start", "2024-03-05", "--recordings", "2"]
    assert main([*argv, "--recording-seconds", "2"]) == 0
    assert "wrote 2 call recordings" in capsys.readouterr().out
    assert len(list(local_env.storage().list_objects(local_env.connect_bucket, "connect/"))) == 2


def test_cli_generate_links_recordings_to_contacts(local_env, capsys):
    argv = ["generate", "--calls", "5", "--days", "1", "--start", "2024-03-05", "--contacts", "60"]
    assert main([*argv, "--recording-fraction", "0.15", "--recording-seconds", "1.5"]) == 0
    assert "agent screen recordings with sidecars" in capsys.readouterr().out
    store, bucket = local_env.storage(), local_env.connect_bucket
    calls = {o.key for o in store.list_objects(bucket, "connect/")}
    agent = {o.key for o in store.list_objects(bucket, "agent-recordings/")}
    mp4s = {k for k in agent if k.endswith(".mp4")}
    assert mp4s and {k[: -len(".mp4")] + ".json" for k in mp4s} == agent - mp4s  # a sidecar each
    # Every agent recording's contact has its call recording, at the key its CTR names.
    raw = b"".join(store.get(bucket, o.key) for o in store.list_objects(bucket, "ctr/"))
    for key in mp4s:
        contact = key.rsplit("/", 1)[-1][: -len(".mp4")]
        (call,) = [c for c in calls if c.split("/")[-1].startswith(contact + "_")]
        assert KEY_RE.match(call) and f"{bucket}/{call}".encode() in raw
        assert describe_wav(store.get(bucket, call)) == "wav/pcm_s16le/8000Hz/2ch"
