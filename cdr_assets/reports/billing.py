"""The monthly billing report (pure: no Dagster): the query for a month, and its files.

The query is the reference's Athena query (REFERENCE.md section 1) unless ``CDR_REPORT_QUERY``
replaces it. Its documented rule, and the only rewrite done to a user's SQL:
``{database}`` and ``{table}`` are filled in, and every ``CURRENT_DATE`` (or ``CURRENT_DATE()``,
any case) becomes the literal date of the **last day of the reported month**, so
``YEAR(CURRENT_DATE)`` / ``MONTH(CURRENT_DATE)`` mean that month, never the wall clock.
"""

from __future__ import annotations

import base64
import calendar
import html
import io
import re
from dataclasses import dataclass
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# A bare Figure renders through the Agg canvas: no display, no global pyplot state.
from matplotlib.figure import Figure

from cdr_assets.chime.ledger import LAKE_SCHEMA

LAKE_TABLE = "processed_cdrs"
REPORT_PREFIX = "reports/billing/"

# REFERENCE.md section 1, verbatim.
REFERENCE_QUERY = (
    "SELECT voiceconnectorId, SUM(billabledurationseconds) as billabledurationseconds, "
    "SUM(billabledurationminutes) as billabledurationminutes, month, year FROM {database}.{table} "
    "WHERE (year = YEAR(CURRENT_DATE) AND month = MONTH(CURRENT_DATE) ) "
    "group by voiceconnectorid, month, year;"
)

_CURRENT_DATE = re.compile(r"\bcurrent_date\b(\s*\(\s*\))?", re.IGNORECASE)


class ReportError(ValueError):
    """The report query cannot be used; the message says why."""


def month_key(month: date) -> str:
    return f"{month:%Y-%m}"


def last_day(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def bind_period(query: str, month: date, *, database: str = LAKE_SCHEMA, table: str = LAKE_TABLE) -> str:
    """The query for ``month``, by the documented rule (placeholders + CURRENT_DATE)."""
    text = (query or REFERENCE_QUERY).strip()
    if not text:
        raise ReportError("the report query is empty")
    text = text.replace("{database}", database).replace("{table}", table)
    # The literal comes from a date object, never from user text.
    text = _CURRENT_DATE.sub(f"DATE '{last_day(month).isoformat()}'", text)
    text = text.rstrip().rstrip(";").rstrip()
    if ";" in text:
        raise ReportError("the report query must be a single SQL statement")
    return text


def run_report(conn: duckdb.DuckDBPyConnection, query: str, month: date) -> pa.Table:
    sql = bind_period(query, month)
    try:
        return conn.execute(sql).fetch_arrow_table()
    except duckdb.Error as exc:
        raise ReportError(f"the report query failed: {exc}\nquery: {sql}") from exc


def _column(table: pa.Table, wanted: str) -> str | None:
    return next((c for c in table.column_names if c.lower() == wanted), None)


def minutes_per_voice_connector(table: pa.Table) -> list[tuple[str, float]]:
    """(voice connector, billable minutes) pairs, when the result has those columns."""
    vc, minutes = _column(table, "voiceconnectorid"), _column(table, "billabledurationminutes")
    if vc is None or minutes is None:
        return []
    totals: dict[str, float] = {}
    for name, value in zip(table[vc].to_pylist(), table[minutes].to_pylist(), strict=True):
        totals[str(name)] = totals.get(str(name), 0.0) + float(value or 0)
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def chart_png(pairs: list[tuple[str, float]], title: str) -> bytes:
    fig = Figure(figsize=(8, max(2.5, 0.45 * len(pairs) + 1.2)), dpi=100)
    ax = fig.add_subplot()
    names = [p[0] for p in pairs][::-1]
    values = [p[1] for p in pairs][::-1]
    bars = ax.barh(names, values, color="#2b6cb0")
    ax.bar_label(bars, labels=[f"{v:,.1f}" for v in values], padding=3, fontsize=8)
    ax.set_xlabel("billable minutes")
    ax.set_title(title)
    ax.margins(x=0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@dataclass
class ReportFiles:
    month: str
    rows: int
    csv: bytes
    parquet: bytes
    html: str
    png: bytes | None
    minutes: list[tuple[str, float]]

    def keys(self) -> dict[str, str]:
        base = f"{REPORT_PREFIX}{self.month}/billing_{self.month}"
        out = {"csv": f"{base}.csv", "parquet": f"{base}.parquet", "html": f"{base}.html"}
        if self.png is not None:
            out["png"] = f"{base}.png"
        return out


def _html_table(table: pa.Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.column_names)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>"
        for row in table.to_pylist()
    )
    return f'<table border="1" cellpadding="4" cellspacing="0"><tr>{head}</tr>{body}</table>'


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render(table: pa.Table, month: date, *, note: str = "") -> ReportFiles:
    key = month_key(month)
    csv_buf = io.BytesIO()
    pacsv.write_csv(table, csv_buf)
    pq_buf = pa.BufferOutputStream()
    pq.write_table(table, pq_buf, compression="snappy")
    pairs = minutes_per_voice_connector(table)
    title = f"Billable minutes per voice connector, {key}"
    png = chart_png(pairs, title) if pairs else None
    img = (
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png
        else "<p><i>No chart: the result has no voiceconnectorid / billabledurationminutes columns "
        "or no rows.</i></p>"
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Amazon Chime billing report {key}</title></head><body>"
        f"<h1>Amazon Chime billing report {key}</h1>"
        f"<p>{table.num_rows} row(s). {html.escape(note)}</p>{_html_table(table)}{img}</body></html>\n"
    )
    parquet = pq_buf.getvalue().to_pybytes()
    return ReportFiles(key, table.num_rows, csv_buf.getvalue(), parquet, page, png, pairs)
