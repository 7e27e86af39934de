"""How the lake's Parquet files are laid out (pure: no Dagster): sort order, row groups,
statistics and Bloom filters. Shared by the ingest and the search benchmark."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from cdr_assets.chime.schema import CDR_ARROW_SCHEMA

NUMBER_COLUMNS = ("sourcephonenumber", "destinationphonenumber")
# Lake files are sorted by source number (min/max statistics prune source lookups) and carry
# Bloom filters on both number columns (equality lookups on either side skip row groups); DuckDB
# and Athena/Trino both read these. Smaller row groups make that pruning finer, and make a
# number lookup, which reads whole row groups where the number index points, cheaper.
LAKE_ROW_GROUP_ROWS = 4 * 1024
LAKE_SORT = [("sourcephonenumber", "ascending"), ("starttimeepochseconds", "ascending")]
# Min/max statistics only where a search filters: long unique strings (transactionid,
# source_key) would only make every file footer, read on each query, larger.
STATS_COLUMNS = [
    *NUMBER_COLUMNS,
    "voiceconnectorid",
    "status",
    "direction",
    "starttimeepochseconds",
    "endtimeepochseconds",
    "billabledurationseconds",
    "billabledurationminutes",
]


def parquet_bytes(table: pa.Table, *, cdrs: bool = False, presorted: bool = False) -> memoryview:
    # A view of Arrow's buffer: no copy of the file into a Python bytes object.
    sink = pa.BufferOutputStream()
    if not cdrs:
        pq.write_table(table, sink, compression="snappy", row_group_size=128 * 1024)
        return memoryview(sink.getvalue())
    ndv = max(1, min(table.num_rows, LAKE_ROW_GROUP_ROWS))
    pq.write_table(
        table if presorted else table.sort_by(LAKE_SORT),
        sink,
        compression="snappy",
        row_group_size=LAKE_ROW_GROUP_ROWS,
        write_statistics=STATS_COLUMNS,
        bloom_filter_options={c: {"ndv": ndv, "fpp": 0.01} for c in NUMBER_COLUMNS},
    )
    return memoryview(sink.getvalue())


def lake_file_bytes(table: pa.Table) -> memoryview:
    """One lake Parquet file as the pipeline writes it (also used by the search benchmark); its
    number index is ``number_index.index_file_bytes`` of these bytes."""
    return parquet_bytes(table.select(CDR_ARROW_SCHEMA.names).cast(CDR_ARROW_SCHEMA), cdrs=True)
