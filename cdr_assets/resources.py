"""Shared Dagster resources: object storage, the DuckDB warehouse, pipeline settings.

Every value comes from an environment variable through ``EnvVar`` (defaults in
``settings.py``), so the same definitions run on the embedded default and on real S3.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import duckdb
from dagster import ConfigurableResource, EnvVar, Failure
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from cdr_assets import settings
from cdr_assets.reports.mail import PartialDelivery, SmtpSettings, send_email
from cdr_assets.storage import Storage, make_storage
from cdr_assets.warehouse import WAREHOUSE_CONFIG, configure_lake_access


class CdrStorage(ConfigurableResource):
    """Buckets for raw CDRs, Connect data and the lake: local folders or S3."""

    mode: str = Field(description="'local' (folders under home/buckets) or 's3'")
    home: str = Field(description="Root of the embedded default (CDR_ASSETS_HOME)")
    chime_cdr_bucket: str
    connect_bucket: str
    lake_bucket: str
    s3: S3Resource = Field(description="S3 client settings (used when mode is 's3')")

    _storage: Storage | None = PrivateAttr(default=None)

    def get(self) -> Storage:
        if self._storage is None:
            self._storage = make_storage(
                self.mode,
                self.home,
                endpoint_url=self.s3.endpoint_url,
                region_name=self.s3.region_name,
                client_factory=self.s3.get_client,
            )
        return self._storage


class Warehouse(DuckDBResource):
    """The DuckDB file; in S3 mode each connection can read the lake's ``s3://`` paths."""

    storage: CdrStorage

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        os.makedirs(os.path.dirname(os.path.abspath(self.database)), exist_ok=True)
        with super().get_connection() as conn:
            try:
                configure_lake_access(conn, self.storage.get())
                yield conn
            finally:
                conn.close()


class ChimeSettings(ConfigurableResource):
    """Tuning of the CDR pipeline."""

    lookback_days: int = Field(description="Days before today whose prefixes every sensor tick lists")
    sweep_keys: int = Field(description="Keys a sensor tick may re-list to catch out-of-order arrivals")
    quarantine_warn_percent: int = Field(description="Quarantined share of a partition (percent) that warns")
    ingest_workers: int = Field(description="Worker processes for reading objects; 0 = one per core")
    ingest_duckdb_memory_limit: str = Field(
        description="CDR_INGEST_DUCKDB_MEMORY_LIMIT: DuckDB memory limit while ingesting (it spills beyond)"
    )


class Mailer(ConfigurableResource):
    """SMTP for the report mail; every value (the password too) comes from the environment."""

    host: str = Field(description="SMTP_HOST; empty: mail cannot be sent")
    port: int = Field(description="SMTP_PORT")
    user: str = Field(description="SMTP_USER; empty: no login")
    password: str = Field(description="SMTP_PASSWORD")
    starttls: str = Field(description="SMTP_STARTTLS: true/false")
    sender: str = Field(description="SMTP_FROM")
    timeout_seconds: int = Field(description="SMTP_TIMEOUT_SECONDS")

    def send(self, msg: EmailMessage) -> None:
        """Send; a MailError fails the step (retried), a partial delivery fails it without retries."""
        smtp = SmtpSettings(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            starttls=self.starttls.strip().lower() in ("1", "true", "yes", "on"),
            timeout=self.timeout_seconds,
        )
        try:
            send_email(msg, smtp)
        except PartialDelivery as exc:
            raise Failure(
                str(exc),
                allow_retries=False,
                metadata={"accepted": ", ".join(exc.accepted), "refused": ", ".join(exc.refused)},
            ) from exc


class ReportSettings(ConfigurableResource):
    """What the billing report runs and whom it mails."""

    query: str = Field(description="CDR_REPORT_QUERY; empty: the reference Athena query")
    email: str = Field(description="CDR_REPORT_EMAIL: comma-separated recipients; empty: no mail")
    subject: str = Field(description="CDR_REPORT_SUBJECT; {period} becomes YYYY-MM")
    link_expiry_seconds: int = Field(description="CDR_REPORT_LINK_EXPIRY_SECONDS (S3 pre-signed link)")


class ConnectSettings(ConfigurableResource):
    """Tuning of the Amazon Connect CTR warehouse."""

    ctr_prefix: str = Field(description="CONNECT_CTR_PREFIX: Firehose prefix of CTR files in CONNECT_BUCKET")
    lookback_days: int = Field(description="CONNECT_SENSOR_LOOKBACK_DAYS: days the sensor lists")
    sweep_keys: int = Field(description="Keys a sensor tick may re-list to catch out-of-order arrivals")
    service_level_seconds: int = Field(description="CONNECT_SERVICE_LEVEL_SECONDS: service level threshold")
    report_email: str = Field(description="CONNECT_REPORT_EMAIL: recipients of the KPI report; empty: none")
    ingest_workers: int = Field(
        description="Parallel readers of CTR files (DuckDB cursors, decoder processes); 0 = one per core"
    )


