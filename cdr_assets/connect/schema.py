"""Amazon Connect contact trace records (CTRs): key layouts and the staged Parquet schema.

Firehose delivers CTR files under
``<CONNECT_CTR_PREFIX>YYYY/MM/DD/HH/<stream>-<n>-<YYYY-MM-DD-HH-MM-SS>-<uuid>`` (the date is the
delivery time, UTC). Staging flattens every CTR into one typed row; column
names are the CTR paths in snake case. Timestamps are naive ``timestamp[s]`` holding UTC.
"""

from __future__ import annotations

import re
from datetime import date
from itertools import pairwise

import pyarrow as pa

from cdr_assets.chime.keys import hive_folder

STAGING_PREFIX = "connect-ctr/"
QUARANTINE_PREFIX = "quarantine/connect-ctr/"
REPORT_PREFIX = "reports/contact-center/"

TS = pa.timestamp("s")

# (column, arrow type). Order is the column order of the staged files.
STAGED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("contact_id", pa.string()),
    ("initial_contact_id", pa.string()),
    ("previous_contact_id", pa.string()),
    ("next_contact_id", pa.string()),
    ("aws_account_id", pa.string()),
    ("instance_arn", pa.string()),
    ("format_version", pa.string()),
    ("channel", pa.string()),
    ("initiation_method", pa.string()),
    ("initiation_timestamp", TS),
    ("connected_to_system_timestamp", TS),
    ("disconnect_timestamp", TS),
    ("last_update_timestamp", TS),
    ("transfer_completed_timestamp", TS),
    ("disconnect_reason", pa.string()),
    ("agent_connection_attempts", pa.int64()),
    ("customer_endpoint_type", pa.string()),
    ("customer_endpoint_address", pa.string()),
    ("system_endpoint_type", pa.string()),
    ("system_endpoint_address", pa.string()),
    ("transferred_to_endpoint_type", pa.string()),
    ("transferred_to_endpoint_address", pa.string()),
    ("agent_arn", pa.string()),
    ("agent_username", pa.string()),
    ("connected_to_agent_timestamp", TS),
    ("agent_interaction_duration", pa.int64()),
    ("customer_hold_duration", pa.int64()),
    ("longest_hold_duration", pa.int64()),
    ("number_of_holds", pa.int64()),
    ("acw_duration", pa.int64()),
    ("acw_start_timestamp", TS),
    ("acw_end_timestamp", TS),
    ("routing_profile_arn", pa.string()),
    ("routing_profile_name", pa.string()),
    *((f"hierarchy_l{n}_{part}", pa.string()) for n in range(1, 6) for part in ("arn", "name")),
    ("queue_arn", pa.string()),
    ("queue_name", pa.string()),
    ("enqueue_timestamp", TS),
    ("dequeue_timestamp", TS),
    ("queue_duration", pa.int64()),
    ("recording_location", pa.string()),
    ("recording_status", pa.string()),
    ("with_voice_mail", pa.bool_()),  # the reference's name for "a recording exists"
    ("customer_intent", pa.string()),  # Attributes.Intent
    ("attributes", pa.string()),  # the Attributes map as a JSON object
    ("record_hash", pa.string()),  # of the staged values (ctr_reader.finish): tie-break for equal timestamps
    ("source_key", pa.string()),
    ("source_record", pa.int64()),  # the record's position among the values of its file, from 0
)
STAGED_SCHEMA = pa.schema([pa.field(n, t) for n, t in STAGED_COLUMNS])
STAGED_NAMES = tuple(n for n, _ in STAGED_COLUMNS)
# Columns with (nearly) a value per contact: identifiers, instants, the customer's address, the
# recording, the hash. A Parquet dictionary cannot shrink them, and building one until the writer
# gives up on it cost ~20 % of the staged files' encoding; the other columns repeat and keep theirs.
STAGED_WITHOUT_DICTIONARY = frozenset(
    {
        "contact_id",
        "initial_contact_id",
        "previous_contact_id",
        "next_contact_id",
        "customer_endpoint_address",
        "recording_location",
        "record_hash",
        *(n for n, t in STAGED_COLUMNS if t == TS),
    }
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.binary(), nullable=False),
        pa.field("delivery_day", pa.date32(), nullable=False),
    ]
)

_FIREHOSE_DAY = re.compile(r"^(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/")


def day_prefix(ctr_prefix: str, day: date) -> str:
    return f"{ctr_prefix}{day:%Y/%m/%d}/"


def day_of_prefix(ctr_prefix: str, prefix: str) -> date:
    m = _FIREHOSE_DAY.match(prefix[len(ctr_prefix) :])
    if m is None:
        raise ValueError(f"{prefix!r} is not a Firehose day prefix under {ctr_prefix!r}")
    return date(int(m["y"]), int(m["m"]), int(m["d"]))


# Rows per staged file at most (one row group): a bigger initiation day is cut into equal parts,
# encoded in parallel.
STAGED_FILE_ROWS = 128 * 1024


def staged_file_key(initiation_day: date, delivery_day: date, batch_id: str, part: int) -> str:
    # The delivery day in the name lets a rematerialized partition find its own files.
    folder = hive_folder(STAGING_PREFIX, initiation_day)
    return f"{folder}ctrs_delivered-{delivery_day}_{batch_id}-{part}.parquet"


def file_parts(rows: int) -> list[tuple[int, int]]:
    """(offset, length) of each staged file of an initiation day with ``rows`` rows: equal parts of
    at most ``STAGED_FILE_ROWS``."""
    parts = max(1, -(-rows // STAGED_FILE_ROWS))
    bounds = [rows * i // parts for i in range(parts + 1)]
    return [(lo, hi - lo) for lo, hi in pairwise(bounds)]


def quarantine_file_key(delivery_day: date, batch_id: str) -> str:
    return f"{hive_folder(QUARANTINE_PREFIX, delivery_day)}quarantine_{batch_id}.parquet"
