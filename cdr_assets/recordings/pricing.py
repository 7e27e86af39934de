"""Storage prices per storage class, for the savings estimate (``RECORDINGS_PRICES``).

Defaults: Amazon S3 list prices in us-east-1, USD per GB-month, first 50 TB tier.
INTELLIGENT_TIERING is priced at its Infrequent Access tier, where an object lands after 30
days without access (recordings older than a week are rarely played). Retrieval fees and
minimum storage durations (30 days for *_IA, 90 for GLACIER_IR and GLACIER) are not modelled.
``RECORDINGS_PRICES`` is a JSON object overriding any of these, e.g. ``{"STANDARD": 0.025}``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from cdr_assets.storage import STORAGE_CLASSES

DEFAULT_PRICES: dict[str, float] = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "INTELLIGENT_TIERING": 0.0125,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
}
GB = 1024**3


def parse_prices(text: str) -> dict[str, float]:
    """The default table with the overrides of ``text`` (JSON object; empty: none)."""
    prices = dict(DEFAULT_PRICES)
    if text.strip():
        overrides = json.loads(text)
        if not isinstance(overrides, dict):
            raise ValueError("RECORDINGS_PRICES must be a JSON object {storage class: USD per GB-month}")
        for name, value in overrides.items():
            if name not in STORAGE_CLASSES:
                raise ValueError(f"RECORDINGS_PRICES: unknown storage class {name!r}")
            prices[name] = float(value)
    return prices


def monthly_cost(size_bytes: int, storage_class: str, prices: dict[str, float]) -> float:
    return size_bytes / GB * prices[storage_class]


@dataclass(frozen=True)
class DaySavings:
    day: date
    recordings: int
    bytes_before: int
    bytes_after: int
    cost_before: float  # USD per month, the originals in STANDARD
    cost_after: float  # USD per month, the converted objects in their storage class

    @property
    def saved_percent(self) -> float:
        return 100.0 * (1 - self.bytes_after / self.bytes_before) if self.bytes_before else 0.0


def savings_by_day(conn: Any, prices: dict[str, float]) -> list[DaySavings]:
    """Per day: converted recordings, bytes and estimated monthly cost before and after."""
    rows = conn.execute(
        """
        SELECT day, coalesce(storage_class, 'STANDARD'), count(*), sum(bytes_before), sum(bytes_after)
        FROM recordings.compression
        WHERE status = 'converted' AND bytes_before > 0
        GROUP BY ALL ORDER BY day
        """
    ).fetchall()
    days: dict[date, list] = {}
    for day, storage_class, n, before, after in rows:
        acc = days.setdefault(day, [0, 0, 0, 0.0, 0.0])
        acc[0] += n
        acc[1] += before
        acc[2] += after
        acc[3] += monthly_cost(before, "STANDARD", prices)
        acc[4] += monthly_cost(after, storage_class, prices)
    return [DaySavings(day, *acc) for day, acc in days.items()]


def total(days: list[DaySavings]) -> DaySavings | None:
    if not days:
        return None
    return DaySavings(
        days[-1].day,
        sum(d.recordings for d in days),
        sum(d.bytes_before for d in days),
        sum(d.bytes_after for d in days),
        sum(d.cost_before for d in days),
        sum(d.cost_after for d in days),
    )


def savings_chart(days: list[DaySavings]) -> bytes:
    """PNG: megabytes stored per day before and after compression."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.5), dpi=90)
    ax = fig.subplots()
    x = list(range(len(days)))
    ax.bar([i - 0.2 for i in x], [d.bytes_before / 1e6 for d in days], width=0.4, label="before")
    ax.bar([i + 0.2 for i in x], [d.bytes_after / 1e6 for d in days], width=0.4, label="after")
    ax.set_xticks(x, [d.day.isoformat() for d in days], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("MB")
    ax.set_title("Call recordings: storage before and after compression")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