class RecordingsSettings(ConfigurableResource):
    """Compression and storage tiering of Connect call recordings (README, "Recordings")."""

    preset: str = Field(description="RECORDINGS_PRESET: adpcm-stereo, alaw-stereo, alaw-mono or opus-stereo")
    storage_class: str = Field(description="RECORDINGS_STORAGE_CLASS of converted recordings")
    max_attempts: int = Field(description="RECORDINGS_MAX_ATTEMPTS: failures before an object is held")
    workers: int = Field(description="RECORDINGS_WORKERS: parallel ffmpeg processes; 0 = one per core")
    instance_alias: str = Field(description="RECORDINGS_INSTANCE_ALIAS; empty: every alias in the bucket")
    prices: str = Field(description="RECORDINGS_PRICES: JSON price overrides, USD per GB-month")
    agent_prefix: str = Field(
        description="RECORDINGS_AGENT_PREFIX: agent screen recordings and their sidecars in CONNECT_BUCKET"
    )
    unify_lookback_days: int = Field(
        description="RECORDINGS_UNIFY_LOOKBACK_DAYS: days of agent recordings a sensor tick lists"
    )
    unify_retry_seconds: int = Field(
        description="RECORDINGS_UNIFY_RETRY_SECONDS: wait before retrying a failed merge (x4 per failure)"
    )


def build_resources() -> dict[str, object]:
    settings.apply_defaults()
    endpoint = os.environ["AWS_ENDPOINT_URL"] or None
    storage = CdrStorage(
        mode=EnvVar("CDR_STORAGE"),
        home=EnvVar("CDR_ASSETS_HOME"),
        chime_cdr_bucket=EnvVar("CHIME_CDR_BUCKET"),
        connect_bucket=EnvVar("CONNECT_BUCKET"),
        lake_bucket=EnvVar("LAKE_BUCKET"),
        s3=S3Resource(
            region_name=EnvVar("AWS_REGION"),
            endpoint_url=EnvVar("AWS_ENDPOINT_URL") if endpoint else None,
        ),
    )
    return {
        "storage": storage,
        "warehouse": Warehouse(
            database=EnvVar("CDR_WAREHOUSE"), storage=storage, connection_config=WAREHOUSE_CONFIG
        ),
        "chime_settings": ChimeSettings(
            lookback_days=EnvVar.int("CDR_SENSOR_LOOKBACK_DAYS"),
            sweep_keys=EnvVar.int("CDR_SENSOR_SWEEP_KEYS"),
            quarantine_warn_percent=EnvVar.int("CDR_QUARANTINE_WARN_PERCENT"),
            ingest_workers=EnvVar.int("CDR_INGEST_WORKERS"),
            ingest_duckdb_memory_limit=EnvVar("CDR_INGEST_DUCKDB_MEMORY_LIMIT"),
        ),
        "mailer": Mailer(
            host=EnvVar("SMTP_HOST"),
            port=EnvVar.int("SMTP_PORT"),
            user=EnvVar("SMTP_USER"),
            password=EnvVar("SMTP_PASSWORD"),
            starttls=EnvVar("SMTP_STARTTLS"),
            sender=EnvVar("SMTP_FROM"),
            timeout_seconds=EnvVar.int("SMTP_TIMEOUT_SECONDS"),
        ),
        "connect_settings": ConnectSettings(
            ctr_prefix=EnvVar("CONNECT_CTR_PREFIX"),
            lookback_days=EnvVar.int("CONNECT_SENSOR_LOOKBACK_DAYS"),
            sweep_keys=EnvVar.int("CDR_SENSOR_SWEEP_KEYS"),
            service_level_seconds=EnvVar.int("CONNECT_SERVICE_LEVEL_SECONDS"),
            report_email=EnvVar("CONNECT_REPORT_EMAIL"),
            ingest_workers=EnvVar.int("CDR_INGEST_WORKERS"),
        ),
        "recordings_settings": RecordingsSettings(
            preset=EnvVar("RECORDINGS_PRESET"),
            storage_class=EnvVar("RECORDINGS_STORAGE_CLASS"),
            max_attempts=EnvVar.int("RECORDINGS_MAX_ATTEMPTS"),
            workers=EnvVar.int("RECORDINGS_WORKERS"),
            instance_alias=EnvVar("RECORDINGS_INSTANCE_ALIAS"),
            prices=EnvVar("RECORDINGS_PRICES"),
            agent_prefix=EnvVar("RECORDINGS_AGENT_PREFIX"),
            unify_lookback_days=EnvVar.int("RECORDINGS_UNIFY_LOOKBACK_DAYS"),
            unify_retry_seconds=EnvVar.int("RECORDINGS_UNIFY_RETRY_SECONDS"),
        ),
        "report_settings": ReportSettings(
            query=EnvVar("CDR_REPORT_QUERY"),
            email=EnvVar("CDR_REPORT_EMAIL"),
            subject=EnvVar("CDR_REPORT_SUBJECT"),
            link_expiry_seconds=EnvVar.int("CDR_REPORT_LINK_EXPIRY_SECONDS"),
        ),
    }
