"""Recording compression: the asset's end-to-end throughput against bare ffmpeg, and sizes per preset.

The same generated recordings (default 2 hours of audio in 5-minute calls, 8 kHz 16-bit stereo
WAV as Connect writes them, cached under ``<data-dir>/recordings/``) are
- transcoded by bare ``ffmpeg`` with the preset's arguments, one process per core (the
  baseline: nothing but the conversion), and
- compressed by ``compress_day``, the function behind the ``recordings_compression`` asset, with
  one worker per core: listing, reading each object, converting, decoding and verifying the result
  against the original, writing it with metadata and storage class, reading it back, recording
  the outcome in DuckDB,
in the same run. ``recordings_vs_bare_ffmpeg`` is the ratio of the two throughputs for the
default preset (``RECORDINGS_PRESET``); the target is >= 0.5. The size ratio is original bytes /
compressed bytes per preset.

Standalone: ``python -m benchmarks.recordings [--recording-hours H] [--recording-call-minutes M]``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from cdr_assets import settings
from cdr_assets.recordings import generate
from cdr_assets.recordings.audio import run_ffmpeg
from cdr_assets.recordings.compress import compress_day
from cdr_assets.recordings.generate import recording_key, synth_stereo, wav_bytes
from cdr_assets.recordings.presets import PRESETS
from cdr_assets.storage import LocalStorage

DAY = date(2026, 1, 5)
BUCKET = "connect"
TARGET = 0.5
REPEATS = 3


def _source(root: Path, hours: float, call_minutes: float) -> tuple[Path, list[Path], float]:
    """The folder of the cached originals (generated once), their files and total audio seconds."""
    calls = max(1, round(hours * 60 / call_minutes))
    seconds = call_minutes * 60
    # The folder names the generator's code too: a change of the synthetic audio regenerates it.
    version = hashlib.sha1(inspect.getsource(generate).encode()).hexdigest()[:8]
    folder = root / f"source-{calls}x{seconds:g}s-{version}"
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        for i in range(calls):
            started = datetime(DAY.year, DAY.month, DAY.day) + timedelta(minutes=i * call_minutes)
            path = folder / recording_key("bench", f"{i:08d}-0000-4000-8000-000000000000", started)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wav_bytes(synth_stereo(seconds, seed=i)))
        done.write_text("ok\n")
    return folder, sorted(folder.rglob("*.wav")), calls * seconds


def _bare(files: list[Path], preset, out: Path) -> tuple[float, int]:
    """Wall seconds and output bytes of transcoding every file, one ffmpeg per core."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def one(item: tuple[int, Path]) -> int:
        dst = out / f"{item[0]}{preset.extension}"
        run_ffmpeg(preset.ffmpeg_args(str(item[1]), str(dst)))
        return dst.stat().st_size

    t0 = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        size = sum(pool.map(one, enumerate(files)))
    return time.perf_counter() - t0, size


def _end_to_end(files: list[Path], source_root: Path, preset, work: Path) -> tuple[float, int, int, int]:
    """Wall seconds, converted count, bytes before and after of ``compress_day`` over local storage."""
    shutil.rmtree(work, ignore_errors=True)
    bucket_root = work / "buckets" / BUCKET
    for f in files:  # a fresh copy of the originals: the asset replaces them in place
        dst = bucket_root / f.relative_to(source_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    storage = LocalStorage(str(work))
    conn = duckdb.connect(str(work / "warehouse.duckdb"))
    try:
        t0 = time.perf_counter()
        report = compress_day(storage, conn, bucket=BUCKET, day=DAY, preset=preset,
                              storage_class="STANDARD_IA", max_attempts=3)  # fmt: skip
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    if report.failures:
        raise RuntimeError(f"compression failed in the benchmark: {report.failures[:3]}")
    return seconds, report.converted, report.bytes_before, report.bytes_after


def run(args: argparse.Namespace) -> list[str]:
    root = Path(getattr(args, "data_dir", "bench-data")) / "recordings"
    hours = float(getattr(args, "recording_hours", 2.0))
    minutes = float(getattr(args, "recording_call_minutes", 5.0))
    source_root, files, audio_s = _source(root, hours, minutes)
    default = settings.get("RECORDINGS_PRESET")
    lines = [
        f"recordings_audio={audio_s / 3600:.1f} h in {len(files)} calls of {minutes:g} min "
        f"({sum(f.stat().st_size for f in files) / 2**20:.0f} MiB of 8 kHz 16-bit stereo WAV), "
        f"{os.cpu_count()} parallel ffmpeg processes in both measurements"
    ]
    headline = None
    for name, preset in PRESETS.items():
        # The default preset's ratio is the headline: bare and asset alternate REPEATS times and
        # the medians are compared (one pair of ~10 s runs swings by +-10 % on 2 shared cores).
        runs = []
        for _ in range(REPEATS if name == default else 1):
            bare_s, bare_bytes = _bare(files, preset, root / "bare-out")
            e2e_s, converted, before, after = _end_to_end(files, source_root, preset, root / "run")
            assert converted == len(files), (name, converted)
            runs.append((bare_s, e2e_s))
        bare_s = statistics.median(b for b, _ in runs)
        e2e_s = statistics.median(e for _, e in runs)
        ratio = bare_s / e2e_s
        if name == default:
            headline = ratio
        lines += [
            f"recordings_{name}_bare_ffmpeg_audio_x_realtime={audio_s / bare_s:.0f}",
            f"recordings_{name}_asset_audio_x_realtime={audio_s / e2e_s:.0f}",
            f"recordings_{name}_vs_bare_ffmpeg={ratio:.2f}"
            + (
                f" (median of {len(runs)} alternating runs: {', '.join(f'{b / e:.2f}' for b, e in runs)})"
                if len(runs) > 1
                else ""
            ),
            f"recordings_{name}_size_ratio={before / after:.1f} (original / compressed bytes; "
            f"bare ffmpeg output {before / bare_bytes:.1f})",
        ]
    shutil.rmtree(root / "bare-out", ignore_errors=True)
    shutil.rmtree(root / "run", ignore_errors=True)
    if headline is not None:
        lines.append(
            f"recordings_vs_bare_ffmpeg={headline:.2f} (preset {default}; target >= {TARGET}: "
            f"{'met' if headline >= TARGET else 'NOT met'})"
        )
    lines.append(f"recordings_load_average={os.getloadavg()[0]:.1f} (1 min, {os.cpu_count()} cores)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recordings", description=__doc__)
    parser.add_argument("--data-dir", default="bench-data")
    parser.add_argument("--recording-hours", type=float, default=2.0)
    parser.add_argument("--recording-call-minutes", type=float, default=5.0)
    for line in run(parser.parse_args()):
        print(line, flush=True)


if __name__ == "__main__":
    main()
