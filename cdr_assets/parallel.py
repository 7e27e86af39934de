"""Parallel reading shared by the pipelines (pure: no Dagster).

Reading many small objects is the cost floor of ingestion: chunks go to worker processes
(spawned, so a Dagster run's threads are never forked), and inside a chunk S3 reads overlap on
a thread pool, since each is a network round trip.
"""

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from typing import TypeVar

from cdr_assets.storage import Storage

T = TypeVar("T")
R = TypeVar("R")
S3_READ_THREADS = 16


def map_chunks(
    fn: Callable[[Sequence[T]], R],
    items: Sequence[T],
    *,
    chunk_size: int,
    workers: int,
    serial_up_to: int,
) -> list[R]:
    """``fn`` over consecutive chunks of ``items``, results in order. Up to ``serial_up_to``
    chunks run in this process: a worker's start-up (~0.5-1 s) pays off only beyond that.
    ``fn`` must be picklable (a module-level function, or a ``functools.partial`` of one)."""
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    if workers <= 1 or len(chunks) <= serial_up_to:
        return [fn(c) for c in chunks]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fn, chunks))


def fetch_all(
    storage: Storage, fetch: Callable[[T], R], items: Sequence[T], *, threads: int = S3_READ_THREADS
) -> list[R]:
    """``fetch`` of every item, in order; overlapped on threads when reads are network calls."""
    if storage.mode == "s3":
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(fetch, items))
    return [fetch(item) for item in items]
