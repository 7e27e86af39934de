"""Unified call recording: real ffmpeg on a small generated call WAV and agent MP4."""

import pytest

from cdr_assets.recordings.audio import AudioError, measure
from cdr_assets.recordings.generate import agent_mp4
from cdr_assets.recordings.unify import parse_offset, unify
from cdr_assets_tests.recordings import media


def _agent_mp4(path, seconds: float = 4.0) -> str:
    agent_mp4(str(path), seconds)
    return str(path)


def test_unify_appends_after_call_audio_and_keeps_video(tmp_path):
    call = tmp_path / "call.wav"
    call.write_bytes(media.good_wav(2.0))
    agent = _agent_mp4(tmp_path / "agent.mp4", 4.0)
    out = unify(call, agent, parse_offset("00:00:02.5"), tmp_path / "out")
    assert abs(out.call_seconds - 2.0) < 0.01 and abs(out.after_call_seconds - 1.5) < 0.05
    assert abs(out.duration - 3.5) < 0.1 and measure(out.video).channels == 2
    assert out.thumbnail.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unify_refuses_bad_input(tmp_path):
    call = tmp_path / "call.wav"
    call.write_bytes(media.good_wav(1.0))
    agent = _agent_mp4(tmp_path / "agent.mp4", 2.0)
    with pytest.raises(AudioError, match="outside"):
        unify(call, agent, 5.0, tmp_path / "out")
    no_audio = tmp_path / "video.mp4"
    no_audio.write_bytes(media.mp4_without_audio())
    with pytest.raises(AudioError):
        unify(call, no_audio, 0.5, tmp_path / "out2")
    assert parse_offset("01:02:03") == 3723
    with pytest.raises(ValueError):
        parse_offset("2:61")
