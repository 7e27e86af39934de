"""Key layouts: where Chime drops CDRs, and where the lake keeps them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cdr_assets.chime.schema import CDR_PREFIX, LAKE_PREFIX, QUARANTINE_PREFIX

_RAW_KEY = re.compile(
    r"^Amazon-Chime-Voice-Connector-CDRs/json/(?P<vc>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<time>\d{2}\.\d{2}\.\d{2}\.\d{3})_(?P<txn>[^/]+)$"
)


@dataclass(frozen=True)
class RawCdrKey:
    voice_connector_id: str
    delivery_day: date
    delivered_at: datetime
    transaction_id: str


def parse_raw_key(key: str) -> RawCdrKey | None:
    """Split a raw CDR key into its parts; None when it does not follow Chime's layout."""
    m = _RAW_KEY.match(key)
    if m is None:
        return None
    try:
        day = date(int(m["y"]), int(m["m"]), int(m["d"]))
        at = datetime.strptime(f"{day.isoformat()} {m['time']}", "%Y-%m-%d %H.%M.%S.%f")
    except ValueError:
        return None
    return RawCdrKey(m["vc"], day, at, m["txn"])


def day_prefix(voice_connector_id: str, day: date) -> str:
    return f"{CDR_PREFIX}{voice_connector_id}/{day:%Y/%m/%d}/"


def voice_connector_of_prefix(prefix: str) -> str:
    """``.../json/<vc>/`` (or deeper) -> ``<vc>``."""
    return prefix[len(CDR_PREFIX) :].split("/", 1)[0]


def day_of_prefix(prefix: str) -> date:
    y, m, d = prefix[len(CDR_PREFIX) :].rstrip("/").split("/")[1:4]
    return date(int(y), int(m), int(d))


def hive_folder(prefix: str, day: date) -> str:
    return f"{prefix}year={day:%Y}/month={day:%m}/day={day:%d}/"


def lake_file_key(end_day: date, delivery_day: date, batch_id: str) -> str:
    # The delivery day in the name lets a rematerialized partition find its own files.
    return f"{hive_folder(LAKE_PREFIX, end_day)}cdrs_delivered-{delivery_day}_{batch_id}.parquet"


def quarantine_file_key(delivery_day: date, batch_id: str) -> str:
    return f"{hive_folder(QUARANTINE_PREFIX, delivery_day)}quarantine_{batch_id}.parquet"


def days_back(today: date, lookback_days: int) -> list[date]:
    """Today and the ``lookback_days`` days before it, oldest first."""
    return [today - timedelta(days=n) for n in range(lookback_days, -1, -1)]
