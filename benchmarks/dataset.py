"""The generated landing zone, cached under the data dir and reused while its parameters match."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import cdr_assets.chime.generate as generate_module
from benchmarks.common import CDR_BUCKET
from cdr_assets.chime.generate import generate_cdrs
from cdr_assets.chime.ingest import full_day_ranges, list_range
from cdr_assets.storage import LocalStorage

START = date(2024, 3, 5)  # a Tuesday
SEED = 1
MARKER = "bench-set.json"


@dataclass
class DataSet:
    root: Path  # LocalStorage root: buckets/chime-cdrs holds the landing zone
    day: date  # the delivery day with the most objects
    keys_file: Path  # keys of that day, sorted, one a line
    objects: int  # objects in that day
    objects_total: int  # objects in the whole set
    per_delivery_day: dict[str, int]
    generated_seconds: float | None  # None when the cached set was reused

    @property
    def storage(self) -> LocalStorage:
        return LocalStorage(self.root)

    def paths(self) -> list[str]:
        base = self.storage.bucket_path(CDR_BUCKET)
        return [str(base.joinpath(*k.split("/"))) for k in self.keys_file.read_text().splitlines()]


def _params(calls: int) -> dict[str, object]:
    return {
        "calls": calls,
        "days": 1,
        "start": START.isoformat(),
        "seed": SEED,
        "bad_fraction": 0.01,
        "late_fraction": 0.0,
        # Regenerate when the generator's code changes: same seed no longer means same bytes.
        "generator_sha256": hashlib.sha256(Path(generate_module.__file__).read_bytes()).hexdigest(),
    }


def ensure_set(data_dir: Path, calls: int) -> DataSet:
    root = (data_dir / f"landing-{calls}").resolve()
    marker = root / MARKER
    params = _params(calls)
    doc = None
    if marker.is_file():
        doc = json.loads(marker.read_text())
        if doc.get("params") != params:
            doc = None
    seconds = None
    if doc is None:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        t0 = time.perf_counter()
        summary = generate_cdrs(
            LocalStorage(root),
            CDR_BUCKET,
            calls=calls,
            days=1,
            start=START,
            seed=SEED,
            bad_fraction=0.01,
            late_fraction=0.0,
        )
        seconds = time.perf_counter() - t0
        day = date.fromisoformat(max(summary.per_delivery_day.items(), key=lambda kv: kv[1])[0])
        storage = LocalStorage(root)
        ranges = full_day_ranges(storage, CDR_BUCKET, day)
        keys = sorted(o.key for r in ranges for o in list_range(storage, CDR_BUCKET, r))
        if len(keys) != summary.per_delivery_day[day.isoformat()]:
            raise RuntimeError(f"listed {len(keys)} keys of {day}; generated {summary.per_delivery_day}")
        (root / "day-keys.txt").write_text("\n".join(keys) + "\n")
        doc = {
            "params": params,
            "day": day.isoformat(),
            "objects": len(keys),
            "objects_total": summary.objects_written,
            "per_delivery_day": summary.per_delivery_day,
            "generated_seconds": round(seconds, 2),
        }
        marker.write_text(json.dumps(doc, indent=1))  # last: a half-made set has no marker
    return DataSet(
        root=root,
        day=date.fromisoformat(doc["day"]),
        keys_file=root / "day-keys.txt",
        objects=doc["objects"],
        objects_total=doc["objects_total"],
        per_delivery_day=doc["per_delivery_day"],
        generated_seconds=seconds,
    )


def warm_up(ds: DataSet) -> int:
    """Read every file of the day once so that all measurements read from the page cache."""
    nbytes = 0
    for p in ds.paths():
        with open(p, "rb") as fh:
            nbytes += len(fh.read())
    # The listings stat every entry; do one so directory and inode caches are warm too.
    storage = ds.storage
    for r in full_day_ranges(storage, CDR_BUCKET, ds.day):
        list_range(storage, CDR_BUCKET, r)
    return nbytes
