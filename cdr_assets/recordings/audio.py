"""Audio operations with the ffmpeg binary of imageio-ffmpeg: encode, decode, measure, verify.

There is no ffprobe: a file is measured by decoding it with ffmpeg to 16-bit PCM in a WAV
stream on a pipe and reading the samples in chunks, so memory stays bounded whatever the
length of the recording. Every ffmpeg exit code is checked (the reference's bug).
"""

from __future__ import annotations

import io
import math
import struct
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 8000  # what every measurement decodes to (Connect records at 8 kHz)
SILENCE_DB = -120.0  # the level reported for digital silence
_CHUNK = 1 << 20  # bytes of samples per step: few Python steps, small arrays
_FFMPEG_TIMEOUT = 3600


class AudioError(Exception):
    """ffmpeg failed, or a file holds no decodable audio."""


@cache
def ffmpeg_exe() -> str:
    from imageio_ffmpeg import get_ffmpeg_exe

    return get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, timeout: float = _FFMPEG_TIMEOUT) -> None:
    """Run ffmpeg with ``args``; raise AudioError (with the end of stderr) unless it exits 0."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AudioError(f"ffmpeg timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise AudioError(f"ffmpeg exited {proc.returncode}: {' | '.join(tail) or 'no message'}")


@dataclass(frozen=True)
class Levels:
    """What a decoded file measures: length, channels, RMS level per channel and of the mono mix."""

    channels: int
    frames: int
    channel_db: tuple[float, ...]
    mix_db: float

    @property
    def duration(self) -> float:
        return self.frames / SAMPLE_RATE


def _db(sum_squares: float, count: int) -> float:
    if count == 0 or sum_squares <= 0:
        return SILENCE_DB
    return max(SILENCE_DB, 10 * math.log10(sum_squares / count / 32768.0**2))


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise AudioError("no audio stream: the decoder produced no WAV header")
    return data


def measure(path: str | Path) -> Levels:
    """Decode ``path`` (any format ffmpeg reads) to 8 kHz 16-bit PCM and measure it, streaming."""
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
        "-map", "0:a:0", "-vn", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        # Regroup the decoded samples into large frames (no padding): codecs such as ADPCM come in
        # 256-byte packets, and ffmpeg's threaded pipeline spends more CPU passing thousands of tiny
        # frames between its stages than decoding them. The samples are unchanged.
        "-af", "asetnsamples=n=65536:p=0",
        "-c:a", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-f", "wav", "-",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        channels, sums, mix_sum, frames = _consume_wav(proc.stdout)
    except AudioError as exc:
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip().splitlines()[-2:]
        raise AudioError(f"{exc}{': ' + ' | '.join(err) if err else ''}") from None
    stderr = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise AudioError(f"ffmpeg decode exited {proc.returncode}: {' | '.join(stderr.splitlines()[-3:])}")
    if frames == 0:
        raise AudioError("no audio samples")
    return Levels(
        channels=channels,
        frames=frames,
        channel_db=tuple(_db(s, frames) for s in sums),
        mix_db=_db(mix_sum, frames),
    )


def _consume_wav(stream) -> tuple[int, list[float], float, int]:
    if not _is_wav(_read_exact(stream, 12)):
        raise AudioError("decoder output is not WAV")
    channels = 0
    while True:
        chunk_id, size = struct.unpack("<4sI", _read_exact(stream, 8))
        if chunk_id == b"data":
            break
        body = _read_exact(stream, size + (size & 1))
        if chunk_id == b"fmt ":
            channels = struct.unpack("<H", body[2:4])[0]
    if channels < 1:
        raise AudioError("decoder output has no channel count")
    return (channels, *_accumulate(stream, channels))


def _accumulate(stream, channels: int) -> tuple[list[float], float, int]:
    """Sum of squares per channel and of the mono mix, and frames, of s16le samples, in chunks.

    Exact integer arithmetic (int64 dot products): as fast as float32 and no rounding to argue about.
    """
    sums = [0.0] * channels
    mix_sum, frames = 0.0, 0
    frame_bytes = 2 * channels
    rest = b""
    while True:
        data = stream.read(_CHUNK)
        if not data:
            break
        data = rest + data
        usable = len(data) - len(data) % frame_bytes
        rest = data[usable:]
        x = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, channels)
        cols = [x[:, c].astype(np.int64) for c in range(channels)]
        for c, col in enumerate(cols):
            sums[c] += float(np.dot(col, col))
        mix = sum(cols[1:], cols[0])  # ffmpeg's downmix is the mean: (L + R) / 2, squared below
        mix_sum += float(np.dot(mix, mix)) / channels**2
        frames += x.shape[0]
    return sums, mix_sum, frames


def measure_pcm(data: bytes) -> Levels | None:
    """What :func:`measure` gives, read straight from a 16-bit PCM WAV at 8 kHz (no ffmpeg run);
    None for any other format (then decode it with ffmpeg).

    Connect writes exactly this format, so the original of every conversion is measured here,
    in chunks of the bytes already downloaded.
    """
    fmt = describe_wav(data[:4096])
    if not fmt.startswith(f"wav/pcm_s16le/{SAMPLE_RATE}Hz/"):
        return None
    channels = int(fmt.rsplit("/", 1)[1].removesuffix("ch"))
    pos, length = _find_chunk(data, b"data")
    if length is None:
        return None
    end = len(data) if length in (0, 0xFFFFFFFF) else min(len(data), pos + 8 + length)
    sums, mix_sum, frames = _accumulate(io.BytesIO(memoryview(data)[pos + 8 : end]), channels)
    if frames == 0:
        raise AudioError("no audio samples")
    return Levels(channels, frames, tuple(_db(x, frames) for x in sums), _db(mix_sum, frames))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def verify(
    original: Levels,
    converted: Levels,
    *,
    channels: int,
    max_duration_diff: float = 0.05,
    max_level_diff_db: float = 1.0,
) -> Verdict:
    """Does ``converted`` keep ``original``: duration, channel count, level of every channel?

    A stereo result is compared channel by channel (a silent, swapped or collapsed channel
    changes a level); a mono result is compared with the mono mix of the original.
    """
    diff = abs(converted.duration - original.duration)
    if diff > max_duration_diff:
        took = f"{converted.duration:.3f}s vs {original.duration:.3f}s"
        return Verdict(False, f"duration {took} ({diff * 1000:.0f} ms off)")
    if converted.channels != channels:
        return Verdict(False, f"{converted.channels} channel(s), expected {channels}")
    if channels == 1:
        pairs = [("mix", original.mix_db if original.channels > 1 else original.channel_db[0],
                  converted.channel_db[0])]  # fmt: skip
    else:
        if original.channels != channels:
            return Verdict(False, f"original has {original.channels} channel(s), expected {channels}")
        levels = zip(original.channel_db, converted.channel_db, strict=True)
        pairs = [(f"channel {i}", a, b) for i, (a, b) in enumerate(levels)]
    for name, before, after in pairs:
        if abs(after - before) > max_level_diff_db:
            return Verdict(False, f"{name} level {after:.1f} dBFS vs {before:.1f} dBFS in the original")
    return Verdict(True, "ok")


def _is_wav(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def _find_chunk(data: bytes, wanted: bytes) -> tuple[int, int | None]:
    """Walk the chunks of a RIFF/WAVE file's first bytes: (offset of the ``wanted`` chunk's header,
    its declared length), or (offset where ``data`` ended mid-walk, None) when it is not found."""
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, length = struct.unpack("<4sI", data[pos : pos + 8])
        if chunk_id == wanted:
            return pos, length
        pos += 8 + length + (length & 1)
    return pos, None


def describe_wav(header: bytes) -> str:
    """The format of a WAV file from its first bytes, e.g. ``wav/pcm_s16le/8000Hz/2ch``."""
    if not _is_wav(header):
        return "not-wav"
    pos, length = _find_chunk(header, b"fmt ")
    if length is None or pos + 24 > len(header):
        return "wav/unknown"
    tag, channels, rate = struct.unpack("<HHI", header[pos + 8 : pos + 16])
    bits = struct.unpack("<H", header[pos + 22 : pos + 24])[0]
    codec = {1: f"pcm_s{bits}le", 6: "pcm_alaw", 7: "pcm_mulaw", 0x11: "adpcm_ima_wav"}.get(tag, f"tag{tag}")
    return f"wav/{codec}/{rate}Hz/{channels}ch"


def wav_truncation(header: bytes, size: int) -> str | None:
    """Why a WAV file of ``size`` bytes starting with ``header`` is cut short, or None.

    A WAV header declares its data length: fewer bytes than declared means a partial upload or
    a cut file, which would otherwise convert "successfully" to the shorter audio. Streaming
    writers leave the length 0 or 0xFFFFFFFF (unknown): not judged. Non-WAV input: None
    (ffmpeg judges it).
    """
    if not _is_wav(header):
        return None
    pos, length = _find_chunk(header, b"data")
    if length is None:
        return "WAV header without a data chunk" if pos + 8 <= size else "truncated WAV header"
    have = size - (pos + 8)
    if length not in (0, 0xFFFFFFFF) and have < length:
        return f"truncated WAV: {have} of {length} data bytes"
    return None
