"""Environment variables: every setting has a documented default (README, "Configuration").

``apply_defaults()`` fills unset variables with their defaults so that resources can read
each one through ``EnvVar`` (the Dagster UI then shows where a value came from, and secrets
never appear in run config).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS: dict[str, str] = {
    "CDR_ASSETS_HOME": "./.cdr_assets",
    "CDR_STORAGE": "local",
    "CHIME_CDR_BUCKET": "chime-cdrs",
    "CONNECT_BUCKET": "connect",
    "LAKE_BUCKET": "cdr-lake",
    "CDR_WAREHOUSE": "",  # empty: $CDR_ASSETS_HOME/warehouse.duckdb
    "AWS_ENDPOINT_URL": "",  # empty: the AWS default endpoints
    "AWS_REGION": "us-east-1",
    "CDR_PARTITIONS_START": "2020-01-01",
    "CDR_SENSOR_LOOKBACK_DAYS": "2",
    "CDR_SENSOR_INTERVAL_SECONDS": "60",
    "CDR_SENSOR_SWEEP_KEYS": "10000",
    "CDR_QUARANTINE_WARN_PERCENT": "5",
    "CDR_INGEST_WORKERS": "0",  # 0: one per CPU core
    "CDR_INGEST_DUCKDB_MEMORY_LIMIT": "300MB",  # DuckDB spills beyond this while ingesting a day
    "CDR_LOG_LEVEL": "WARNING",  # console log level of headless runs (cdr-assets process/backfill)
    # The Amazon Connect warehouse (README, "The Connect warehouse").
    "CONNECT_CTR_PREFIX": "ctr/",  # where Firehose writes CTR files in CONNECT_BUCKET
    "CONNECT_SENSOR_LOOKBACK_DAYS": "2",
    "CONNECT_SERVICE_LEVEL_SECONDS": "20",  # answered within this many seconds counts for service level
    "CONNECT_REPORT_EMAIL": "",  # comma-separated recipients of the daily KPI report; empty: no mail
    # Call recording compression with storage tiering (README, "Recordings").
    "RECORDINGS_PRESET": "adpcm-stereo",  # adpcm-stereo | alaw-stereo | alaw-mono | opus-stereo
    "RECORDINGS_STORAGE_CLASS": "STANDARD_IA",  # still instantly playable; GLACIER needs a restore first
    "RECORDINGS_MIN_AGE_DAYS": "7",  # a tick compresses the day this many days old
    "RECORDINGS_CATCHUP_DAYS": "30",  # and any day up to this many days older never done
    "RECORDINGS_CRON": "0 2 * * *",  # UTC
    "RECORDINGS_MAX_ATTEMPTS": "3",  # failures before an object is held until reset
    "RECORDINGS_WORKERS": "0",  # parallel ffmpeg processes; 0: one per CPU core
    "RECORDINGS_INSTANCE_ALIAS": "",  # empty: every connect/<alias>/ found in CONNECT_BUCKET
    "RECORDINGS_PRICES": "",  # JSON {storage class: USD per GB-month} over the defaults (pricing.py)
    # Unified recordings: Connect call audio + the after-call part of the agent's screen recording.
    "RECORDINGS_AGENT_PREFIX": "agent-recordings/",  # agent screen recordings (+ sidecars) in CONNECT_BUCKET
    "RECORDINGS_UNIFY_LOOKBACK_DAYS": "2",  # days of agent recordings every sensor tick lists
    "RECORDINGS_UNIFY_RETRY_SECONDS": "300",  # first retry after a failed merge; x4 per further failure
    # The monthly billing report (README, "Search, statistics and the billing report").
    "CDR_REPORT_QUERY": "",  # empty: the reference Athena query (REFERENCE.md section 1)
    "CDR_REPORT_CRON": "0 0 1 * *",  # UTC; each tick reports the month before it
    "CDR_REPORT_EMAIL": "",  # comma-separated recipients; empty: no mail
    "CDR_REPORT_SUBJECT": "Amazon Chime billing report {period}",
    "CDR_REPORT_LINK_EXPIRY_SECONDS": "86400",  # S3 mode: the pre-signed link in the mail
    "SMTP_HOST": "",
    "SMTP_PORT": "587",
    "SMTP_USER": "",  # empty: no login
    "SMTP_PASSWORD": "",
    "SMTP_STARTTLS": "true",
    "SMTP_FROM": "cdr-assets@localhost",
    "SMTP_TIMEOUT_SECONDS": "30",
}


def apply_defaults() -> None:
    """Set unset variables to their defaults and make the local paths absolute."""
    for name, value in DEFAULTS.items():
        if not os.environ.get(name):
            os.environ[name] = value
    home = Path(os.environ["CDR_ASSETS_HOME"]).expanduser().resolve()
    os.environ["CDR_ASSETS_HOME"] = str(home)
    if not os.environ["CDR_WAREHOUSE"]:
        os.environ["CDR_WAREHOUSE"] = str(home / "warehouse.duckdb")
    os.environ.setdefault("DAGSTER_HOME", str(home / "dagster"))


def get(name: str) -> str:
    apply_defaults()
    return os.environ[name]


DAGSTER_YAML = """\
# Written by cdr_assets on first use; edit freely, it is not overwritten.
concurrency:
  pools:
    # Every pool is limited to 1; the only pool is "duckdb": one DuckDB writer at a time.
    default_limit: 1
run_retries:
  enabled: true
  max_retries: 2
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """Create $DAGSTER_HOME with our dagster.yaml so sensor cursors survive restarts."""
    apply_defaults()
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    return home
