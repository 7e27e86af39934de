"""Behaviour of the Storage backends.

Every test taking ``cdr_env`` runs twice, on local folders and on a real S3 API (moto), with
the same expectations: that is what proves the local backend behaves like S3. The tests at
the end are local-only (key safety and atomic writes of the folder backend).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdr_assets.storage import STORAGE_CLASSES, LocalStorage, ObjectNotFound, Storage, StorageError

CDRS = "Amazon-Chime-Voice-Connector-CDRs/json/"


@pytest.fixture
def storage(cdr_env) -> Storage:
    return cdr_env.storage()


@pytest.fixture
def bucket(cdr_env) -> str:
    return cdr_env.chime_cdr_bucket


def _put_all(storage: Storage, bucket: str, keys: list[str]) -> None:
    for key in keys:
        storage.put(bucket, key, key.encode())


def _keys(storage: Storage, bucket: str, prefix: str = "", start_after: str | None = None) -> list[str]:
    return [o.key for o in storage.list_objects(bucket, prefix, start_after=start_after)]


def _s3_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


# -- objects -------------------------------------------------------------------------------


def test_put_get_round_trip(storage: Storage, bucket: str) -> None:
    data = bytes(range(256)) + "Zürich ☎".encode()
    storage.put(bucket, "x/y/blob", data)
    assert storage.get(bucket, "x/y/blob") == data
    storage.put(bucket, "x/y/blob", b"second version")  # overwrite in place
    assert storage.get(bucket, "x/y/blob") == b"second version"
    storage.put(bucket, "empty", b"")
    assert storage.get(bucket, "empty") == b""


def test_get_max_bytes_returns_a_prefix(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "digits", b"0123456789")
    assert storage.get(bucket, "digits", max_bytes=1) == b"0"
    assert storage.get(bucket, "digits", max_bytes=4) == b"0123"
    assert storage.get(bucket, "digits", max_bytes=10) == b"0123456789"
    assert storage.get(bucket, "digits", max_bytes=1000) == b"0123456789"
    assert storage.get(bucket, "digits", max_bytes=0) == b""
    storage.put(bucket, "empty", b"")
    assert storage.get(bucket, "empty", max_bytes=5) == b""


def test_get_missing_key_raises_object_not_found(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "folder/child", b"1")
    for key in ("nope", "folder/nope", "folder", "folder/child/deeper"):
        with pytest.raises(ObjectNotFound):
            storage.get(bucket, key)
    with pytest.raises(ObjectNotFound):
        storage.get(bucket, "nope", max_bytes=10)
    assert issubclass(ObjectNotFound, StorageError)


def test_head(storage: Storage, bucket: str) -> None:
    storage.put(
        bucket,
        "rec/a.wav",
        b"RIFF....WAVE",
        metadata={"converted": "false", "contact-id": "c1"},
        content_type="audio/wav",
    )
    head = storage.head(bucket, "rec/a.wav")
    assert head is not None
    assert head.key == "rec/a.wav"
    assert head.size == 12
    assert head.metadata == {"converted": "false", "contact-id": "c1"}
    assert head.storage_class == "STANDARD"
    assert head.content_type == "audio/wav"

    storage.put(bucket, "plain", b"abc")
    plain = storage.head(bucket, "plain")
    assert plain is not None
    assert (plain.size, plain.metadata, plain.storage_class) == (3, {}, "STANDARD")

    assert storage.head(bucket, "missing") is None
    assert storage.head(bucket, "rec") is None  # a "folder" is not an object
    assert storage.head(bucket, "rec/a.wav/x") is None


def test_put_with_metadata_and_storage_class(storage: Storage, bucket: str) -> None:
    for storage_class in STORAGE_CLASSES:
        key = f"k/{storage_class}"
        storage.put(
            bucket, key, b"data", metadata={"m": "v", "class": storage_class}, storage_class=storage_class
        )
        head = storage.head(bucket, key)
        assert head is not None
        assert (head.size, head.metadata, head.storage_class) == (
            4,
            {"m": "v", "class": storage_class},
            storage_class,
        )
    # Metadata never appears as an object of its own.
    assert _keys(storage, bucket) == _s3_order([f"k/{c}" for c in STORAGE_CLASSES])


def test_copy_in_place_changing_storage_class_keeps_metadata(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "r.wav", b"audio", metadata={"converted": "true"}, content_type="audio/wav")
    storage.copy(bucket, "r.wav", bucket, "r.wav", storage_class="GLACIER_IR")
    head = storage.head(bucket, "r.wav")
    assert head is not None
    assert head.storage_class == "GLACIER_IR"
    assert head.metadata == {"converted": "true"}
    assert head.content_type == "audio/wav"
    assert storage.get(bucket, "r.wav") == b"audio"
    assert _keys(storage, bucket) == ["r.wav"]


def test_copy_in_place_replacing_metadata(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "r.wav", b"audio", metadata={"old": "1", "keep": "no"}, content_type="audio/wav")
    storage.copy(
        bucket, "r.wav", bucket, "r.wav", metadata={"converted": "true"}, storage_class="STANDARD_IA"
    )
    head = storage.head(bucket, "r.wav")
    assert head is not None
    assert head.metadata == {"converted": "true"}  # replaced, not merged
    assert head.storage_class == "STANDARD_IA"
    # S3 replaces the content type along with the metadata (to its default, which local spells None).
    assert head.content_type in (None, "binary/octet-stream")
    assert storage.get(bucket, "r.wav") == b"audio"

    storage.copy(bucket, "r.wav", bucket, "r.wav", metadata={})  # replace with nothing
    head = storage.head(bucket, "r.wav")
    assert head is not None
    assert head.metadata == {}
    # S3's trap, reproduced locally: a copy without a storage class is STANDARD again.
    assert head.storage_class == "STANDARD"


def test_copy_to_another_key_and_bucket(cdr_env, storage: Storage, bucket: str) -> None:
    storage.put(bucket, "src/a", b"payload", metadata={"m": "1"}, storage_class="STANDARD_IA")
    storage.copy(bucket, "src/a", bucket, "dst/deep/b")
    assert storage.get(bucket, "dst/deep/b") == b"payload"
    assert storage.get(bucket, "src/a") == b"payload"  # the source stays
    head = storage.head(bucket, "dst/deep/b")
    assert head is not None
    # Metadata is copied; the storage class is not (S3 CopyObject defaults it to STANDARD).
    assert (head.size, head.metadata, head.storage_class) == (7, {"m": "1"}, "STANDARD")

    other = cdr_env.lake_bucket
    storage.copy(bucket, "src/a", other, "copied", metadata={"n": "2"}, storage_class="GLACIER_IR")
    head = storage.head(other, "copied")
    assert head is not None
    assert (head.metadata, head.storage_class) == ({"n": "2"}, "GLACIER_IR")
    assert storage.head(bucket, "src/a").metadata == {"m": "1"}  # type: ignore[union-attr]
    assert _keys(storage, bucket) == ["dst/deep/b", "src/a"]
    assert _keys(storage, other) == ["copied"]


def test_copy_overwrites_an_existing_destination(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "a", b"new")
    storage.put(bucket, "b", b"old, longer content", metadata={"stale": "1"})
    storage.copy(bucket, "a", bucket, "b")
    assert storage.get(bucket, "b") == b"new"
    assert storage.head(bucket, "b").metadata == {}  # type: ignore[union-attr]


def test_copy_of_missing_source_raises_object_not_found(storage: Storage, bucket: str) -> None:
    with pytest.raises(ObjectNotFound):
        storage.copy(bucket, "missing", bucket, "dst")
    assert storage.head(bucket, "dst") is None


def test_delete(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "d/one", b"1", metadata={"m": "1"}, storage_class="STANDARD_IA")
    storage.put(bucket, "d/two", b"2")
    storage.delete(bucket, "d/one")
    assert storage.head(bucket, "d/one") is None
    with pytest.raises(ObjectNotFound):
        storage.get(bucket, "d/one")
    assert _keys(storage, bucket) == ["d/two"]

    storage.delete(bucket, "d/one")  # already gone: not an error
    storage.delete(bucket, "never/existed")
    storage.delete(bucket, "d/two/below-an-object")  # locally a path through a file
    assert _keys(storage, bucket) == ["d/two"]

    # A new object under a deleted key starts clean: no metadata left over.
    storage.put(bucket, "d/one", b"again")
    head = storage.head(bucket, "d/one")
    assert head is not None
    assert (head.metadata, head.storage_class) == ({}, "STANDARD")


def test_unknown_storage_class_raises(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "k", b"x")
    for storage_class in ("standard", "DEEP_ARCHIVE", "REDUCED_REDUNDANCY", ""):
        with pytest.raises(StorageError, match="storage class"):
            storage.put(bucket, "new", b"x", storage_class=storage_class)
        with pytest.raises(StorageError, match="storage class"):
            storage.copy(bucket, "k", bucket, "k", storage_class=storage_class)
        with pytest.raises(StorageError, match="storage class"):
            storage.copy(bucket, "k", bucket, "k2", storage_class=storage_class)
    assert storage.head(bucket, "new") is None
    assert storage.head(bucket, "k2") is None
    assert storage.head(bucket, "k").storage_class == "STANDARD"  # type: ignore[union-attr]


# -- listing -------------------------------------------------------------------------------

# File/folder names chosen so that byte order differs from a naive folder walk: '-' (0x2d)
# and '.' (0x2e) sort before '/' (0x2f), which sorts before '0' and letters; upper case
# before lower case; multi-byte UTF-8 after ASCII.
TRICKY = [
    "a-b",
    "a/c",
    "a0",
    "a.txt",
    "a/b-y",
    "a/b/z",
    "a/b/a/deep",
    "a/b0",
    "a/b.x",
    "b",
    "B",
    "~tilde",
    "é/x",
    "z/é",
    "z/e",
]


def test_list_objects_in_s3_byte_order(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "a/c", b"12345")
    storage.put(bucket, "a0", b"")
    storage.put(bucket, "a-b", b"1")
    assert _keys(storage, bucket) == ["a-b", "a/c", "a0"]
    assert [(o.key, o.size) for o in storage.list_objects(bucket)] == [("a-b", 1), ("a/c", 5), ("a0", 0)]

    _put_all(storage, bucket, TRICKY)
    listed = _keys(storage, bucket)
    assert listed == _s3_order(TRICKY)
    assert listed[:8] == ["B", "a-b", "a.txt", "a/b-y", "a/b.x", "a/b/a/deep", "a/b/z", "a/b0"]
    assert listed[-4:] == ["z/e", "z/é", "~tilde", "é/x"]
    assert {o.key: o.size for o in storage.list_objects(bucket)} == {k: len(k.encode()) for k in TRICKY}


def test_list_objects_with_prefix(storage: Storage, bucket: str) -> None:
    _put_all(storage, bucket, TRICKY)
    assert _keys(storage, bucket, "a/b") == ["a/b-y", "a/b.x", "a/b/a/deep", "a/b/z", "a/b0"]  # mid-name
    assert _keys(storage, bucket, "a/b/") == ["a/b/a/deep", "a/b/z"]
    assert _keys(storage, bucket, "a") == [
        *["a-b", "a.txt", "a/b-y", "a/b.x", "a/b/a/deep", "a/b/z", "a/b0", "a/c", "a0"]
    ]
    assert _keys(storage, bucket, "a/b/a/deep") == ["a/b/a/deep"]  # a whole key is a prefix too
    assert _keys(storage, bucket, "z/") == ["z/e", "z/é"]
    assert _keys(storage, bucket, "é") == ["é/x"]
    for prefix in ("zz", "a/b/q", "nothing/", "a/c/", "a/b/z/"):
        assert _keys(storage, bucket, prefix) == [], prefix
    for prefix in ("", "a", "a/", "a/b", "a/b/", "z", "~"):
        assert _keys(storage, bucket, prefix) == [k for k in _s3_order(TRICKY) if k.startswith(prefix)]


def test_list_objects_chime_prefix_ending_mid_name(storage: Storage, bucket: str) -> None:
    keys = [f"{CDRS}vc1/2024/01/{d:02d}/10.00.00.000_t{d}" for d in (1, 5, 9, 10, 19, 20)]
    keys += [f"{CDRS}vc10/2024/01/01/10.00.00.000_t", f"{CDRS}vc1/2024/02/01/10.00.00.000_t"]
    _put_all(storage, bucket, keys)
    got = _keys(storage, bucket, f"{CDRS}vc1/2024/01/0")
    assert got == [f"{CDRS}vc1/2024/01/{d:02d}/10.00.00.000_t{d}" for d in (1, 5, 9)]
    assert _keys(storage, bucket, f"{CDRS}vc1/2024/01/1") == [
        f"{CDRS}vc1/2024/01/10/10.00.00.000_t10",
        f"{CDRS}vc1/2024/01/19/10.00.00.000_t19",
    ]
    assert len(_keys(storage, bucket, f"{CDRS}vc1")) == 8  # vc1/ and vc10/
    assert len(_keys(storage, bucket, f"{CDRS}vc1/")) == 7
    assert _keys(storage, bucket, f"{CDRS}vc1/2024/01/10/10.00") == [f"{CDRS}vc1/2024/01/10/10.00.00.000_t10"]


START_AFTERS = [
    "",  # before everything
    "a-b",  # an existing key: exclusive
    "a/b/a/deep",  # an existing key deep inside a nested folder
    "a/b/a",  # not a key: the name of a folder, without the slash
    "a/b/",  # not a key: a folder with its slash
    "a/b/m",  # not a key, inside a folder, between two keys
    "a/b-",  # not a key, sorts just before "a/b-y"
    "a/a/zzz",  # not a key, inside a folder that does not exist
    "a/c",
    "a0",
    "a1",
    "A",
    "z/e",
    "~",
    "é/x",  # the last key
    "ÿ",  # after everything
]


def test_list_objects_start_after_is_exclusive(storage: Storage, bucket: str) -> None:
    _put_all(storage, bucket, TRICKY)
    ordered = _s3_order(TRICKY)
    for prefix in ("", "a/", "a/b", "z"):
        for start_after in START_AFTERS:
            expected = [k for k in ordered if k.startswith(prefix) and k.encode() > start_after.encode()]
            assert _keys(storage, bucket, prefix, start_after) == expected, (prefix, start_after)


def test_list_objects_start_after_examples(storage: Storage, bucket: str) -> None:
    _put_all(storage, bucket, TRICKY)
    assert _keys(storage, bucket, start_after="a/b/a/deep")[:3] == ["a/b/z", "a/b0", "a/c"]
    assert _keys(storage, bucket, "a/b/", start_after="a/b/a/deep") == ["a/b/z"]
    assert _keys(storage, bucket, "a/b/", start_after="a/b/m") == ["a/b/z"]
    assert _keys(storage, bucket, "a/", start_after="a/b/zz") == ["a/b0", "a/c"]
    assert _keys(storage, bucket, start_after="é/x") == []


def test_list_prefixes_per_voice_connector(storage: Storage, bucket: str) -> None:
    vcs = ["abcdef1ghij2klmno3pqr4", "vc1", "vc10", "vc1-b", "Vc2", "vc2"]
    keys = [f"{CDRS}{vc}/2024/05/0{i % 3 + 1}/10.00.00.000_t{i}" for i, vc in enumerate(vcs)]
    keys += [
        f"{CDRS}vc1/2024/06/01/11.00.00.000_t",  # a second object under one prefix
        f"{CDRS}stray-object",  # an object, not a folder: no common prefix
        "Amazon-Chime-Voice-Connector-SDRs/json/sdrvc/2024/05/01/10.00.00.000_s",
        "Amazon-Chime-SMADRs/json/sma/2024/05/01/10.00.00.000_m",
        "top-level-object",
    ]
    _put_all(storage, bucket, keys)
    expected = _s3_order([f"{CDRS}{vc}/" for vc in vcs])  # "vc1-b/" < "vc1/" < "vc10/"
    assert storage.list_prefixes(bucket, CDRS) == expected
    assert storage.list_prefixes(bucket, CDRS, delimiter="/") == expected
    assert expected[:4] == [f"{CDRS}Vc2/", f"{CDRS}abcdef1ghij2klmno3pqr4/", f"{CDRS}vc1-b/", f"{CDRS}vc1/"]
    assert storage.list_prefixes(bucket, f"{CDRS}vc1") == [f"{CDRS}vc1-b/", f"{CDRS}vc1/", f"{CDRS}vc10/"]
    assert storage.list_prefixes(bucket, f"{CDRS}vc1/") == [f"{CDRS}vc1/2024/"]
    assert storage.list_prefixes(bucket, f"{CDRS}vc1/2024/") == [f"{CDRS}vc1/2024/05/", f"{CDRS}vc1/2024/06/"]
    assert storage.list_prefixes(bucket, "") == [
        "Amazon-Chime-SMADRs/",
        "Amazon-Chime-Voice-Connector-CDRs/",
        "Amazon-Chime-Voice-Connector-SDRs/",
    ]
    assert storage.list_prefixes(bucket, f"{CDRS}none") == []
    assert storage.list_prefixes(bucket, "missing/") == []


def test_list_prefixes_forgets_a_prefix_once_its_objects_are_deleted(storage: Storage, bucket: str) -> None:
    gone, kept = f"{CDRS}gone/2024/05/01/10.00.00.000_t", f"{CDRS}kept/2024/05/01/10.00.00.000_t"
    _put_all(storage, bucket, [gone, kept])
    assert storage.list_prefixes(bucket, CDRS) == [f"{CDRS}gone/", f"{CDRS}kept/"]
    storage.delete(bucket, gone)
    assert storage.list_prefixes(bucket, CDRS) == [f"{CDRS}kept/"]
    assert _keys(storage, bucket, f"{CDRS}gone/") == []


def test_listing_stays_inside_the_bucket(cdr_env, storage: Storage, bucket: str) -> None:
    storage.put(cdr_env.lake_bucket, "secret/x", b"other bucket")
    storage.put(bucket, "k", b"mine")
    for prefix in (
        "../",
        f"../{cdr_env.lake_bucket}/",
        f"../{cdr_env.lake_bucket}/secret/x",
        "./",
        "/",
        "k/../",
    ):
        assert _keys(storage, bucket, prefix) == [], prefix
        assert storage.list_prefixes(bucket, prefix) == [], prefix


# -- local backend only ----------------------------------------------------------------------

BAD_KEYS = ["../x", "a/../../x", "..", "./x", "a/./b", "a/.", "/abs", "a//b", "a/", "", "//x"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_refuses_keys_escaping_the_bucket(local_env, tmp_path: Path, key: str) -> None:
    storage = local_env.storage()
    bucket = local_env.chime_cdr_bucket
    assert isinstance(storage, LocalStorage)
    storage.put(bucket, "ok", b"fine")
    before = _tree(tmp_path)
    absolute = tmp_path / "abs-target"

    def refused(call) -> None:
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, ObjectNotFound), f"{key!r} was looked up, not refused"
        assert "refused key" in str(info.value)

    refused(lambda: storage.put(bucket, key, b"evil"))
    refused(lambda: storage.get(bucket, key))
    refused(lambda: storage.head(bucket, key))
    refused(lambda: storage.delete(bucket, key))
    refused(lambda: storage.copy(bucket, "ok", bucket, key))
    refused(lambda: storage.copy(bucket, key, bucket, "ok2"))
    refused(lambda: storage.put(bucket, key, b"evil", metadata={"m": "1"}, storage_class="GLACIER"))
    if key == "/abs":
        refused(lambda: storage.put(bucket, str(absolute), b"evil"))  # an absolute path we can check
    assert _tree(tmp_path) == before  # nothing written anywhere, inside or outside the bucket
    assert not absolute.exists()
    assert not Path("/abs").exists()
    assert _keys(storage, bucket) == ["ok"]


def test_local_put_is_atomic(local_env, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = local_env.storage()
    bucket = local_env.chime_cdr_bucket
    assert isinstance(storage, LocalStorage)
    bucket_dir = storage.bucket_path(bucket)
    # Temporary files are written outside every bucket folder, so no listing can see them.
    assert not storage._tmp.resolve().is_relative_to(bucket_dir.resolve())
    assert not storage._tmp.resolve().is_relative_to((storage.root / "buckets").resolve())

    keys = ["p/a", "p/b", "q", "p/deep/c"]
    for key in keys:
        storage.put(bucket, key, b"v1 " + key.encode(), metadata={"k": key})
    storage.put(bucket, "p/a", b"v2")  # overwrite
    storage.copy(bucket, "p/a", bucket, "p/copy")
    storage.copy(bucket, "q", bucket, "q", storage_class="GLACIER_IR")
    files = {str(p.relative_to(bucket_dir)) for p in bucket_dir.rglob("*") if p.is_file()}
    assert files == {*keys, "p/copy"}  # no temp or metadata files in the bucket folder
    assert not any(p.name.endswith(".part") for p in storage.root.rglob("*"))
    assert _keys(storage, bucket) == ["p/a", "p/b", "p/copy", "p/deep/c", "q"]

    # A write that fails before its final rename leaves the old object whole, and no debris.
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst) == str(bucket_dir / "p" / "a"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        storage.put(bucket, "p/a", b"v3 that never lands")
    monkeypatch.undo()
    assert storage.get(bucket, "p/a") == b"v2"
    assert not any(p.is_file() for p in storage._tmp.rglob("*"))
    assert _keys(storage, bucket) == ["p/a", "p/b", "p/copy", "p/deep/c", "q"]
