"""Synthetic Amazon Connect call recordings: 8 kHz 16-bit stereo WAV, customer left, agent right.

The two channels differ audibly and in level (a louder, higher "customer" voice on the left, a
quieter, lower "agent" voice on the right, talking in turns), so a swapped, silent or collapsed
channel shows in the verification. Written with the standard ``wave`` module, a second at a time.
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


_BLOCK_SECONDS = 30  # generated a block at a time: memory stays small for long recordings
# Formants (centre Hz, bandwidth Hz, gain) of two different voices.
_CUSTOMER = ((700, 120, 1.0), (1200, 150, 0.6), (2600, 200, 0.3))
_AGENT = ((500, 100, 1.0), (1500, 150, 0.5), (2400, 200, 0.25))


def _voice(n: int, rng: np.random.Generator, f0: float, formants, t0: float) -> np.ndarray:
    """Speech-like sound: a glottal pulse train with drifting pitch and breath noise, shaped by
    formant resonances (in the frequency domain), at syllable rate."""
    t = t0 + np.arange(n) / RATE
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.3 * t))
    phase = np.cumsum(pitch / RATE)
    source = (np.diff(np.floor(phase), prepend=np.floor(phase[0])) > 0) + 0.05 * rng.standard_normal(n)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    envelope = sum(g / (1 + ((freqs - fc) / bw) ** 2) for fc, bw, g in formants)
    shaped = np.fft.irfft(np.fft.rfft(source) * envelope, n)
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.7
    return shaped * syllables


def synth_stereo(seconds: float, seed: int = 0) -> np.ndarray:
    """Frames x 2 int16 of a conversation: customer (left, about -18 dBFS) and agent (right, about
    -30 dBFS) talk in turns of 1-6 s, each faintly audible while the other talks.

    Speech-like rather than pure tones, so codecs built for speech (Opus/SILK) behave as they do
    on real calls.
    """
    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * RATE))
    f_customer, f_agent = 180 + 60 * rng.random(), 110 + 30 * rng.random()
    turn = np.zeros(n)
    pos, who = 0, 1.0
    while pos < n:
        length = int(rng.uniform(1, 6) * RATE)
        turn[pos : pos + length] = who
        pos, who = pos + length, 1.0 - who
    out = np.empty((n, 2))
    block = _BLOCK_SECONDS * RATE
    for start in range(0, n, block):
        m = min(block, n - start)
        t0 = start / RATE
        out[start : start + m, 0] = _voice(m, rng, f_customer, _CUSTOMER, t0)
        out[start : start + m, 1] = _voice(m, rng, f_agent, _AGENT, t0)
    out[:, 0] *= 0.1 + 0.9 * turn
    out[:, 1] *= 0.1 + 0.9 * (1 - turn)
    for channel, level_db in ((0, -18.0), (1, -30.0)):
        rms = float(np.sqrt(np.mean(out[:, channel] ** 2))) or 1.0
        out[:, channel] *= 10 ** (level_db / 20) / rms
    return (np.clip(out, -1, 1) * 32767).astype("<i2")


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
    chosen = [c for c in contacts if rng.random() < fraction]
    talks = [min(max_seconds, max(1.0, (c.disconnect_at - c.connected_at).total_seconds())) for c in chosen]
    calls = [
        Contact(c.contact_id, c.connected_at.astimezone(UTC).replace(tzinfo=None), talk)
        for c, talk in zip(chosen, talks, strict=True)
    ]
    summary = write_recordings(storage, bucket, alias, calls, seed=seed)
    with tempfile.TemporaryDirectory(prefix="generate-media-") as tmp:
        for i, (c, talk) in enumerate(zip(chosen, talks, strict=True)):
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
            summary.agent_recordings += 1
            summary.bytes_written += len(video)
    return summary


def format_offset(seconds: float) -> str:
    """Seconds as ``HH:MM:SS.mmm``."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
