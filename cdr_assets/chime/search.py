"""Search the CDR lake (pure: no Dagster). Filters -> one parameterised DuckDB query.

Every user value is a bound parameter; only column names and fixed SQL fragments are spelled
into the text. Two things keep a search cheap on a large lake:

- Day pruning: rows live in the folder of the call's *end* day. A call that started at or
  after ``since`` ended on ``since``'s day or later, and one that ended at or before ``until``
  is in ``until``'s day or earlier, so only those ``year=/month=/day=`` folders are opened
  (DuckDB drops the other files from the Hive partition values before reading them).
- Number lookups: each lake file has a small index of its numbers -> row groups
  (``number_index.py``), so a lookup reads one index row group and the data row groups that
  hold the number, per file. A file without a usable index is scanned: files are sorted by
  source number and carry Bloom filters on both number columns (``ingest.py``), and each side
  of an either-side lookup is its own equality filter, so DuckDB skips row groups that cannot
  hold the number.
"""

from __future__ import annotations

import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs

from cdr_assets.chime.number_index import LakeFile, list_lake_files, rows_with
from cdr_assets.chime.schema import DIRECTIONS, LAKE_PREFIX
from cdr_assets.storage import Storage
from cdr_assets.warehouse import configure_lake_access

ORDERS = ("newest", "oldest")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000_000

# What a search returns, in this order.
RESULT_COLUMNS = (
    "transactionid",
    "voiceconnectorid",
    "direction",
    "status",
    "sourcephonenumber",
    "destinationphonenumber",
    "start_time",
    "end_time",
    "billabledurationseconds",
    "billabledurationminutes",
)

_SELECT = """SELECT transactionid, voiceconnectorid, direction, status, sourcephonenumber,
       destinationphonenumber, to_timestamp(starttimeepochseconds) AT TIME ZONE 'UTC' AS start_time,
       to_timestamp(endtimeepochseconds) AT TIME ZONE 'UTC' AS end_time, starttimeepochseconds,
       billabledurationseconds, billabledurationminutes"""

_HIVE = "hive_partitioning = true, hive_types = {'year': INTEGER, 'month': INTEGER, 'day': INTEGER}"
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SEPARATORS = re.compile(r"[\s\-.()/]")


class SearchError(ValueError):
    """A search that cannot run as asked (no filter, bad value); the message says why."""


