"""Shared fixtures: a real S3 API server on 127.0.0.1 (moto), and an isolated environment.

``cdr_env`` points every setting at a fresh folder for one test and, for the "s3" mode,
at fresh buckets on the session's S3 server, so tests never share state.
"""

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class CdrEnv:
    mode: str
    home: Path
    chime_cdr_bucket: str
    connect_bucket: str
    lake_bucket: str

    def storage(self):
        from cdr_assets.storage import storage_from_env

        return storage_from_env()

    def resources(self) -> dict[str, object]:
        from cdr_assets.resources import build_resources

        return build_resources()


def _set_env(monkeypatch: pytest.MonkeyPatch, env: CdrEnv, endpoint: str | None) -> None:
    values = {
        "CDR_ASSETS_HOME": str(env.home),
        "CDR_WAREHOUSE": str(env.home / "warehouse.duckdb"),
        "DAGSTER_HOME": str(env.home / "dagster"),
        "CDR_STORAGE": env.mode,
        "CHIME_CDR_BUCKET": env.chime_cdr_bucket,
        "CONNECT_BUCKET": env.connect_bucket,
        "LAKE_BUCKET": env.lake_bucket,
        "AWS_ENDPOINT_URL": endpoint or "",
        "CDR_INGEST_WORKERS": "2",
    }
    if endpoint:
        values |= {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["local", "s3"])
def cdr_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CdrEnv:
    """Both storage modes; tests using it run twice."""
    return _make_env(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def local_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CdrEnv:
    return _make_env("local", request, tmp_path, monkeypatch)


def _make_env(mode: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> CdrEnv:
    suffix = uuid.uuid4().hex[:8]
    env = CdrEnv(
        mode=mode,
        home=tmp_path / "home",
        chime_cdr_bucket=f"chime-cdrs-{suffix}",
        connect_bucket=f"connect-{suffix}",
        lake_bucket=f"cdr-lake-{suffix}",
    )
    endpoint = request.getfixturevalue("s3_endpoint") if mode == "s3" else None
    _set_env(monkeypatch, env, endpoint)
    store = env.storage()
    for bucket in (env.chime_cdr_bucket, env.connect_bucket, env.lake_bucket):
        store.ensure_bucket(bucket)
    assert os.environ["CDR_STORAGE"] == mode
    return env
