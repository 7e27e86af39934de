"""``make bench``: ingestion against the machine's read limit and a naive baseline, S3 reads, sensor ticks.

Every figure is printed as ``name=value`` (value first, words after it are comments); every
other line starts with ``#``. Each measurement runs in a fresh subprocess so that its peak
memory is its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.common import RESULT_TAG
from benchmarks.dataset import START, DataSet, ensure_set, warm_up
from benchmarks.s3server import S3_ENV, latency_proxy, moto_server

PROJECT = Path(__file__).resolve().parents[1]
TARGET_VS_RAW = 0.7
TARGET_VS_NAIVE = 2.5
TARGET_S3_CONCURRENCY = 5.0
TARGET_1M_MIB = 1536  # 1.5 GiB
SENSOR_LIMIT_S = 60.0

table: list[tuple[str, str, str]] = []  # (figure, value, target) for the closing summary


def note(text: str) -> None:
    for line in text.splitlines() or [""]:
        print(f"# {line}".rstrip(), flush=True)


def fig(name: str, value: object, extra: str = "", *, row: str | None = None, target: str = "") -> None:
    if isinstance(value, float):
        a = abs(value)
        value = f"{value:.3g}" if a < 10 else f"{value:.0f}" if a >= 1000 else f"{value:.1f}"
    print(f"{name}={value}" + (f" {extra}" if extra else ""), flush=True)
    if row:
        table.append((row, f"{value}", target))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run_child(kind: str, *args: object, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.child", kind, *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=PROJECT, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise RuntimeError(f"benchmark child {kind} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def day_args(ds: DataSet) -> list[str]:
    return ["--root", str(ds.root), "--keys", str(ds.keys_file), "--day", ds.day.isoformat()]


def describe_set(ds: DataSet, label: str, suffix: str) -> None:
    if ds.generated_seconds is not None:
        fig(
            f"generate_seconds{suffix}",
            ds.generated_seconds,
            f"({ds.objects_total} objects, {ds.objects_total / ds.generated_seconds:.0f} objects/s)",
        )
    else:
        note(f"{label}: reusing the data set cached in {ds.root}")
    note(f"{label}: {ds.objects_total} objects, per delivery day {ds.per_delivery_day}")
    fig(f"objects_in_day{suffix}", ds.objects, f"(delivery day {ds.day})")


def run_ingest(ds: DataSet, work: Path, profile: Path | None = None) -> dict[str, Any]:
    args = [*day_args(ds), "--db", work / f"ingest-{ds.objects}.duckdb", "--expect", ds.objects]
    if profile is not None:
        args += ["--profile", profile]
    res = run_child("ingest", *args)
    if res["problems"]:
        raise RuntimeError(f"ingest result is wrong: {res['problems']}")
    res["rss_mb"] = max(res["rss_tree_peak_mb"], res["hwm_self_mb"])
    return res


def bench_local(args: argparse.Namespace, data_dir: Path, work: Path) -> DataSet:
    note(f"== Local mode: {args.objects} generated calls in one day ==")
    ds = ensure_set(data_dir, args.objects)
    describe_set(ds, "data set", "")
    t0 = time.perf_counter()
    nbytes = warm_up(ds)
    note(
        f"warm-up: read all {ds.objects} files of the day once ({nbytes / 2**20:.1f} MiB, "
        f"{time.perf_counter() - t0:.1f} s); every measurement below reads from the page cache"
    )
    fig("bytes_in_day_mb", nbytes / 2**20)

    raw = run_child("raw_read", *day_args(ds))
    raw_rate = raw["objects"] / raw["seconds"]
    fig(
        "raw_read_objects_per_s",
        raw_rate,
        f"({raw['objects']} files, {raw['seconds']:.2f} s, "
        f"{raw['bytes'] / 2**20 / raw['seconds']:.0f} MiB/s; "
        "sequential open+read, one process)",
        row="raw sequential read, objects/s",
    )

    sample = min(args.naive_sample, ds.objects)
    naive = run_child("naive", *day_args(ds), "--sample", sample, "--tmp", work)
    naive_rate = naive["objects"] / naive["seconds"]
    note(
        f"naive: per file json.load + dict + pandas.DataFrame([dict]) + to_parquet (one Parquet file "
        f"each), on the first {sample} files of the day ({naive['failed']} malformed ones skipped)"
    )
    fig(
        "naive_objects_per_s",
        naive_rate,
        f"({naive['objects']} files, {naive['seconds']:.2f} s)",
        row=f"naive per-file baseline, objects/s (sample of {sample})",
    )

    ing = run_ingest(ds, work)
    ing_rate = ing["objects"] / ing["seconds"]
    note(
        "ingest: ingest_delivery_day in replace mode, fresh DuckDB file and lake bucket, "
        f"{os.cpu_count()} worker processes; wall time includes listing and the final commit"
    )
    fig(
        "ingest_objects_per_s",
        ing_rate,
        f"({ing['objects']} objects, {ing['seconds']:.2f} s)",
        row="project ingestion, objects/s",
    )
    fig("ingest_seconds", ing["seconds"])
    fig(
        "ingest_cpu_seconds",
        ing["cpu_seconds"],
        f"(main + workers; {ing['cpu_seconds'] / ing['objects'] * 1e6:.0f} us of CPU per object, "
        f"raw read {raw['cpu_seconds'] / raw['objects'] * 1e6:.0f} us)",
    )
    fig(
        "ingest_accounting",
        "balanced" if ing["balanced"] else "UNBALANCED",
        f"(rows_written={ing['rows_written']} + quarantined={ing['quarantined']} "
        f"+ duplicates={ing['duplicates']} = {ing['objects']} objects)",
    )
    fig(
        "peak_rss_mb_ingest",
        ing["rss_mb"],
        f"(main + workers, sampled every 50 ms; main alone {ing['hwm_self_mb']}, largest worker "
        f"{ing['hwm_largest_child_mb']}, sum of per-process peaks {ing['hwm_bound_mb']})",
        row="peak RSS of ingestion, MiB",
    )
    fig("peak_rss_mb_raw_read", raw["hwm_self_mb"])
    fig("peak_rss_mb_naive", naive["hwm_self_mb"])
    r_raw, r_naive = ing_rate / raw_rate, ing_rate / naive_rate
    fig(
        "ingest_vs_raw_read",
        round(r_raw, 2),
        f"(target >= {TARGET_VS_RAW}: {verdict(r_raw >= TARGET_VS_RAW)})",
        row="ingest / raw read",
        target=f">= {TARGET_VS_RAW}",
    )
    fig(
        "ingest_vs_naive",
        round(r_naive, 2),
        f"(target >= {TARGET_VS_NAIVE}: {verdict(r_naive >= TARGET_VS_NAIVE)})",
        row="ingest / naive",
        target=f">= {TARGET_VS_NAIVE}",
    )
    return ds


def bench_sensor(ds: DataSet, suffix: str, label: str) -> None:
    note(
        f"== Sensor tick (discover, look-back 2 days) over {label}: {ds.objects} existing keys "
        "in the newest day =="
    )
    res = run_child("sensor", *day_args(ds), "--new", 1000)
    for name, what in (
        ("first_tick", "first tick, empty cursor"),
        ("nothing_new", "nothing new"),
        ("new_objects", "1,000 new objects"),
    ):
        t = res[name]
        tag = "1000_new" if name == "new_objects" else name
        fig(
            f"sensor_tick_seconds_{tag}{suffix}",
            round(t["seconds"], 3),
            f"(target < {SENSOR_LIMIT_S:.0f}: {verdict(t['seconds'] < SENSOR_LIMIT_S)})",
            row=f"sensor tick, {what}, {ds.objects} keys, s",
            target=f"< {SENSOR_LIMIT_S:.0f}",
        )
        fig(
            f"sensor_keys_listed_{tag}{suffix}",
            t["keys_listed"],
            f"(new {t['new_objects']}, swept {t['swept_keys']}, {t['list_calls']} listing calls, "
            f"cursor {t['cursor_bytes']} bytes)",
        )
    note(
        "local mode: a listing scans its whole day folder whatever start_after says; on S3, StartAfter "
        "makes a nothing-new listing one request"
    )


def bench_s3(args: argparse.Namespace, work: Path) -> None:
    note(f"== S3 mode: moto_server on 127.0.0.1, {args.s3_objects} generated calls ==")
    os.environ.update(S3_ENV)
    with moto_server(work / "moto_server.log") as endpoint, ExitStack() as stack:
        note(f"server {endpoint}")
        extra: list[object] = []
        if args.s3_latency_ms > 0:
            slow = stack.enter_context(latency_proxy(endpoint, args.s3_latency_ms))
            extra = ["--latency-endpoint", slow, "--latency-objects", args.s3_latency_objects]
        res = run_child(
            "s3", "--endpoint", endpoint, "--calls", args.s3_objects, "--start", START.isoformat(),
            "--threads", 32, "--workers", 2, *extra, env=S3_ENV,
        )  # fmt: skip
    n = res["objects"]
    fig("s3_put_objects_per_s", res["objects_put"] / res["put_seconds"], f"({res['objects_put']} puts)")
    seq = n / res["sequential_seconds"]
    conc = n / res["concurrent_seconds"]
    proj = n / res["project_seconds"]
    fig("s3_objects", n, "(objects of the day, read by each measurement)")
    fig("s3_sequential_objects_per_s", seq, "(one get at a time)", row="S3 sequential get, objects/s")
    fig("s3_concurrent_objects_per_s", conc, "(32 threads)", row="S3 concurrent get (32 threads), objects/s")
    fig(
        "s3_read_objects_per_s",
        proj,
        "(project read path: read_objects, 2 worker processes x 16 threads, incl. parse)",
        row="S3 read_objects (project), objects/s",
    )
    ratio = conc / seq
    fig(
        "s3_concurrent_vs_sequential",
        round(ratio, 2),
        f"(target >= {TARGET_S3_CONCURRENCY:.0f}: {verdict(ratio >= TARGET_S3_CONCURRENCY)})",
        row="S3 concurrent / sequential",
        target=f">= {TARGET_S3_CONCURRENCY:.0f}",
    )
    fig("s3_read_objects_vs_sequential", round(proj / seq, 2))
    note(
        "moto answers each request with ~5 ms of its own CPU (one Python process) and closes the "
        "connection; on 2 cores that CPU, not waiting, bounds the concurrent rate"
    )
    if "latency_objects" in res:
        ms, m = args.s3_latency_ms, res["latency_objects"]
        note(f"with {ms:g} ms added to each request by a loopback proxy (S3-like latency), {m} objects:")
        lseq = m / res["latency_sequential_seconds"]
        lconc = m / res["latency_concurrent_seconds"]
        lproj = m / res["latency_project_seconds"]
        fig("s3_latency_sequential_objects_per_s", lseq)
        fig("s3_latency_concurrent_objects_per_s", lconc, "(32 threads)")
        fig("s3_latency_read_objects_per_s", lproj, "(project read path)")
        lratio = lconc / lseq
        fig(
            "s3_latency_concurrent_vs_sequential",
            round(lratio, 2),
            f"(target >= {TARGET_S3_CONCURRENCY:.0f}: {verdict(lratio >= TARGET_S3_CONCURRENCY)})",
            row=f"S3 concurrent / sequential, +{ms:g} ms latency",
            target=f">= {TARGET_S3_CONCURRENCY:.0f}",
        )


def bench_million(data_dir: Path, work: Path) -> DataSet:
    note("== 1,000,000 CDRs in one day: peak memory of ingestion ==")
    ds = ensure_set(data_dir, 1_000_000)
    describe_set(ds, "1M data set", "_1m")
    ing = run_ingest(ds, work)
    fig("ingest_objects_per_s_1m", ing["objects"] / ing["seconds"], f"({ing['seconds']:.1f} s)")
    mib = ing["rss_mb"]
    fig(
        "peak_rss_mb_1m_day",
        mib,
        f"(target < {TARGET_1M_MIB} MiB: {verdict(mib < TARGET_1M_MIB)}; main alone {ing['hwm_self_mb']}, "
        f"largest worker {ing['hwm_largest_child_mb']}, sum of per-process peaks {ing['hwm_bound_mb']})",
        row=f"peak RSS, {ds.objects}-object day, MiB",
        target=f"< {TARGET_1M_MIB}",
    )
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--objects", type=int, default=200_000, help="generated calls in the day")
    parser.add_argument("--data-dir", default="bench-data", help="cache of generated data (reused)")
    parser.add_argument("--million", action="store_true", help="also the 1,000,000-CDR memory run")
    parser.add_argument("--s3-objects", type=int, default=5000, help="generated calls for the S3 run")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument(
        "--s3-latency-ms", type=float, default=20, help="latency a proxy adds per request (0: off)"
    )
    parser.add_argument("--s3-latency-objects", type=int, default=1000, help="objects read through it")
    parser.add_argument("--naive-sample", type=int, default=5000, help="files the naive baseline reads")
    parser.add_argument(
        "--only",
        choices=["lake", "search", "connect", "recordings"],
        action="append",
        help="run only these parts (repeatable); default: all",
    )
    parser.add_argument("--search-rows", type=int, default=10_000_000, help="CDRs in the search lake")
    parser.add_argument("--connect-ctrs", type=int, default=1_000_000, help="CTRs in the bulk load")
    parser.add_argument("--connect-incremental", type=int, default=10_000, help="CTRs, incremental load")
    parser.add_argument("--recording-hours", type=float, default=2.0, help="hours of recordings compressed")
    parser.add_argument("--recording-call-minutes", type=float, default=5.0, help="length of each recording")
    args = parser.parse_args()
    parts = set(args.only or ["lake", "search", "connect", "recordings"])

    data_dir = Path(args.data_dir).resolve()
    work = data_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    note(
        f"cdr_assets benchmarks: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}; data in {data_dir}"
    )
    ds = None
    if "lake" in parts:
        ds = bench_local(args, data_dir, work)
        bench_sensor(ds, "", "the local landing zone")
        if not args.skip_s3:
            bench_s3(args, work)
        if args.million:
            big = bench_million(data_dir, work)
            bench_sensor(big, "_1m", "the 1M local landing zone")
    # Search, Connect and recordings benchmarks print their own name=value lines.
    for part in ("search", "connect", "recordings"):
        module = f"benchmarks.{part}"
        if part in parts:
            note(f"== {part} ==")
            for line in importlib.import_module(module).run(args):
                print(line, flush=True)

    fig("bench_seconds", time.perf_counter() - t_start)
    if ds is None:
        return
    note("")
    note(f"Summary ({ds.objects} objects in one day, {os.cpu_count()} CPUs, files in page cache):")
    note("")
    note("| Figure | Value | Target |")
    note("|---|---:|---|")
    for row, value, target in table:
        note(f"| {row} | {value} | {target} |")


if __name__ == "__main__":
    main()