def normalize_number(text: str) -> str:
    """A phone number in E.164: ``+1 206-555-0100``, ``12065550100``, ``0012065550100`` all give
    ``+12065550100``."""
    compact = _SEPARATORS.sub("", text.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif not compact.startswith("+"):
        compact = "+" + compact
    if not _E164.match(compact):
        raise SearchError(f"not a phone number: {text!r} (expected E.164, e.g. +12065550100)")
    return compact


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO date or datetime, UTC unless it says otherwise.

    A bare date as an upper bound means the whole day (up to 23:59:59).
    """
    value = text.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            moment = datetime.combine(d, time(), tzinfo=UTC)
            return moment + timedelta(days=1, seconds=-1) if end_of_day else moment
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"not an ISO date or date-time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class SearchFilters:
    source: str | None = None
    destination: str | None = None
    number: str | None = None  # either side
    since: datetime | None = None  # call started at or after
    until: datetime | None = None  # call ended at or before
    min_duration: int | None = None  # billable seconds
    max_duration: int | None = None
    status: str | None = None
    direction: str | None = None
    voice_connector: str | None = None
    limit: int = DEFAULT_LIMIT
    order: str = "newest"

    def normalized(self) -> SearchFilters:
        """Checked and canonical values; raises SearchError with the reason."""
        filters = {
            k: getattr(self, k)
            for k in (
                "source",
                "destination",
                "number",
                "since",
                "until",
                "min_duration",
                "max_duration",
                "status",
                "direction",
                "voice_connector",
            )
        }
        if all(v is None or v == "" for v in filters.values()):
            raise SearchError("give at least one filter (see --help); a search of everything is refused")
        numbers = {k: normalize_number(v) if v else None for k, v in filters.items() if k in _NUMBER_KEYS}
        direction = self.direction
        if direction:
            by_lower = {d.lower(): d for d in DIRECTIONS}
            if direction.lower() not in by_lower:
                raise SearchError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
            direction = by_lower[direction.lower()]
        for name in ("min_duration", "max_duration"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise SearchError(f"{name.replace('_', '-')} must not be negative")
        if None not in (self.min_duration, self.max_duration) and self.min_duration > self.max_duration:  # type: ignore[operator]
            raise SearchError("min-duration is above max-duration")
        if self.since and self.until and self.since > self.until:
            raise SearchError("since is after until")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise SearchError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.order not in ORDERS:
            raise SearchError(f"order must be one of {', '.join(ORDERS)}, not {self.order!r}")
        return SearchFilters(
            **numbers,  # type: ignore[arg-type]
            since=self.since,
            until=self.until,
            min_duration=self.min_duration,
            max_duration=self.max_duration,
            status=self.status or None,
            direction=direction or None,
            voice_connector=self.voice_connector or None,
            limit=self.limit,
            order=self.order,
        )


_NUMBER_KEYS = ("source", "destination", "number")


def days_to_read(filters: SearchFilters) -> tuple[date | None, date | None]:
    """First and last end-day folder that can hold a match (None: unbounded)."""
    first = filters.since.astimezone(UTC).date() if filters.since else None
    last = filters.until.astimezone(UTC).date() if filters.until else None
    return first, last


def lake_glob(lake_root_uri: str) -> str:
    return f"{lake_root_uri.rstrip('/')}/{LAKE_PREFIX}year=*/month=*/day=*/*.parquet"


def build_query(
    filters: SearchFilters,
    lake_root_uri: str,
    files: list[str] | None = None,
    *,
    indexed: str | None = None,
) -> tuple[str, list[object]]:
    """The SQL text and its parameters for already-normalized filters.

    ``files``: the lake files to scan (already pruned to the days); default: the whole lake's glob.
    ``indexed``: a relation (same columns plus the Hive day columns) holding the row groups that
    indexes pointed to for the looked-up number; the same filters apply to it.
    """
    common: list[str] = []
    params: list[object] = []
    first, last = days_to_read(filters)
    if first is not None:
        common.append("make_date(year, month, day) >= ?::DATE")
        params.append(first)
    if last is not None:
        common.append("make_date(year, month, day) <= ?::DATE")
        params.append(last)
    simple = (
        ("sourcephonenumber = ?", filters.source),
        ("destinationphonenumber = ?", filters.destination),
        ("starttimeepochseconds >= ?", _epoch(filters.since)),
        ("endtimeepochseconds <= ?", _epoch(filters.until)),
        ("billabledurationseconds >= ?", filters.min_duration),
        ("billabledurationseconds <= ?", filters.max_duration),
        ("lower(status) = lower(?)", filters.status),
        ("direction = ?", filters.direction),
        ("voiceconnectorid = ?", filters.voice_connector),
    )
    for clause, value in simple:
        if value is not None:
            common.append(clause)
            params.append(value)
    where = " AND ".join(common) or "true"
    parts: list[str] = []
    all_params: list[object] = []
    if files is None or files:
        source = f"read_parquet(?, {_HIVE})"
        glob: object = lake_glob(lake_root_uri) if files is None else files
        if filters.number is None:
            parts.append(f"{_SELECT} FROM {source} WHERE {where}")
            all_params += [glob, *params]
        else:
            # Two equality filters instead of one OR: each can use its column's Bloom filters and
            # statistics. The second branch leaves out calls the first one already found.
            parts += [
                f"{_SELECT} FROM {source} WHERE {where} AND sourcephonenumber = ?",
                f"{_SELECT} FROM {source} WHERE {where} AND destinationphonenumber = ? "
                "AND sourcephonenumber <> ?",
            ]
            n = filters.number
            all_params += [glob, *params, n, glob, *params, n, n]
    if indexed is not None:
        either = "" if filters.number is None else " AND ? IN (sourcephonenumber, destinationphonenumber)"
        parts.append(f"{_SELECT} FROM {indexed} WHERE {where}{either}")
        all_params += [*params] + ([] if filters.number is None else [filters.number])
    body = "\nUNION ALL\n".join(parts)
    direction = "DESC" if filters.order == "newest" else "ASC"
    cols = ", ".join(RESULT_COLUMNS)
    sql = f"SELECT {cols} FROM ({body}) ORDER BY starttimeepochseconds {direction}, transactionid LIMIT ?"
    return sql, [*all_params, filters.limit]


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def open_search_connection(storage: Storage) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for searches: reads the lake (S3 too), no lock on the warehouse file.

    Parsing the Parquet footers of every day file is most of a number lookup's cost, so they are
    cached for the connection's life (DuckDB re-reads a footer when the file changed).
    """
    conn = duckdb.connect()
    configure_lake_access(conn, storage)
    conn.execute("SET parquet_metadata_cache = true")
    return conn


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="cdr-search")


