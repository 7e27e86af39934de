"""Connect CTRs into the star schema: bulk rate for ~1,000,000 CTRs, then an incremental 10,000.

``run(args)`` returns ``name=value`` lines. The generated Firehose files are cached under
``./bench-data/connect/`` (regenerated when the parameters change); the lake and the DuckDB
file are rebuilt in ``./bench-data/connect/run/`` on every run. Bulk = stage + load every
delivery day of the big set as one backfill run does (``connect.pipeline.stage_and_load``, the
path of ``connect_warehouse`` and ``cdr-assets backfill --source connect``: the next day stages
while one loads); incremental = stage + load the delivery days of 10,000 more CTRs into those
same tables. Targets: >= 20,000 CTRs/s bulk on 2 cores; incremental <= 10 % of bulk.

Baseline, measured before (after a warm-up) and after the loads in the same run: DuckDB only
parsing the bulk files (``count(*)`` over the reader's JSON shape, both cores), the least any
JSON-to-DuckDB path pays. It shows how fast the machine ran around the measurement (on this
shared host the same code varies by a third from run to run); the bulk time over the baseline
varies less, but still follows the machine. The bulk load's CPU seconds (all threads) show
whether it waited or computed: on 2 cores, ~1.8 cores busy means more parallelism has little left
to give.

Standalone: ``python -m benchmarks.connect [--ctrs N] [--incremental N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from cdr_assets.connect.ctr_reader import COLUMNS_ARG
from cdr_assets.connect.generate import generate_ctrs
from cdr_assets.connect.load import load_partition
from cdr_assets.connect.pipeline import stage_and_load
from cdr_assets.connect.staging import StagingReport, stage_delivery_day
from cdr_assets.storage import LocalStorage
from cdr_assets.warehouse import WAREHOUSE_CONFIG

ROOT = Path("bench-data/connect")
BUCKET, LAKE = "connect", "lake"
START = date(2026, 1, 5)
BULK_DAYS = 5
# ~10 % of generated contacts get a second version and ~2 % of records a duplicate delivery, so
# contacts = CTRs / 1.12 delivers about the asked number of CTR records.
RECORDS_PER_CONTACT = 1.12


def _dataset(ctrs: int, incremental: int) -> tuple[LocalStorage, dict]:
    meta_path = ROOT / "meta.json"
    params = {"ctrs": ctrs, "incremental": incremental, "version": 1}
    store = LocalStorage(ROOT / "data")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["params"] == params:
            return store, meta
    shutil.rmtree(ROOT / "data", ignore_errors=True)
    store = LocalStorage(ROOT / "data")
    store.ensure_bucket(BUCKET)
    t0 = time.perf_counter()
    bulk = generate_ctrs(
        store, BUCKET, contacts=int(ctrs / RECORDS_PER_CONTACT), days=BULK_DAYS, start=START, seed=11
    )
    inc_start = START + timedelta(days=BULK_DAYS + 2)
    inc = generate_ctrs(
        store, BUCKET, contacts=int(incremental / RECORDS_PER_CONTACT), days=1, start=inc_start, seed=12
    )
    meta = {
        "params": params,
        "bulk_days": sorted(bulk.per_delivery_day),
        "bulk_records": bulk.records + bulk.duplicate_deliveries,
        "inc_days": sorted(inc.per_delivery_day),
        "inc_records": inc.records + inc.duplicate_deliveries,
        "generate_seconds": time.perf_counter() - t0,
    }
    ROOT.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta))
    return store, meta


def _load(
    store: LocalStorage, conn: duckdb.DuckDBPyConnection, days: list[str]
) -> tuple[int, float, float, float]:
    """Stage and load ``days`` as a backfill run does (``stage_and_load``: the next day stages while
    one loads): (records, wall seconds, staging seconds, load seconds; the two overlap)."""

    def stage(c: duckdb.DuckDBPyConnection, day: date) -> StagingReport:
        return stage_delivery_day(
            store, c, connect_bucket=BUCKET, lake_bucket=LAKE, ctr_prefix="ctr/", delivery_day=day, workers=2
        )

    t0 = time.perf_counter()
    results = list(
        stage_and_load(
            conn,
            [date.fromisoformat(d) for d in days],
            stage,
            lambda c, day: load_partition(c, store, LAKE, day),
        )
    )
    wall = time.perf_counter() - t0
    return (
        sum(r.staging.records_in for r in results),
        wall,
        sum(r.staging.seconds for r in results),
        sum(r.load.seconds for r in results),
    )


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the decoder's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _parse_seconds(days: list[str]) -> float:
    """Wall time for DuckDB to parse every bulk file (the baseline), each file's layout settled
    as the reader settles it (``format = 'auto'``)."""
    raw = ROOT / "data" / "buckets" / BUCKET / "ctr"
    paths = sorted(str(p) for d in days for p in (raw / d.replace("-", "/")).rglob("*") if p.is_file())
    with duckdb.connect(config={"threads": 2}) as conn:
        t0 = time.perf_counter()
        conn.execute(
            f"SELECT count(*) FROM read_json($paths, format = 'auto', columns = {COLUMNS_ARG})",
            {"paths": paths},
        ).fetchone()
        return time.perf_counter() - t0


def run(args: argparse.Namespace) -> list[str]:
    ctrs = getattr(args, "connect_ctrs", None) or 1_000_000
    incremental = getattr(args, "connect_incremental", None) or 10_000
    _, meta = _dataset(ctrs, incremental)
    run_dir = ROOT / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    # Staging reads raw files and writes lake files through one Storage: link the raw bucket in.
    (run_dir / "buckets").mkdir()
    (run_dir / "buckets" / BUCKET).symlink_to((ROOT / "data" / "buckets" / BUCKET).resolve())
    lake = LocalStorage(run_dir)
    lake.ensure_bucket(LAKE)
    _parse_seconds(meta["bulk_days"][:1])  # warm-up: DuckDB's first read in a process pays extra
    parse_before = _parse_seconds(meta["bulk_days"])
    conn = duckdb.connect(str(run_dir / "warehouse.duckdb"), config=WAREHOUSE_CONFIG)
    try:
        cpu_before = _cpu_seconds()
        bulk_records, bulk_s, bulk_staging_s, bulk_load_s = _load(lake, conn, meta["bulk_days"])
        bulk_cpu = _cpu_seconds() - cpu_before
        (facts,) = conn.execute("SELECT count(*) FROM connect.fact_contact").fetchone()  # type: ignore[misc]
        inc_records, inc_s, _, _ = _load(lake, conn, meta["inc_days"])
    finally:
        conn.close()
    parse_after = _parse_seconds(meta["bulk_days"])
    rate = bulk_records / bulk_s
    return [
        f"connect_bulk_ctrs={bulk_records} (CTR records in {len(meta['bulk_days'])} delivery days)",
        f"connect_bulk_seconds={bulk_s:.1f} (staging {bulk_staging_s:.1f} + star schema load "
        f"{bulk_load_s:.1f}, overlapping: each day stages while the day before loads)",
        f"connect_bulk_ctrs_per_second={rate:.0f} (target >= 20000 on 2 cores: "
        f"{'met' if rate >= 20_000 else 'NOT met'})",
        f"connect_bulk_cpu_seconds={bulk_cpu:.1f} ({bulk_cpu / bulk_s:.2f} cores busy on average, "
        f"{bulk_cpu / bulk_records * 1e6:.0f} us of CPU per CTR)",
        f"connect_fact_rows_after_bulk={facts}",
        f"connect_baseline_parse_seconds={parse_before:.2f} before / {parse_after:.2f} after "
        "(DuckDB parsing the bulk files, nothing else)",
        f"connect_bulk_vs_parse={bulk_s / ((parse_before + parse_after) / 2):.1f} "
        "(bulk time / mean baseline)",
        f"connect_incremental_ctrs={inc_records}",
        f"connect_incremental_seconds={inc_s:.2f}",
        f"connect_incremental_vs_bulk={inc_s / bulk_s:.3f} (target <= 0.10: "
        f"{'met' if inc_s / bulk_s <= 0.10 else 'NOT met'})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ctrs", dest="connect_ctrs", type=int, default=1_000_000)
    parser.add_argument("--incremental", dest="connect_incremental", type=int, default=10_000)
    for line in run(parser.parse_args()):
        print(line, flush=True)


if __name__ == "__main__":
    main()
