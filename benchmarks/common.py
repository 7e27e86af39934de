"""Shared by the benchmark driver and its measurement subprocesses."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

CDR_BUCKET = "chime-cdrs"
LAKE_BUCKET = "bench-lake"
RESULT_TAG = "BENCH-RESULT "
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        out.extend(int(c) for c in text.split())
    return out


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants, now."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_bytes(pid)
        todo.extend(_children(pid))
    return total


def hwm_bytes(pid: int | str = "self") -> int:
    """A process's own peak RSS (VmHWM).

    Not ``ru_maxrss``: Linux carries the high-water mark across exec, so a child started by a
    big parent reports at least the parent's peak (and RUSAGE_CHILDREN gives only the largest
    child, not the sum of children alive together).
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeRssSampler:
    """Samples, in a thread, the summed RSS of this process and its descendants (pool workers),
    and each descendant's own peak (VmHWM) while it is alive."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0  # largest summed RSS seen in one sample
        self.child_hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = os.getpid()
        total, todo = 0, [me]
        while todo:
            pid = todo.pop()
            total += _rss_bytes(pid)
            if pid != me:
                self.child_hwm[pid] = max(self.child_hwm.get(pid, 0), hwm_bytes(pid))
            todo.extend(_children(pid))
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def figures(self) -> dict[str, float]:
        own = hwm_bytes()
        kids = sorted(self.child_hwm.values(), reverse=True)
        return {
            "rss_tree_peak_mb": round(self.peak / 2**20, 1),
            "hwm_self_mb": round(own / 2**20, 1),
            "hwm_largest_child_mb": round((kids[0] if kids else 0) / 2**20, 1),
            # Every process at its own peak at the same moment: a bound the tree never exceeds.
            "hwm_bound_mb": round((own + sum(kids)) / 2**20, 1),
            "children_seen": len(kids),
        }


def emit(result: dict[str, object]) -> None:
    """A child's answer to the driver: one tagged JSON line on stdout."""
    sys.stdout.write(RESULT_TAG + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


def read_keys(path: Path) -> list[str]:
    return path.read_text().splitlines()
