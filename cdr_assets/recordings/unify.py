"""Unified call recording (REFERENCE.md section 5): Connect call audio + the agent's screen recording.

The call audio (8 kHz stereo WAV) is followed by the after-call part of the agent recording's
audio (from the call-end offset to its end); both are decoded and resampled to one format
before they are joined (the reference concatenated the bytes of two different formats), then
muxed with the agent recording's video (stream copied) as AAC; a PNG thumbnail is taken at 1 s.
The result is verified: it has a video stream and its audio lasts the call
plus the after-call part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cdr_assets.recordings.audio import AudioError, measure, run_ffmpeg

_RATE = 48000  # what both audio parts are resampled to before they are joined
THUMBNAIL_AT = 1.0  # seconds into the agent recording


def parse_offset(text: str) -> float:
    """``HH:MM:SS`` (seconds may have a fraction) to seconds."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"call-end offset {text!r} is not HH:MM:SS")
    hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    if hours < 0 or not 0 <= minutes < 60 or not 0 <= seconds < 60:
        raise ValueError(f"call-end offset {text!r} is out of range")
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Unified:
    video: Path
    thumbnail: Path
    call_seconds: float
    after_call_seconds: float
    duration: float


def unify(
    call_wav: str | os.PathLike[str],
    agent_mp4: str | os.PathLike[str],
    call_end_offset: float,
    workdir: str | os.PathLike[str],
    *,
    tolerance: float = 0.1,
) -> Unified:
    """Write ``recording.mp4`` and ``thumbnail.png`` into ``workdir``; raise AudioError on any failure."""
    out_dir = Path(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, thumb = out_dir / "recording.mp4", out_dir / "thumbnail.png"
    call = measure(call_wav)
    agent = measure(agent_mp4)
    after = agent.duration - call_end_offset
    if call_end_offset < 0 or after < 0:
        raise AudioError(
            f"call-end offset {call_end_offset:.3f}s is outside the agent recording ({agent.duration:.3f}s)"
        )
    fmt = f"aresample={_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
    graph = (
        f"[0:a:0]{fmt}[call];"
        f"[1:a:0]atrim=start={call_end_offset:.6f},asetpts=PTS-STARTPTS,{fmt}[after];"
        "[call][after]concat=n=2:v=0:a=1[a]"
    )
    run_ffmpeg(
        ["-i", str(call_wav), "-i", str(agent_mp4), "-filter_complex", graph,
         "-map", "1:v:0", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", "-b:a", "96k",
         "-movflags", "+faststart", "-f", "mp4", str(video)]
    )  # fmt: skip
    at = min(THUMBNAIL_AT, agent.duration / 2)  # at 1 s, or mid-way through a shorter recording
    run_ffmpeg(["-ss", f"{at:.3f}", "-i", str(agent_mp4), "-map", "0:v:0", "-frames:v", "1", "-f", "image2",
                "-c:v", "png", str(thumb)])  # fmt: skip
    run_ffmpeg(["-i", str(video), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"])  # has a video stream
    result = measure(video)
    expected = call.duration + after
    if abs(result.duration - expected) > tolerance:
        raise AudioError(f"unified audio lasts {result.duration:.3f}s, expected {expected:.3f}s")
    if result.channels != 2:
        raise AudioError(f"unified audio has {result.channels} channel(s), expected 2")
    return Unified(video, thumb, call.duration, after, result.duration)
