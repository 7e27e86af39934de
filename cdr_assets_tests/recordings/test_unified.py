"""Unified recordings over storage and through Dagster: inputs found, outputs stored, reruns skip."""

from datetime import datetime

from dagster import DagsterInstance, materialize

from cdr_assets.recordings.assets import unified_call_recordings
from cdr_assets.recordings.audio import measure
from cdr_assets.recordings.generate import Contact, write_recordings
from cdr_assets_tests.recordings.test_unify import _agent_mp4

DAY = "2024-03-05"


def _meta(result) -> dict:
    (mat,) = result.asset_materializations_for_node("unified_call_recordings")
    return {k: v.value for k, v in mat.metadata.items()}


def test_unified_recordings(cdr_env, tmp_path):
    store, bucket = cdr_env.storage(), cdr_env.connect_bucket
    write_recordings(store, bucket, "acme", [Contact("c-1", datetime(2024, 3, 5, 10, 0), 2.0)])
    agent = _agent_mp4(tmp_path / "agent.mp4", 4.0)
    with open(agent, "rb") as fh:
        data = fh.read()
    offset = {"call-end-offset": "00:00:02"}
    store.put(bucket, "screen-recordings/2024/03/05/agent-7/c-1.mp4", data, metadata=offset)
    store.put(bucket, "screen-recordings/2024/03/05/agent-7/c-2.mp4", data)  # no offset, no call audio
    instance = DagsterInstance.ephemeral()

    def run() -> dict:
        return _meta(
            materialize([unified_call_recordings], partition_key=DAY, resources=cdr_env.resources(),
                        instance=instance)
        )  # fmt: skip

    first = run()
    assert (first["listed"], first["unified"], first["failed"]) == (2, 1, 1)
    out = "screen-recordings/2024/03/05/agent-7/c-1/recording.mp4"
    head = store.head(bucket, out)
    assert head.content_type == "video/mp4" and head.metadata["contact-id"] == "c-1"
    assert store.get(bucket, "screen-recordings/2024/03/05/agent-7/c-1/thumbnail.png")[:4] == b"\x89PNG"
    marked = store.head(bucket, "screen-recordings/2024/03/05/agent-7/c-1.mp4")
    assert marked.metadata["unified"] == out and marked.metadata["call-end-offset"] == "00:00:02"
    video = tmp_path / "out.mp4"
    video.write_bytes(store.get(bucket, out))
    assert abs(measure(video).duration - 4.0) < 0.1  # 2 s of call + 2 s after the call
    second = run()
    assert (second["unified"], second["already_unified"], second["failed"]) == (0, 1, 1)
