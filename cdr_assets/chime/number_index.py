"""A small index per lake file: phone number -> the row groups holding it (pure: no Dagster).

Lake files are sorted by source number, so a source lookup prunes row groups by min/max; a
destination number can be in any row group, and probing every row group's Bloom filter is most
of an either-side lookup. The index lists every (number, row group) pair of both number columns,
sorted by number in small row groups with min/max statistics, so a lookup reads one index row
group per lake file and then only the data row groups that hold the number.

Where it lives: ``<day folder>/_numbers/<lake file name>``. Athena/Hive skip names starting with
``_``, and the lake's ``year=*/month=*/day=*/*.parquet`` globs do not descend into the folder, so
no table or view reads the index as CDRs.

Written by the pipeline right after its lake file and registered with it in ``chime.lake_files``
(kind ``cdrs_index``), so it is committed, made obsolete and removed with it. The index records
the byte size of the lake file it was built from; a search uses it only when the lake file still
has that size, and otherwise (or for a lake file written before indexes existed) falls back to
the Bloom-filter scan.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cdr_assets.chime.lake_layout import NUMBER_COLUMNS
from cdr_assets.chime.schema import LAKE_PREFIX

INDEX_FOLDER = "_numbers"
INDEX_ROW_GROUP_ROWS = 1024  # a lookup reads one such row group per lake file: small is cheap
INDEX_LAYOUT = (INDEX_FOLDER, INDEX_ROW_GROUP_ROWS, 1)  # the benchmark's cache marker hashes it
BUSY_SHARE = 4  # a number in more than 1/4 of a file's row groups is searched by a DuckDB scan
_LAKE_SIZE = b"cdr_assets.lake_file_size"
_LAKE_FILE = re.compile(r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/(_numbers/)?([^/]+\.parquet)$")


def index_key(lake_key: str) -> str:
    """The index of the lake file at ``lake_key`` (a key or a path)."""
    folder, _, name = lake_key.rpartition("/")
    return f"{folder}/{INDEX_FOLDER}/{name}"


def index_file_bytes(lake_bytes: memoryview | bytes) -> memoryview:
    """The index of one lake file, built from the file's bytes as written (its row order and row
    groups are what the index describes, whoever wrote it)."""
    reader = pq.ParquetFile(pa.BufferReader(lake_bytes))
    meta = reader.metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    groups = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    numbers = reader.read(columns=list(NUMBER_COLUMNS))
    pairs = pa.table(
        {
            "number": pa.concat_arrays([numbers[c].combine_chunks() for c in NUMBER_COLUMNS]),
            "row_group": np.concatenate([groups, groups]),
        }
    )
    pairs = pairs.filter(pc.is_valid(pairs["number"]))  # a missing number matches no search
    pairs = pairs.group_by(["number", "row_group"], use_threads=False).aggregate([])
    pairs = pairs.sort_by([("number", "ascending"), ("row_group", "ascending")])
    pairs = pairs.replace_schema_metadata({_LAKE_SIZE: str(len(lake_bytes)).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(
        pairs,
        sink,
        compression="snappy",
        row_group_size=INDEX_ROW_GROUP_ROWS,
        write_statistics=["number"],
        use_dictionary=False,  # nearly every number is distinct
    )
    return memoryview(sink.getvalue())


@dataclass(frozen=True)
class LakeFile:
    """A lake file of one end day, with its index when it has one."""

    day: date
    info: pafs.FileInfo
    index: pafs.FileInfo | None


def list_lake_files(
    fs: pafs.FileSystem, lake_root: str, first: date | None, last: date | None
) -> list[LakeFile]:
    """The lake files in the end-day folders from ``first`` to ``last`` (None: open), path order.

    ``lake_root`` is the lake bucket as ``fs`` names it. One listing (on S3 one LIST) gives the
    lake files, their indexes, sizes and modification times.
    """
    selector = pafs.FileSelector(
        f"{lake_root.rstrip('/')}/{LAKE_PREFIX}", recursive=True, allow_not_found=True
    )
    files: dict[str, pafs.FileInfo] = {}
    indexes: dict[str, pafs.FileInfo] = {}
    days: dict[str, date] = {}
    for info in fs.get_file_info(selector):
        m = _LAKE_FILE.search(info.path)
        if m is None or info.type != pafs.FileType.File:
            continue
        try:
            day = date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:  # not a real day: no lake file lives there
            continue
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        if m[4]:
            indexes[info.path] = info
        else:
            files[info.path] = info
            days[info.path] = day
    return [LakeFile(days[p], files[p], indexes.get(index_key(p))) for p in sorted(files)]


@dataclass(frozen=True)
class _IndexMeta:
    meta: pq.FileMetaData
    lows: list[str]  # min number per row group, in order (the index is sorted)
    highs: list[str]
    lake_size: int


# Parsed footers, reused while a file keeps its path, size and modification time (as DuckDB's
# parquet_metadata_cache does); bounded so a long-lived process does not grow without limit.
_FOOTERS: dict[tuple[str, int, int | None], object] = {}
_FOOTERS_MAX = 4096


def forget_footers() -> None:
    """Drop the parsed footers (as a new process starts without them)."""
    _FOOTERS.clear()


def _footer(fs: pafs.FileSystem, info: pafs.FileInfo, parse):
    key = (info.path, info.size, info.mtime_ns)
    hit = _FOOTERS.get(key)
    if hit is None:
        with fs.open_input_file(info.path) as f:
            hit = parse(pq.ParquetFile(f).metadata)
        if len(_FOOTERS) >= _FOOTERS_MAX:
            _FOOTERS.clear()
        _FOOTERS[key] = hit
    return hit


def _index_meta(meta: pq.FileMetaData) -> _IndexMeta:
    stats = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
    size = int((meta.metadata or {}).get(_LAKE_SIZE, b"-1"))
    return _IndexMeta(meta, [s.min for s in stats], [s.max for s in stats], size)


def row_groups_with(fs: pafs.FileSystem, lake_file: LakeFile, number: str) -> list[int] | None:
    """The row groups of ``lake_file`` that hold ``number`` on either side; None when the file has
    no index that describes it (then it has to be scanned)."""
    if lake_file.index is None:
        return None
    idx: _IndexMeta = _footer(fs, lake_file.index, _index_meta)
    if idx.lake_size != lake_file.info.size:
        return None  # rewritten since the index was built
    found: list[int] = []
    i = bisect.bisect_left(idx.highs, number)
    with fs.open_input_file(lake_file.index.path) as f:
        reader = pq.ParquetFile(f, metadata=idx.meta)
        while i < len(idx.lows) and idx.lows[i] <= number:
            part = reader.read_row_group(i, use_threads=False)
            found += part.filter(pc.equal(part["number"], number))["row_group"].to_pylist()
            i += 1
    return sorted(set(found))


def rows_with(fs: pafs.FileSystem, lake_file: LakeFile, number: str, columns: list[str]) -> pa.Table | None:
    """``columns`` (plus the Hive day columns) of the rows of ``lake_file`` that hold ``number``
    on either side, read from the row groups its index names (no columns at all when there are
    none); None when the file has no index that describes it, or the number is in so many of its
    row groups that a scan is cheaper (then it has to be scanned)."""
    groups = row_groups_with(fs, lake_file, number)
    if groups is None:
        return None
    if not groups:
        return pa.table({})
    meta = _footer(fs, lake_file.info, lambda m: m)
    if len(groups) > max(2, meta.num_row_groups // BUSY_SHARE):
        # A busy number (a voice connector's own DID is in nearly every row group): reading those
        # row groups here, whole and on one thread, is slower than DuckDB's parallel scan.
        return None
    with fs.open_input_file(lake_file.info.path) as f:
        table = pq.ParquetFile(f, metadata=meta).read_row_groups(groups, columns=columns, use_threads=False)
    src, dst = (table[c] for c in NUMBER_COLUMNS)
    table = table.filter(pc.or_(pc.equal(src, number), pc.equal(dst, number)))
    day = lake_file.day
    for name, value in (("year", day.year), ("month", day.month), ("day", day.day)):
        table = table.append_column(name, pa.array(np.full(table.num_rows, value, np.int32)))
    return table
