"""Real ffmpeg on small generated media: presets round-trip, verification catches damage."""

import os

import pytest

from cdr_assets.recordings import audio
from cdr_assets.recordings.generate import synth_stereo, wav_bytes
from cdr_assets.recordings.presets import PRESETS, get_preset
from cdr_assets_tests.recordings import media


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_and_verifies(tmp_path, name):
    preset = PRESETS[name]
    src = _write(tmp_path / "in.wav", media.good_wav(3.3))
    dst = str(tmp_path / f"out{preset.extension}")
    audio.run_ffmpeg(preset.ffmpeg_args(src, dst))
    original, converted = audio.measure(src), audio.measure(dst)
    assert original.channels == 2 and abs(original.duration - 3.3) < 0.001
    assert original.channel_db[0] - original.channel_db[1] > 10  # the channels differ clearly
    verdict = audio.verify(original, converted, channels=preset.channels)
    assert verdict.ok, verdict.reason
    ratio = os.path.getsize(src) / os.path.getsize(dst)
    expected = {"adpcm-stereo": 3.5, "alaw-stereo": 1.9, "alaw-mono": 3.9, "opus-stereo": 10}[name]
    assert ratio >= expected, ratio


def test_verify_catches_swapped_silent_collapsed_and_short(tmp_path):
    src = _write(tmp_path / "in.wav", media.good_wav(2.0))
    original = audio.measure(src)
    swapped = audio.measure(_write(tmp_path / "sw.wav", media.swapped_wav(2.0)))
    assert not audio.verify(original, swapped, channels=2).ok
    silent = audio.measure(_write(tmp_path / "si.wav", wav_bytes(media.silent_right(2.0))))
    assert silent.channel_db[1] == audio.SILENCE_DB
    assert "channel 1" in audio.verify(original, silent, channels=2).reason
    mono = str(tmp_path / "mono.wav")
    audio.run_ffmpeg(get_preset("alaw-mono").ffmpeg_args(src, mono))
    assert "1 channel" in audio.verify(original, audio.measure(mono), channels=2).reason
    short = audio.measure(_write(tmp_path / "short.wav", wav_bytes(synth_stereo(1.9))))
    assert "duration" in audio.verify(original, short, channels=2).reason
    near = audio.measure(_write(tmp_path / "near.wav", wav_bytes(synth_stereo(1.97))))
    assert audio.verify(original, near, channels=2).ok  # 30 ms off: within 50 ms


def test_failures_are_errors_not_silence(tmp_path):
    with pytest.raises(audio.AudioError, match="exited"):
        audio.run_ffmpeg(["-i", str(tmp_path / "missing.wav"), str(tmp_path / "x.wav")])
    bad = {"empty": b"", "corrupt": media.corrupt_wav(), "video": media.mp4_without_audio()}
    for name, data in bad.items():
        with pytest.raises(audio.AudioError):
            audio.measure(_write(tmp_path / f"{name}.wav", data))


def test_wav_header_checks():
    good = media.good_wav(1.0)
    assert audio.describe_wav(good) == "wav/pcm_s16le/8000Hz/2ch"
    assert audio.wav_truncation(good, len(good)) is None
    cut = media.truncated_wav()
    assert "truncated" in audio.wav_truncation(cut, len(cut))
    assert audio.describe_wav(b"\x00" * 20) == "not-wav"
    with pytest.raises(ValueError, match="unknown RECORDINGS_PRESET"):
        get_preset("mp3")


def test_measure_pcm_matches_ffmpeg_and_declines_other_formats(tmp_path):
    mono = wav_bytes(synth_stereo(0.8)[:, :1].copy())
    for data in (media.good_wav(1.37, seed=4), media.swapped_wav(0.5), mono):
        path = tmp_path / "a.wav"
        path.write_bytes(data)
        direct, decoded = audio.measure_pcm(data), audio.measure(path)
        assert direct is not None and direct.channels == decoded.channels and direct.frames == decoded.frames
        assert all(abs(a - b) < 1e-6 for a, b in zip(direct.channel_db, decoded.channel_db, strict=True))
        assert abs(direct.mix_db - decoded.mix_db) < 1e-6
    # A chunk after the samples is not read as audio.
    trailing = media.good_wav(1.0) + b"LIST" + (8).to_bytes(4, "little") + b"INFOabcd"
    assert audio.measure_pcm(trailing).frames == 8000
    adpcm = tmp_path / "adpcm.wav"
    audio.run_ffmpeg(["-i", str(path), "-c:a", "adpcm_ima_wav", str(adpcm)])
    assert audio.measure_pcm(adpcm.read_bytes()) is None and audio.measure_pcm(b"not a wav") is None
