"""Object storage behind one interface: local folders as buckets, or S3.

Pure code (no Dagster): the Dagster resource in ``resources.py`` builds one of these, and
worker processes rebuild it from its pickled settings. Both backends keep S3's semantics:
keys listed in UTF-8 byte order, ``start_after`` exclusive, delimiter listings returning
common prefixes, atomic puts (a reader sees the old object or the new one, never half).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow.fs as pafs

STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
)


class StorageError(Exception):
    """A storage request that cannot be served (bad key, missing object, ...)."""


class ObjectNotFound(StorageError):
    pass


@dataclass(frozen=True, slots=True)  # slots: a day's listing holds a million of these
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class ObjectHead:
    key: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    content_type: str | None = None


class Storage(Protocol):
    """What the pipelines need from a bucket store."""

    mode: str

    def list_objects(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]: ...

    def list_prefixes(self, bucket: str, prefix: str = "", delimiter: str = "/") -> list[str]: ...

    def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes: ...

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | memoryview,
        *,
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
        content_type: str | None = None,
    ) -> None: ...

    def head(self, bucket: str, key: str) -> ObjectHead | None: ...

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
    ) -> None: ...

    def delete(self, bucket: str, key: str) -> None: ...

    def ensure_bucket(self, bucket: str) -> None: ...

    def uri(self, bucket: str, key: str = "") -> str: ...

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, Callable[[str, str], str]]: ...


def _check_storage_class(storage_class: str | None) -> None:
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise StorageError(
            f"unknown storage class {storage_class!r}; expected one of {', '.join(STORAGE_CLASSES)}"
        )


class LocalStorage:
    """Buckets are folders ``<root>/buckets/<bucket>/``; a key is a path below one.

    Object metadata and storage class (which a file system cannot hold) live in a parallel
    tree ``<root>/object-meta/<bucket>/<key>.json``, so listings see only real objects.
    """

    mode = "local"

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self._tmp = self.root / "tmp"
        # put() is the hot path of generation and lake writes: remember folders made, name
        # temp files from a counter, and validate keys by their parts (no resolve() calls).
        self._made: set[str] = set()
        self._seq = itertools.count()

    # -- paths -------------------------------------------------------------------------
    def bucket_path(self, bucket: str) -> Path:
        if not bucket or "/" in bucket or bucket in (".", ".."):
            raise StorageError(f"invalid bucket name {bucket!r}")
        return self.root / "buckets" / bucket

    def _path_str(self, bucket: str, key: str, tree: str = "buckets") -> str:
        # Plain strings: this runs once per object read or written, and pathlib costs ~20 us.
        base = str(self.bucket_path(bucket) if tree == "buckets" else self.root / tree / bucket)
        if not key or key[0] == "/" or any(p in ("", ".", "..") for p in key.split("/")):
            raise StorageError(f"refused key {key!r}: empty, absolute or escaping its bucket")
        # With no empty, "." or ".." part and no leading "/", the path stays inside base.
        return f"{base}/{key}"

    def _path(self, bucket: str, key: str, tree: str = "buckets") -> Path:
        return Path(self._path_str(bucket, key, tree))

    def _meta_path(self, bucket: str, key: str) -> Path:
        path = self._path(bucket, key, tree="object-meta")
        return path.with_name(path.name + ".json")

    # -- listing -------------------------------------------------------------------------
    def list_objects(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        found = self._prefix_folder(bucket, prefix)
        if found is None:
            return
        start_dir, rel, name_part = found
        yield from self._walk(start_dir, rel, name_part, start_after)

    def _prefix_folder(self, bucket: str, prefix: str) -> tuple[Path, str, str] | None:
        """The deepest folder a prefix names, its key prefix, and the name part left to filter.

        None when no key can match: the folder is missing, or the prefix has a component no
        valid key has ("..", ".", "", a leading "/"), which also keeps listings inside the bucket.
        """
        base = self.bucket_path(bucket)
        dir_part, _, name_part = prefix.rpartition("/")
        if prefix.startswith("/") or (dir_part and any(p in ("", ".", "..") for p in dir_part.split("/"))):
            return None
        folder = base.joinpath(*dir_part.split("/")) if dir_part else base
        if not folder.is_dir():
            return None
        return folder, (dir_part + "/" if dir_part else ""), name_part

    def _walk(
        self, folder: Path, rel: str, name_prefix: str, start_after: str | None
    ) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        # S3 orders by key bytes: a folder sorts as "<name>/".
        items: list[tuple[str, os.DirEntry[str]]] = []
        for entry in entries:
            if name_prefix and not entry.name.startswith(name_prefix):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            items.append((rel + entry.name + ("/" if is_dir else ""), entry))
        items.sort(key=lambda item: item[0].encode())
        for key, entry in items:
            if key.endswith("/"):
                if start_after is not None and key < start_after and not start_after.startswith(key):
                    continue  # every key below this folder sorts before start_after
                yield from self._walk(Path(entry.path), key, "", start_after)
            elif start_after is None or key > start_after:
                yield ObjectInfo(key=key, size=entry.stat(follow_symlinks=False).st_size)

    def list_prefixes(self, bucket: str, prefix: str = "", delimiter: str = "/") -> list[str]:
        if delimiter != "/":
            raise StorageError("local storage lists common prefixes with delimiter '/' only")
        found = self._prefix_folder(bucket, prefix)
        if found is None:
            return []
        folder, rel, name_part = found
        # Like S3, a common prefix exists only while an object lies below it: deletes leave
        # empty folders behind, which must not show up.
        names = [
            e.name
            for e in os.scandir(folder)
            if e.is_dir(follow_symlinks=False)
            and e.name.startswith(name_part)
            and next(self._walk(Path(e.path), "", "", None), None) is not None
        ]
        return sorted((rel + n + "/" for n in names), key=str.encode)

    # -- objects -------------------------------------------------------------------------
    def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        path = self._path_str(bucket, key)
        try:
            with open(path, "rb") as fh:
                return fh.read() if max_bytes is None else fh.read(max_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"{bucket}/{key}") from exc

    def _mkdir(self, folder: str) -> None:
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    def _atomic_write(self, path: Path, data: bytes | memoryview) -> None:
        tmp_dir = str(self._tmp)
        self._mkdir(tmp_dir)
        self._mkdir(os.path.dirname(path))
        tmp = f"{tmp_dir}/{os.getpid()}-{next(self._seq)}.part"
        try:
            # No fsync: rename already gives readers all-or-nothing; durability across a
            # power cut is the file system's job and would cost ~10x per small object.
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except FileNotFoundError:  # a remembered folder was removed meanwhile
                self._made.clear()
                self._mkdir(tmp_dir)
                self._mkdir(os.path.dirname(path))
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | memoryview,
        *,
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
        content_type: str | None = None,
    ) -> None:
        _check_storage_class(storage_class)
        path = self._path(bucket, key)
        try:
            self._atomic_write(path, data)
        except IsADirectoryError as exc:
            raise StorageError(f"refused key {key!r}: a folder of that name exists locally") from exc
        self._write_meta(bucket, key, metadata, storage_class, content_type)

    def _write_meta(
        self,
        bucket: str,
        key: str,
        metadata: dict[str, str] | None,
        storage_class: str | None,
        content_type: str | None,
    ) -> None:
        meta_path = self._meta_path(bucket, key)
        if not metadata and storage_class in (None, "STANDARD") and content_type is None:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(meta_path)
            return
        doc = {
            "metadata": dict(metadata or {}),
            "storage_class": storage_class or "STANDARD",
            "content_type": content_type,
        }
        self._atomic_write(meta_path, orjson.dumps(doc))

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        path = self._path(bucket, key)
        try:
            size = path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):  # a key "below" a file does not exist
            return None
        if not path.is_file():
            return None
        try:
            doc = orjson.loads(self._meta_path(bucket, key).read_bytes())
        except FileNotFoundError:
            doc = {}
        return ObjectHead(
            key=key,
            size=size,
            metadata=doc.get("metadata", {}),
            storage_class=doc.get("storage_class", "STANDARD"),
            content_type=doc.get("content_type"),
        )

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
    ) -> None:
        _check_storage_class(storage_class)
        head = self.head(src_bucket, src_key)
        if head is None:
            raise ObjectNotFound(f"{src_bucket}/{src_key}")
        src, dst = self._path(src_bucket, src_key), self._path(dst_bucket, dst_key)
        if src != dst:
            self._tmp.mkdir(parents=True, exist_ok=True)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp / f"{uuid.uuid4().hex}.part"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        # Like S3's CopyObject: metadata is copied unless replaced (replacing drops the content
        # type too), and the copy gets the storage class asked for, else STANDARD, not the source's.
        self._write_meta(
            dst_bucket,
            dst_key,
            head.metadata if metadata is None else metadata,
            storage_class or "STANDARD",
            head.content_type if metadata is None else None,
        )

    def delete(self, bucket: str, key: str) -> None:
        for path in (self._path(bucket, key), self._meta_path(bucket, key)):
            # Nothing there (or a file where a folder would be) is not an error, as on S3.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()

    def ensure_bucket(self, bucket: str) -> None:
        self.bucket_path(bucket).mkdir(parents=True, exist_ok=True)

    def uri(self, bucket: str, key: str = "") -> str:
        path = self.bucket_path(bucket)
        return str(path.joinpath(*key.split("/"))) if key else str(path)

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, Callable[[str, str], str]]:
        return pafs.LocalFileSystem(), self.uri


class S3Storage:
    """S3 (or any S3 API) through a boto3 client.

    The client comes from dagster-aws's ``S3Resource`` in the Dagster shell; worker processes
    rebuild one from the plain settings kept here, since clients do not pickle.
    """

    mode = "s3"

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        client_factory: Callable[[], Any] | None = None,
    ):
        self.endpoint_url = endpoint_url or None
        self.region_name = region_name or os.environ.get("AWS_REGION") or "us-east-1"
        self._client = client
        self._client_factory = client_factory

    def __getstate__(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "region_name": self.region_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region_name,
                    config=Config(max_pool_connections=32, retries={"mode": "standard"}),
                )
        return self._client

    def _not_found(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code in ("NoSuchKey", "404", "NotFound")

    def list_objects(
        self, bucket: str, prefix: str = "", *, start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for item in page.get("Contents", []):
                yield ObjectInfo(key=item["Key"], size=item["Size"])

    def list_prefixes(self, bucket: str, prefix: str = "", delimiter: str = "/") -> list[str]:
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter=delimiter):
            out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return out

    def get(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if max_bytes is not None:
            if max_bytes <= 0:
                return b""
            kwargs["Range"] = f"bytes=0-{max_bytes - 1}"
        try:
            return self.client.get_object(**kwargs)["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise ObjectNotFound(f"{bucket}/{key}") from exc
        except Exception as exc:
            # A range on an empty object answers 416; it has no bytes to give.
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | memoryview,
        *,
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
        content_type: str | None = None,
    ) -> None:
        _check_storage_class(storage_class)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": bytes(data)}
        if metadata:
            kwargs["Metadata"] = metadata
        if storage_class:
            kwargs["StorageClass"] = storage_class
        if content_type:
            kwargs["ContentType"] = content_type
        self.client.put_object(**kwargs)

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        try:
            resp = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if self._not_found(exc):
                return None
            raise
        return ObjectHead(
            key=key,
            size=resp["ContentLength"],
            metadata=resp.get("Metadata", {}),
            storage_class=resp.get("StorageClass", "STANDARD"),
            content_type=resp.get("ContentType"),
        )

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        metadata: dict[str, str] | None = None,
        storage_class: str | None = None,
    ) -> None:
        _check_storage_class(storage_class)
        kwargs: dict[str, Any] = {
            "Bucket": dst_bucket,
            "Key": dst_key,
            "CopySource": {"Bucket": src_bucket, "Key": src_key},
        }
        if metadata is not None:
            kwargs["Metadata"] = metadata
            kwargs["MetadataDirective"] = "REPLACE"
        elif src_bucket == dst_bucket and src_key == dst_key:
            # S3 refuses an in-place copy that changes nothing; keep metadata, restate it.
            kwargs["MetadataDirective"] = "COPY"
        if storage_class:
            kwargs["StorageClass"] = storage_class
        try:
            self.client.copy_object(**kwargs)
        except Exception as exc:
            if self._not_found(exc):
                raise ObjectNotFound(f"{src_bucket}/{src_key}") from exc
            raise

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception:
            self.client.create_bucket(Bucket=bucket)

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, Callable[[str, str], str]]:
        creds = self.client._request_signer._credentials  # the same credentials boto3 resolved
        frozen = creds.get_frozen_credentials() if creds is not None else None
        fs = pafs.S3FileSystem(
            access_key=frozen.access_key if frozen else None,
            secret_key=frozen.secret_key if frozen else None,
            session_token=frozen.token if frozen else None,
            region=self.region_name,
            endpoint_override=self.endpoint_url,
            scheme="http" if (self.endpoint_url or "").startswith("http://") else "https",
        )
        return fs, lambda bucket, key="": f"{bucket}/{key}"


def make_storage(
    mode: str,
    home: str,
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    client_factory: Callable[[], Any] | None = None,
) -> Storage:
    """The backend for ``CDR_STORAGE``: ``local`` folders under ``home``, or ``s3``."""
    if mode == "local":
        return LocalStorage(home)
    if mode == "s3":
        # boto3 reads AWS_ENDPOINT_URL itself; pyarrow and DuckDB need it spelled out.
        return S3Storage(
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=region_name,
            client_factory=client_factory,
        )
    raise StorageError(f"CDR_STORAGE must be 'local' or 's3', not {mode!r}")


def storage_from_env() -> Storage:
    """The configured backend, for code outside Dagster (CLI, benchmarks, tests)."""
    return make_storage(
        os.environ.get("CDR_STORAGE", "local"),
        os.environ.get("CDR_ASSETS_HOME", ".cdr_assets"),
        region_name=os.environ.get("AWS_REGION"),
    )
