"""Synthetic Amazon Connect call recordings: 8 kHz 16-bit stereo WAV, customer left, agent right.

The two channels differ audibly and in level (a louder, pitch-varying "customer" on the left,
a quieter "agent" on the right, talking in turns), so a swapped, silent or collapsed channel
shows in the verification. Written with the standard ``wave`` module, a second at a time.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
import uuid
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import orjson

from cdr_assets.connect.generate import VoiceContact
from cdr_assets.recordings.audio import run_ffmpeg
from cdr_assets.storage import Storage

RATE = 8000


def recording_key(alias: str, contact_id: str, started: datetime) -> str:
    """``connect/<alias>/CallRecordings/YYYY/MM/DD/<ContactId>_<YYYYMMDD>T<HH:MM>_UTC.wav`` (UTC)."""
    return (
        f"connect/{alias}/CallRecordings/{started:%Y/%m/%d}/"
        f"{contact_id}_{started:%Y%m%d}T{started:%H:%M}_UTC.wav"
    )


def synth_stereo(seconds: float, seed: int = 0) -> np.ndarray:
    """Frames x 2 int16: left (customer) tones about -9 dBFS, right (agent) about -21 dBFS."""
    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * RATE))
    t = np.arange(n) / RATE
    f_left, f_right = 300 + 200 * rng.random(), 700 + 300 * rng.random()
    left = 0.5 * np.sin(2 * np.pi * f_left * t + 3 * np.sin(2 * np.pi * 0.7 * t))
    left += 0.1 * np.sin(2 * np.pi * 2.3 * f_left * t)
    right = 0.12 * np.sin(2 * np.pi * f_right * t) + 0.03 * np.sin(2 * np.pi * 1300 * t)
    return (np.stack([left, right], axis=1) * 32767).astype("<i2")


def wav_bytes(frames: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(frames.shape[1] if frames.ndim == 2 else 1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())
    return buf.getvalue()


@dataclass(frozen=True)
class Contact:
    contact_id: str
    started: datetime
    talk_seconds: float


@dataclass
class RecordingSummary:
    recordings: int = 0
    bytes_written: int = 0
    agent_recordings: int = 0


def write_recordings(
    storage: Storage, bucket: str, alias: str, contacts: Iterable[Contact], *, seed: int = 0
) -> RecordingSummary:
    """One recording per contact, of its talk duration, as Connect writes them."""
    summary = RecordingSummary()
    for i, contact in enumerate(contacts):
        data = wav_bytes(synth_stereo(contact.talk_seconds, seed=seed + i))
        storage.put(bucket, recording_key(alias, contact.contact_id, contact.started), data,
                    content_type="audio/wav")  # fmt: skip
        summary.recordings += 1
        summary.bytes_written += len(data)
    return summary


def generate_recordings(
    storage: Storage,
    bucket: str,
    *,
    count: int,
    days: int,
    start: date,
    seed: int = 0,
    alias: str = "demo-instance",
    max_seconds: float = 20.0,
) -> RecordingSummary:
    """``count`` recordings spread over ``days`` days from ``start``, talk times capped at ``max_seconds``."""
    rng = random.Random(seed)
    contacts = []
    for _ in range(count):
        started = datetime(start.year, start.month, start.day) + timedelta(
            days=rng.randrange(max(1, days)), seconds=rng.randrange(86400)
        )
        talk = min(max_seconds, 2 + rng.expovariate(1 / 60))
        contacts.append(Contact(str(uuid.UUID(int=rng.getrandbits(128), version=4)), started, round(talk, 3)))
    return write_recordings(storage, bucket, alias, contacts, seed=seed)


def agent_mp4(path: str, seconds: float, *, seed: int = 0) -> None:
    """A small screen recording: a test pattern (mpeg4) with AAC audio, a tone a seed apart."""
    tone = 300 + (seed % 7) * 60
    run_ffmpeg([
        "-f", "lavfi", "-i", f"testsrc=s=96x64:r=5:d={seconds:.3f}",
        "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=44100:duration={seconds:.3f}",
        "-c:v", "mpeg4", "-c:a", "aac", "-b:a", "48k", "-shortest", "-f", "mp4", path,
    ])  # fmt: skip


def write_contact_media(
    storage: Storage,
    bucket: str,
    contacts: list[VoiceContact],
    *,
    fraction: float,
    alias: str = "demo-instance",
    agent_prefix: str = "agent-recordings/",
    max_seconds: float = 10.0,
    max_after_call_seconds: float = 3.0,
    seed: int = 0,
) -> RecordingSummary:
    """For ``fraction`` of ``contacts``: the Connect call recording and the agent's screen recording.

    The call audio lasts the talk time (capped at ``max_seconds`` to keep data small); the screen
    recording starts a little before the call and runs on through (capped) after-call work. Its
    sidecar gives ``call_end_offset`` for half of them and ``recording_started_at`` for the rest;
    the latter is placed so that the CTR's DisconnectTimestamp minus it lands on the call end.
    """
    rng = random.Random(seed)
    summary = RecordingSummary()
    chosen = [c for c in contacts if rng.random() < fraction]
    with tempfile.TemporaryDirectory(prefix="generate-media-") as tmp:
        for i, c in enumerate(chosen):
            talk = min(max_seconds, max(1.0, (c.disconnect_at - c.connected_at).total_seconds()))
            call = wav_bytes(synth_stereo(talk, seed=seed + i))
            started = c.connected_at.astimezone(UTC).replace(tzinfo=None)
            storage.put(bucket, recording_key(alias, c.contact_id, started), call, content_type="audio/wav")
            lead = round(rng.uniform(0.5, 2.0), 3)
            after = round(min(max_after_call_seconds, max(1.0, c.after_call_seconds)), 3)
            rec_start = c.disconnect_at - timedelta(seconds=talk + lead)
            key = f"{agent_prefix}{rec_start:%Y/%m/%d}/{c.agent_id}/{c.contact_id}"
            path = os.path.join(tmp, f"{i}.mp4")
            agent_mp4(path, lead + talk + after, seed=seed + i)
            with open(path, "rb") as fh:
                video = fh.read()
            if i % 2 == 0:
                sidecar = {"call_end_offset": format_offset(lead + talk)}
            else:
                sidecar = {"recording_started_at": rec_start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            storage.put(bucket, key + ".json", orjson.dumps(sidecar), content_type="application/json")
            storage.put(bucket, key + ".mp4", video, content_type="video/mp4")
            summary.recordings += 1
            summary.agent_recordings += 1
            summary.bytes_written += len(call) + len(video)
    return summary


def format_offset(seconds: float) -> str:
    """Seconds as ``HH:MM:SS.mmm``."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
