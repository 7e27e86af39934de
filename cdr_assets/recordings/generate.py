"""Synthetic Amazon Connect call recordings: 8 kHz 16-bit stereo WAV, customer left, agent right.

The two channels differ audibly and in level (a louder, pitch-varying "customer" on the left,
a quieter "agent" on the right, talking in turns), so a swapped, silent or collapsed channel
shows in the verification. Written with the standard ``wave`` module, a second at a time.
"""

from __future__ import annotations

import io
import random
import uuid
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

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
