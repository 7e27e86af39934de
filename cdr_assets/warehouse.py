"""DuckDB access to the lake in either storage mode (pure: no Dagster)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import duckdb

from cdr_assets.storage import S3Storage, Storage

# New warehouse files are written in the storage format of the pinned DuckDB. With the default
# (v1.0.0) format every checkpoint converts primary-key indexes back to the old layout, so the
# Connect load's COMMIT grew with fact_contact (a 1M-CTR bulk load: 32 s -> 26 s). Files made
# before keep their format; DuckDB older than 1.4 cannot open new ones.
WAREHOUSE_CONFIG = {"storage_compatibility_version": "v1.4.0"}


@contextlib.contextmanager
def restoring(restore: Callable[[], object]) -> Iterator[None]:
    """Run ``restore`` (put a DuckDB setting back) after the block; after a failed block only as
    far as it can, so that the block's error is the one reported."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            restore()
        raise
    restore()


def httpfs_extension_path() -> str:
    """The httpfs extension shipped by the ``duckdb-ext-httpfs`` wheel (no download at run time)."""
    import duckdb_ext  # provided by duckdb-ext-httpfs

    base = Path(next(iter(duckdb_ext.__path__)))
    found = sorted(base.glob(f"extensions/v{duckdb.__version__}/*/httpfs.duckdb_extension"))
    if not found:
        raise RuntimeError(
            f"no httpfs extension for DuckDB {duckdb.__version__} under {base}; "
            "install the matching duckdb-ext-httpfs"
        )
    return str(found[0])


def configure_lake_access(conn: duckdb.DuckDBPyConnection, storage: Storage) -> None:
    """Let ``conn`` read ``s3://`` paths with the storage's endpoint and credentials."""
    if not isinstance(storage, S3Storage):
        return
    conn.execute(f"LOAD '{httpfs_extension_path()}'")
    creds = storage.client._request_signer._credentials
    frozen = creds.get_frozen_credentials() if creds is not None else None
    parts = ["TYPE s3", f"REGION '{storage.region_name}'"]
    if frozen is not None:
        parts += [f"KEY_ID '{frozen.access_key}'", f"SECRET '{frozen.secret_key}'"]
        if frozen.token:
            parts.append(f"SESSION_TOKEN '{frozen.token}'")
    if storage.endpoint_url:
        url = urlparse(storage.endpoint_url)
        parts += [
            f"ENDPOINT '{url.netloc}'",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if url.scheme == 'https' else 'false'}",
        ]
    conn.execute(f"CREATE OR REPLACE TEMPORARY SECRET cdr_lake ({', '.join(parts)})")
