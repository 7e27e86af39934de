"""Stage and load several delivery days, staging the next day while one loads (pure code).

A day's two steps use the cores unevenly: staging (DuckDB's JSON reader, Parquet encoding) keeps
both busy, while much of the load is DuckDB writing the fact table on one. Run one after the
other, a core idles for about a third of the time; here the next day's staging runs on a second
connection to the same database (its own transactions, on the ledger tables the load only reads)
in a worker thread while the main connection loads the day before.

The loads were the critical path (a day's load took longer than the next day's staging, and
ends on one core: the fact write and its commit), so the run favours them:

- While a staging runs beside it, a load runs DuckDB on one thread (``SET threads = 1``, a
  setting of the database; the staging gives the threads back as it ends, for the part of the
  load that runs alone). With a worker thread, the worker kept the serial steps while the load's
  own thread, waiting for it in DuckDB's Python client, spun, taking CPU and the GIL from
  staging: ~7 % of the bulk load's CPU (perf).
- A staging beside a load runs at a lower priority (``STAGING_NICENESS``, Linux: on its own
  thread, whose nice value the threads it starts inherit), so it takes what the load leaves
  instead of slowing it down. The first day stages alone, at the caller's priority. At the end
  DuckDB's worker threads are started anew from the caller's thread, so none keeps the staging
  thread's priority.

Measured on the 1M-CTR benchmark (interleaved A/B rounds, 3 each): the first ~10 % less CPU and
~5 % less wall time; the second ~5 % less wall time on top of it.

Order and results are those of staging and loading each day in turn: day N is loaded only after
its staging committed, and days are loaded in the order given. A failure stops at that day: the
days before it stay loaded (each load is one transaction), the staging already running finishes
or rolls back before the error is raised, and nothing after it starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import duckdb

from cdr_assets.connect.staging import StagingReport
from cdr_assets.connect.warehouse import LoadReport
from cdr_assets.warehouse import restoring

Stage = Callable[[duckdb.DuckDBPyConnection, date], StagingReport]
Load = Callable[[duckdb.DuckDBPyConnection, date], LoadReport]

STAGING_NICENESS = 10  # added to the staging thread's nice value (a thread cannot take it back)


@dataclass
class DayResult:
    delivery_day: date
    staging: StagingReport
    load: LoadReport


def _lower_this_threads_priority(by: int) -> None:
    """Raise the calling thread's nice value (Linux: per thread; elsewhere it would be the
    whole process's, so nothing is done). Best effort: a refusal leaves the priority as it is."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))


def _set_threads(conn: duckdb.DuckDBPyConnection, n: int) -> None:
    conn.execute(f"SET threads = {int(n)}")


def stage_and_load(
    conn: duckdb.DuckDBPyConnection, days: Sequence[date], stage: Stage, load: Load
) -> Iterator[DayResult]:
    """Yield each day's reports once it is loaded; ``stage`` runs on a cursor of ``conn`` (a
    second connection to its database), ``load`` on ``conn``."""
    if not days:
        return
    staging_conn = conn.cursor()
    (threads,) = conn.execute("SELECT current_setting('threads')").fetchone()  # type: ignore[misc]

    def restore_threads() -> None:
        # DuckDB starts its workers in the thread that changes the setting, and they inherit its
        # priority: changed from here, they have the caller's. First to 1, so that no worker a
        # staging started, at the staging thread's priority, is left.
        _set_threads(conn, 1)
        _set_threads(conn, threads)

    def stage_beside_load(day: date) -> StagingReport:
        # As the staging ends, the rest of the load runs alone: DuckDB's threads back for it. A
        # worker started here has this thread's priority (nothing competes now); restore_threads
        # replaces it.
        with restoring(lambda: _set_threads(staging_conn, threads)):
            return stage(staging_conn, day)

    try:
        with restoring(restore_threads):
            staged = stage(staging_conn, days[0])  # nothing to favour yet: on this thread, as it is
            # The executor's exit waits for a staging still running, so no thread outlives the cursor.
            with ThreadPoolExecutor(
                1,
                thread_name_prefix="connect-staging",
                initializer=_lower_this_threads_priority,
                initargs=(STAGING_NICENESS,),
            ) as pool:
                pending: Future[StagingReport] | None = None
                for n, day in enumerate(days):
                    if pending is not None:
                        staged = pending.result()
                    beside = n + 1 < len(days)
                    _set_threads(conn, 1 if beside else threads)
                    pending = pool.submit(stage_beside_load, days[n + 1]) if beside else None
                    yield DayResult(day, staged, load(conn, day))
    finally:
        staging_conn.close()
