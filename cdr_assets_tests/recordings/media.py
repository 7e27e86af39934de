"""Small test media: good recordings, corrupt, truncated, empty, and an MP4 without audio."""

import os
import struct
import tempfile
from datetime import datetime

import numpy as np

from cdr_assets.recordings.audio import run_ffmpeg
from cdr_assets.recordings.generate import recording_key, synth_stereo, wav_bytes

DAY = datetime(2024, 3, 5, 14, 30)


def key(contact: str, alias: str = "acme", when: datetime = DAY) -> str:
    return recording_key(alias, contact, when)


def good_wav(seconds: float = 2.0, seed: int = 0) -> bytes:
    return wav_bytes(synth_stereo(seconds, seed=seed))


def swapped_wav(seconds: float = 2.0) -> bytes:
    return wav_bytes(synth_stereo(seconds)[:, ::-1].copy())


def corrupt_wav() -> bytes:
    data = bytearray(good_wav(1.0))
    struct.pack_into("<HH", data, 20, 0xBEEF, 0)  # unknown codec tag, zero channels
    return bytes(data)


def truncated_wav() -> bytes:
    data = good_wav(2.0)
    return data[: len(data) // 2]


def mp4_without_audio() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "video.mp4")
        run_ffmpeg(["-f", "lavfi", "-i", "color=c=blue:s=64x64:d=1:r=10", "-an", "-c:v", "mpeg4", out])
        with open(out, "rb") as fh:
            return fh.read()


def silent_right(seconds: float = 2.0) -> np.ndarray:
    frames = synth_stereo(seconds).copy()
    frames[:, 1] = 0
    return frames


def has_video_stream(path) -> bool:
    """ffmpeg can copy a video stream out of ``path`` (there is no ffprobe)."""
    from cdr_assets.recordings.audio import AudioError

    try:
        run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"])
    except AudioError:
        return False
    return True
