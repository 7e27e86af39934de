"""One measurement per process, so that peak memory is per measurement.

``python -m benchmarks.child <kind> ...``; the answer is one tagged JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

from benchmarks.common import CDR_BUCKET, LAKE_BUCKET, TreeRssSampler, emit, hwm_bytes, read_keys


def _paths(root: Path, keys_file: Path, limit: int | None = None) -> list[str]:
    base = root / "buckets" / CDR_BUCKET
    keys = read_keys(keys_file)
    if limit is not None:
        keys = keys[:limit]
    return [str(base.joinpath(*k.split("/"))) for k in keys]


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (the pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def raw_read(args: argparse.Namespace) -> dict[str, object]:
    paths = _paths(Path(args.root), Path(args.keys))
    nbytes = 0
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as fh:
            nbytes += len(fh.read())
    seconds = time.perf_counter() - t0
    return {"objects": len(paths), "bytes": nbytes, "seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu0}


def naive(args: argparse.Namespace) -> dict[str, object]:
    """What a straightforward script does: per file json.load, a dict, a DataFrame, a Parquet file."""
    import pandas as pd

    paths = _paths(Path(args.root), Path(args.keys), args.sample)
    out = Path(tempfile.mkdtemp(prefix="naive-", dir=args.tmp))
    failed = 0
    try:
        t0 = time.perf_counter()
        for i, p in enumerate(paths):
            try:
                with open(p, "rb") as fh:
                    doc = json.load(fh)
                record = dict(doc)
            except (ValueError, TypeError):
                failed += 1  # malformed objects: a naive script skips them
                continue
            record["source_key"] = p
            pd.DataFrame([record]).to_parquet(out / f"{i}.parquet")
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"objects": len(paths), "failed": failed, "seconds": seconds}


def ingest(args: argparse.Namespace) -> dict[str, object]:
    import duckdb

    from cdr_assets import settings
    from cdr_assets.chime.ingest import ingest_delivery_day
    from cdr_assets.storage import LocalStorage

    root = Path(args.root)
    for tree in ("buckets", "object-meta"):
        shutil.rmtree(root / tree / LAKE_BUCKET, ignore_errors=True)
    db = Path(args.db)
    for f in (db, db.with_name(db.name + ".wal")):
        f.unlink(missing_ok=True)
    storage = LocalStorage(root)
    conn = duckdb.connect(str(db))
    day = date.fromisoformat(args.day)

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    cpu0 = _cpu_seconds()
    with TreeRssSampler() as sampler:
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        report = ingest_delivery_day(
            storage,
            conn,
            cdr_bucket=CDR_BUCKET,
            lake_bucket=LAKE_BUCKET,
            delivery_day=day,
            duckdb_memory_limit=settings.DEFAULTS["CDR_INGEST_DUCKDB_MEMORY_LIMIT"],  # as deployed
        )
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    conn.close()
    if profiler:
        profiler.dump_stats(args.profile)

    accounted = report.rows_written + report.quarantined + report.duplicates_dropped
    problems = []
    if not report.balanced:
        problems.append("report not balanced")
    if accounted != args.expect or report.objects_in != args.expect:
        problems.append(f"objects_in={report.objects_in}, accounted={accounted}, expected {args.expect}")
    return {
        "objects": report.objects_in,
        "objects_listed": report.objects_listed,
        "rows_written": report.rows_written,
        "quarantined": report.quarantined,
        "duplicates": report.duplicates_dropped,
        "balanced": report.balanced,
        "files_written": len(report.files_written),
        "bytes_read": report.bytes_read,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "report_seconds": report.seconds,
        **sampler.figures(),
        "problems": problems,
    }


class _CountingStorage:
    """Counts what a sensor tick asks of the store: listing calls and keys returned."""

    def __init__(self, inner: object):
        self._inner = inner
        self.list_calls = 0
        self.keys_listed = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def list_prefixes(self, bucket: str, prefix: str = "", delimiter: str = "/") -> list[str]:
        self.list_calls += 1
        out = self._inner.list_prefixes(bucket, prefix, delimiter)  # type: ignore[attr-defined]
        self.keys_listed += len(out)
        return out

    def list_objects(self, bucket: str, prefix: str = "", *, start_after: str | None = None):
        self.list_calls += 1
        for obj in self._inner.list_objects(bucket, prefix, start_after=start_after):  # type: ignore[attr-defined]
            self.keys_listed += 1
            yield obj

    def reset(self) -> None:
        self.list_calls = self.keys_listed = 0


def sensor(args: argparse.Namespace) -> dict[str, object]:
    from cdr_assets.chime.discovery import Cursor, discover
    from cdr_assets.chime.generate import cdr_key
    from cdr_assets.chime.keys import voice_connector_of_prefix
    from cdr_assets.chime.schema import CDR_PREFIX
    from cdr_assets.storage import LocalStorage

    local = LocalStorage(args.root)
    storage = _CountingStorage(local)
    day = date.fromisoformat(args.day)
    out: dict[str, object] = {}

    def tick(name: str, cursor: Cursor) -> Cursor:
        storage.reset()
        t0 = time.perf_counter()
        requests, nxt, stats = discover(storage, CDR_BUCKET, cursor, today=day, lookback_days=2)  # type: ignore[arg-type]
        out[name] = {
            "seconds": time.perf_counter() - t0,
            "new_objects": stats.new_objects,
            "swept_keys": stats.swept_keys,
            "keys_listed": storage.keys_listed,
            "list_calls": storage.list_calls,
            "runs_requested": len(requests),
            "cursor_bytes": len(nxt.to_json()),
        }
        return nxt

    vcs = [voice_connector_of_prefix(p) for p in local.list_prefixes(CDR_BUCKET, CDR_PREFIX)]
    # New deliveries at the end of the day: keys sort after every key the cursor has seen.
    late_in_day = datetime(day.year, day.month, day.day, 23, 59, 59, 999000)
    payload = local.get(CDR_BUCKET, read_keys(Path(args.keys))[0])
    added = [
        cdr_key(vcs[i % len(vcs)], late_in_day, f"ffffffff-ffff-4fff-bfff-{i:012x}") for i in range(args.new)
    ]
    for key in added:  # left behind by a run killed half-way, if any: the cached set stays pristine
        local.delete(CDR_BUCKET, key)

    cursor = tick("first_tick", Cursor())
    cursor = tick("nothing_new", cursor)
    try:
        for key in added:
            local.put(CDR_BUCKET, key, payload)
        tick("new_objects", cursor)
    finally:
        for key in added:
            local.delete(CDR_BUCKET, key)
    out["added"] = len(added)
    return out


def s3(args: argparse.Namespace) -> dict[str, object]:
    from cdr_assets.chime.generate import generate_cdrs
    from cdr_assets.chime.ingest import full_day_ranges, list_range
    from cdr_assets.chime.read import read_objects
    from cdr_assets.storage import S3Storage

    storage = S3Storage(endpoint_url=args.endpoint, region_name="us-east-1")
    storage.ensure_bucket(CDR_BUCKET)
    t0 = time.perf_counter()
    summary = generate_cdrs(
        storage,
        CDR_BUCKET,
        calls=args.calls,
        days=1,
        start=date.fromisoformat(args.start),
        seed=1,
        bad_fraction=0.01,
        late_fraction=0.0,
    )
    put_seconds = time.perf_counter() - t0
    day = date.fromisoformat(max(summary.per_delivery_day.items(), key=lambda kv: kv[1])[0])
    ranges = full_day_ranges(storage, CDR_BUCKET, day)
    objects = [o for r in ranges for o in list_range(storage, CDR_BUCKET, r)]
    objects.sort(key=lambda o: o.key)
    if len(objects) != summary.per_delivery_day[day.isoformat()]:
        raise RuntimeError(f"listed {len(objects)} objects of {day}, expected {summary.per_delivery_day}")

    t0 = time.perf_counter()
    seq_bytes = sum(len(storage.get(CDR_BUCKET, o.key)) for o in objects)
    seq_seconds = time.perf_counter() - t0

    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(lambda o: storage.get(CDR_BUCKET, o.key), objects[:64]))  # open the connections
        t0 = time.perf_counter()
        conc_bytes = sum(len(b) for b in pool.map(lambda o: storage.get(CDR_BUCKET, o.key), objects))
        conc_seconds = time.perf_counter() - t0
    if conc_bytes != seq_bytes:
        raise RuntimeError(f"concurrent reads got {conc_bytes} bytes, sequential {seq_bytes}")

    t0 = time.perf_counter()
    result = read_objects(storage, CDR_BUCKET, objects, day, workers=args.workers)
    project_seconds = time.perf_counter() - t0
    read_rows = result.rows.num_rows + result.quarantine.num_rows
    if read_rows != len(objects):
        raise RuntimeError(f"read_objects returned {read_rows} rows for {len(objects)} objects")
    out: dict[str, object] = {}
    if args.latency_endpoint:
        # The same objects through a proxy that adds S3-like latency to each request.
        slow = S3Storage(endpoint_url=args.latency_endpoint, region_name="us-east-1")
        sample = objects[: args.latency_objects]
        slow.get(CDR_BUCKET, sample[0].key)
        t0 = time.perf_counter()
        for o in sample:
            slow.get(CDR_BUCKET, o.key)
        out["latency_sequential_seconds"] = time.perf_counter() - t0
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda o: slow.get(CDR_BUCKET, o.key), sample[:64]))
            t0 = time.perf_counter()
            list(pool.map(lambda o: slow.get(CDR_BUCKET, o.key), sample))
            out["latency_concurrent_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        read_objects(slow, CDR_BUCKET, sample, day, workers=args.workers)
        out["latency_project_seconds"] = time.perf_counter() - t0
        out["latency_objects"] = len(sample)
    return {
        **out,
        "objects_put": summary.objects_written,
        "put_seconds": put_seconds,
        "objects": len(objects),
        "sequential_seconds": seq_seconds,
        "concurrent_seconds": conc_seconds,
        "project_seconds": project_seconds,
        "threads": args.threads,
        "workers": args.workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child")
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind in ("raw_read", "naive", "ingest", "sensor"):
        p = sub.add_parser(kind)
        p.add_argument("--root", required=True)
        p.add_argument("--keys", required=True)
        p.add_argument("--day", required=True)
    sub.choices["naive"].add_argument("--sample", type=int, default=5000)
    sub.choices["naive"].add_argument("--tmp", default=None)
    sub.choices["ingest"].add_argument("--db", required=True)
    sub.choices["ingest"].add_argument("--expect", type=int, required=True)
    sub.choices["ingest"].add_argument("--profile", default=None)
    sub.choices["sensor"].add_argument("--new", type=int, default=1000)
    p = sub.add_parser("s3")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--latency-endpoint", default=None)
    p.add_argument("--latency-objects", type=int, default=1000)
    args = parser.parse_args()

    fn = {"raw_read": raw_read, "naive": naive, "ingest": ingest, "sensor": sensor, "s3": s3}[args.kind]
    result = fn(args)
    result.setdefault("hwm_self_mb", round(hwm_bytes() / 2**20, 1))
    result["pid"] = os.getpid()
    emit(result)


if __name__ == "__main__":
    main()