def search_cdrs(
    conn: duckdb.DuckDBPyConnection,
    lake_root_uri: str,
    filters: SearchFilters,
    filesystem: pafs.FileSystem | None = None,
) -> pa.Table:
    """Matching calls (newest first by default); an empty table when nothing matches.

    ``filesystem``: the lake's pyarrow file system (``storage.arrow_filesystem()[0]``), which
    reads the number indexes; needed for an ``s3://`` lake, a local folder needs none.
    """
    filters = filters.normalized()
    fs, root = _arrow_lake(lake_root_uri, filesystem)
    files = list_lake_files(fs, root, *days_to_read(filters))
    number = filters.number or filters.destination or filters.source
    scan, hits = files, []
    if number is not None:
        # pyarrow reads without the GIL: files in parallel, one thread per core.
        found = list(_pool().map(lambda f: rows_with(fs, f, number, _READ_COLUMNS), files))
        scan = [f for f, rows in zip(files, found, strict=True) if rows is None]
        hits = [rows for rows in found if rows is not None and rows.num_rows]
    if not scan and not hits:
        return empty_result()
    indexed = pa.concat_tables(hits).combine_chunks() if hits else None  # one chunk: cheaper to scan
    sql, params = build_query(
        filters,
        lake_root_uri,
        [_duckdb_uri(lake_root_uri, f) for f in scan],
        indexed=None if indexed is None else "indexed_rows",
    )
    if indexed is None:
        return conn.execute(sql, params).fetch_arrow_table()
    conn.register("indexed_rows", indexed)
    try:
        return conn.execute(sql, params).fetch_arrow_table()
    finally:
        conn.unregister("indexed_rows")


# What the indexed branch reads of a lake file: the result's columns, times as stored.
_READ_COLUMNS = [
    {"start_time": "starttimeepochseconds", "end_time": "endtimeepochseconds"}.get(c, c)
    for c in RESULT_COLUMNS
]


def _arrow_lake(lake_root_uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    """The lake's pyarrow file system and the lake root as it names it."""
    if lake_root_uri.startswith("s3://"):
        if filesystem is None:
            raise ValueError("searching an s3:// lake needs its file system (storage.arrow_filesystem())")
        return filesystem, lake_root_uri.removeprefix("s3://")
    return filesystem or pafs.LocalFileSystem(), lake_root_uri


def _duckdb_uri(lake_root_uri: str, lake_file: LakeFile) -> str:
    return f"s3://{lake_file.info.path}" if lake_root_uri.startswith("s3://") else lake_file.info.path


def empty_result() -> pa.Table:
    conn = duckdb.connect()
    try:
        return conn.execute(
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM ({_SELECT} FROM (SELECT "
            "NULL::VARCHAR AS transactionid, "
            "NULL::VARCHAR AS voiceconnectorid, NULL::VARCHAR AS direction, NULL::VARCHAR AS status, "
            "NULL::VARCHAR AS sourcephonenumber, NULL::VARCHAR AS destinationphonenumber, "
            "NULL::BIGINT AS starttimeepochseconds, NULL::BIGINT AS endtimeepochseconds, "
            "NULL::BIGINT AS billabledurationseconds, NULL::DOUBLE AS billabledurationminutes) WHERE false)"
        ).fetch_arrow_table()
    finally:
        conn.close()
