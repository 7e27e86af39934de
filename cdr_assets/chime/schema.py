"""The Voice Connector CDR schema (version 2.0) and the lake's Parquet schemas.

Lake columns are the CDR field names lowercased, as Athena and the reference Glue table name
them (``voiceconnectorid``, ``billabledurationseconds``, ...), so the reference report query
runs unchanged. ``year``/``month``/``day`` are Hive partition folders, not columns in files.
"""

from __future__ import annotations

import pyarrow as pa

CDR_PREFIX = "Amazon-Chime-Voice-Connector-CDRs/json/"
LAKE_PREFIX = "Amazon-Chime-Voice-Connector-CDRs/"
QUARANTINE_PREFIX = "quarantine/Amazon-Chime-Voice-Connector-CDRs/"
SERVICE_CODE = "AmazonChimeVoiceConnector"
SCHEMA_VERSION = "2.0"
DIRECTIONS = ("Inbound", "Outbound")

# (CDR field, python type, required). Order is the column order in the lake.
FIELDS: tuple[tuple[str, type, bool], ...] = (
    ("AwsAccountId", str, True),
    ("TransactionId", str, True),
    ("CallId", str, True),
    ("VoiceConnectorId", str, True),
    ("Status", str, True),
    ("StatusMessage", str, True),
    ("SipAuthUser", str, False),
    ("BillableDurationSeconds", int, True),
    ("BillableDurationMinutes", float, True),
    ("SchemaVersion", str, True),
    ("SourcePhoneNumber", str, True),
    ("SourceCountry", str, True),
    ("DestinationPhoneNumber", str, True),
    ("DestinationCountry", str, True),
    ("UsageType", str, True),
    ("ServiceCode", str, True),
    ("Direction", str, True),
    ("StartTimeEpochSeconds", int, True),
    ("EndTimeEpochSeconds", int, True),
    ("Region", str, True),
    ("Streaming", bool, True),
    ("IsProxyCall", bool, False),
)
FIELD_NAMES = tuple(name for name, _, _ in FIELDS)
REQUIRED = frozenset(name for name, _, required in FIELDS if required)

_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}

CDR_ARROW_SCHEMA = pa.schema(
    [pa.field(name.lower(), _ARROW_TYPES[typ], nullable=not required) for name, typ, required in FIELDS]
    + [
        # Keys the schema does not know, kept as a JSON object string rather than dropped.
        pa.field("extra_fields", pa.string()),
        # Where the record came from, for lineage and for the quarantine/ledger joins.
        pa.field("source_key", pa.string(), nullable=False),
    ]
)

QUARANTINE_ARROW_SCHEMA = pa.schema(
    [
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("raw", pa.binary(), nullable=False),
        pa.field("raw_truncated", pa.bool_(), nullable=False),
        pa.field("delivery_day", pa.date32(), nullable=False),
    ]
)

# The Glue/Athena DDL equivalent, for users who point Athena at the lake.
ATHENA_DDL = (
    "CREATE EXTERNAL TABLE amazon_chime_sdk_voice_connector_cdrs.processed_cdrs (\n  "
    + ",\n  ".join(
        f"{f.name} {dict(string='string', int64='bigint', double='double', bool='boolean')[str(f.type)]}"
        for f in CDR_ARROW_SCHEMA
    )
    + "\n)\nPARTITIONED BY (year int, month int, day int)\nSTORED AS PARQUET\n"
    "LOCATION 's3://<LAKE_BUCKET>/Amazon-Chime-Voice-Connector-CDRs/'\n"
    # Partition projection, as the reference table has; month/day folders are zero-padded.
    "TBLPROPERTIES (\n"
    "  'projection.enabled' = 'true',\n"
    "  'projection.year.type' = 'integer', 'projection.year.range' = '2019,2099',\n"
    "  'projection.month.type' = 'integer', 'projection.month.range' = '1,12',\n"
    "  'projection.month.digits' = '2',\n"
    "  'projection.day.type' = 'integer', 'projection.day.range' = '1,31', 'projection.day.digits' = '2',\n"
    "  'storage.location.template' = "
    "'s3://<LAKE_BUCKET>/Amazon-Chime-Voice-Connector-CDRs/year=${year}/month=${month}/day=${day}/'\n"
    ")"
)
