"""Compression presets (``RECORDINGS_PRESET``).

In place (same key, still a playable ``.wav``, so Amazon Connect's own player keeps working):
``adpcm-stereo`` (the default, IMA ADPCM 4 bit, about 4x smaller, both channels kept),
``alaw-stereo`` (G.711 A-law, 2x smaller), ``alaw-mono`` (the reference's choice: A-law mono,
4x smaller, but the agent/customer separation is lost).
Archive (new key with the right extension and content type, the original is deleted once the
archive copy is verified): ``opus-stereo`` (Opus in Ogg, both channels, more than 10x smaller).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    in_place: bool
    channels: int
    extension: str
    content_type: str
    codec_args: tuple[str, ...]

    def ffmpeg_args(self, src: str, dst: str) -> list[str]:
        """Arguments converting ``src`` into ``dst`` (audio only, metadata dropped)."""
        return ["-i", src, "-map", "0:a:0", "-vn", "-map_metadata", "-1", *self.codec_args, dst]

    def target_key(self, key: str) -> str:
        """Where the converted recording goes: the same key in place, else the key with our extension."""
        if self.in_place:
            return key
        stem = key[: -len(".wav")] if key.lower().endswith(".wav") else key
        return stem + self.extension


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # 256-byte blocks (249 frames of stereo): the padding of the last block stays under 32 ms,
        # inside the 50 ms the verification allows (ffmpeg's 1024-byte default pads up to 127 ms).
        Preset("adpcm-stereo", True, 2, ".wav", "audio/wav",
               ("-c:a", "adpcm_ima_wav", "-block_size", "256", "-ac", "2", "-ar", "8000", "-f", "wav")),
        Preset("alaw-stereo", True, 2, ".wav", "audio/wav",
               ("-c:a", "pcm_alaw", "-ac", "2", "-ar", "8000", "-f", "wav")),
        Preset("alaw-mono", True, 1, ".wav", "audio/wav",
               ("-c:a", "pcm_alaw", "-ac", "1", "-ar", "8000", "-f", "wav")),
        # libopus takes 8 kHz input natively (narrowband). 24 kbit/s for two channels of telephone
        # speech is about 13x below the 256 kbit/s of the original PCM (Ogg pages included) and keeps
        # each channel's level within ~0.5 dB; at 20 kbit/s the level drift neared the 1 dB limit.
        Preset("opus-stereo", False, 2, ".ogg", "audio/ogg",
               ("-c:a", "libopus", "-ac", "2", "-ar", "8000", "-b:a", "24k", "-application", "voip",
                "-f", "ogg")),
    )
}  # fmt: skip


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown RECORDINGS_PRESET {name!r}; expected one of {known}") from None
