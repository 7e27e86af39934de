"""Contact-center KPIs for one day, from the star schema, as CSV + HTML with a chart (pure code).

Per queue and per agent, over contacts *initiated* that day (UTC):
- contacts: contacts of the queue / routed to the agent; handled: connected to an agent;
- abandoned: queued and never connected to an agent;
- service level: handled within ``threshold`` seconds of queueing / all queued contacts, in %;
- average queue wait (s), average handle time (s) = talk + hold + after-contact work;
- transfers: contacts transferred onward (a transfer endpoint or a next contact id).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from cdr_assets.connect.schema import REPORT_PREFIX
from cdr_assets.connect.warehouse import ensure_tables

_MEASURES = """
count(*) AS contacts,
count(*) FILTER (WHERE f.connected_to_agent_timestamp IS NOT NULL) AS handled,
count(*) FILTER (WHERE f.is_abandoned) AS abandoned,
round(100.0 * count(*) FILTER (WHERE f.connected_to_agent_timestamp IS NOT NULL
      AND f.queue_wait_seconds <= $threshold)
      / nullif(count(*) FILTER (WHERE f.enqueue_timestamp IS NOT NULL), 0), 1) AS service_level_pct,
round(avg(f.queue_wait_seconds), 1) AS avg_queue_wait_s,
round(avg(f.handle_seconds), 1) AS avg_handle_s,
count(*) FILTER (WHERE f.transferred_to_endpoint_address IS NOT NULL OR f.next_contact_id IS NOT NULL)
    AS transfers
"""

QUEUE_SQL = f"""
SELECT coalesce(q.queue_name, '(no queue)') AS queue, {_MEASURES}
FROM connect.fact_contact f LEFT JOIN connect.dim_queue q USING (queue_key)
WHERE f.date_key = $day_key GROUP BY ALL ORDER BY queue
"""

AGENT_SQL = f"""
SELECT a.username AS agent, a.agent_arn, {_MEASURES}
FROM connect.fact_contact f JOIN connect.dim_agent a USING (agent_key)
WHERE f.date_key = $day_key GROUP BY ALL ORDER BY agent, a.agent_arn
"""


@dataclass
class KpiReport:
    day: date
    threshold_seconds: int
    queues: pa.Table
    agents: pa.Table

    @property
    def totals(self) -> dict[str, int]:
        return {k: sum(self.queues[k].to_pylist()) for k in ("contacts", "handled", "abandoned", "transfers")}


def compute(conn: duckdb.DuckDBPyConnection, day: date, threshold_seconds: int) -> KpiReport:
    ensure_tables(conn)
    params = {"day_key": int(day.strftime("%Y%m%d")), "threshold": threshold_seconds}
    queues = conn.execute(QUEUE_SQL, params).fetch_arrow_table()
    agents = conn.execute(AGENT_SQL, params).fetch_arrow_table()
    return KpiReport(day, threshold_seconds, queues, agents)


def csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def chart_png(report: KpiReport) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(n) for n in report.queues["queue"].to_pylist()]
    handled = report.queues["handled"].to_pylist()
    abandoned = report.queues["abandoned"].to_pylist()
    level = [v or 0 for v in report.queues["service_level_pct"].to_pylist()]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.bar(names, handled, label="handled", color="#4c78a8")
    ax.bar(names, abandoned, bottom=handled, label="abandoned", color="#e45756")
    ax.set_ylabel("contacts")
    ax2 = ax.twinx()
    ax2.plot(names, level, "o-", color="#54a24b", label=f"service level (≤{report.threshold_seconds}s) %")
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("service level %")
    ax.set_title(f"Contacts per queue, {report.day}")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def _html_table(table: pa.Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.column_names)
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row.values())
        + "</tr>"
        for row in table.to_pylist()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_html(report: KpiReport, png: bytes) -> str:
    totals = ", ".join(f"{k}: {v}" for k, v in report.totals.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Contact center {report.day}</title><style>body{{font-family:sans-serif}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
        f"<h1>Contact center report {report.day}</h1><p>{html.escape(totals)}; service level threshold "
        f"{report.threshold_seconds} s.</p>"
        f"<img alt='contacts per queue' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<h2>Per queue</h2>{_html_table(report.queues)}<h2>Per agent</h2>{_html_table(report.agents)}"
        "</body></html>"
    )


def report_files(report: KpiReport) -> dict[str, tuple[bytes, str]]:
    """Object key -> (bytes, content type) of the report's files."""
    png = chart_png(report)
    base = f"{REPORT_PREFIX}{report.day}/"
    return {
        f"{base}queues.csv": (csv_bytes(report.queues), "text/csv"),
        f"{base}agents.csv": (csv_bytes(report.agents), "text/csv"),
        f"{base}chart.png": (png, "image/png"),
        f"{base}report.html": (render_html(report, png).encode(), "text/html; charset=utf-8"),
    }
