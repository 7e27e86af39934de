"""Shared Dagster resources: object storage, the DuckDB warehouse, pipeline settings.

Every value comes from an environment variable through ``EnvVar`` (defaults in
``settings.py``), so the same definitions run on the embedded default and on real S3.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource, EnvVar
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from cdr_assets import settings
from cdr_assets.storage import Storage, make_storage
from cdr_assets.warehouse import configure_lake_access


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
        "warehouse": Warehouse(database=EnvVar("CDR_WAREHOUSE"), storage=storage),
        "chime_settings": ChimeSettings(
            lookback_days=EnvVar.int("CDR_SENSOR_LOOKBACK_DAYS"),
            sweep_keys=EnvVar.int("CDR_SENSOR_SWEEP_KEYS"),
            quarantine_warn_percent=EnvVar.int("CDR_QUARANTINE_WARN_PERCENT"),
            ingest_workers=EnvVar.int("CDR_INGEST_WORKERS"),
        ),
    }
