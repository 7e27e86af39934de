"""A small, known lake for search, statistics and report tests (through the real ingest)."""

from datetime import date, timedelta

import duckdb

from cdr_assets.chime.ingest import ingest_delivery_day
from cdr_assets.warehouse import configure_lake_access
from cdr_assets_tests.chime.factory import at, cdr, put_cdr

DAY = date(2026, 2, 10)
ALICE = "+12065550100"
BOB = "+12065550101"
CAROL = "+13125550000"
VC2 = "zzzzzz9yyyy8xxxxx7www6"


def known_calls() -> list[tuple[dict, object]]:
    """(record, delivered_at): five calls over four end days, two voice connectors."""
    d = DAY
    return [
        (cdr("a1", at(d, "10:00:00"), duration=400), at(d, "10:00:30")),
        (cdr("a2", at(d, "11:00:00"), duration=200), at(d, "11:00:30")),
        (
            cdr(
                "a3",
                at(d - timedelta(1), "09:00:00"),
                duration=600,
                SourcePhoneNumber=CAROL,
                DestinationPhoneNumber=ALICE,
                Direction="Inbound",
            ),
            at(d - timedelta(1), "09:00:30"),
        ),
        (
            cdr(
                "a4",
                at(d - timedelta(3), "08:00:00"),
                duration=0,
                vc=VC2,
                Status="Failed",
                StatusMessage="User Busy",
                SourcePhoneNumber=BOB,
                DestinationPhoneNumber=CAROL,
                BillableDurationMinutes=0.0,
            ),
            at(d - timedelta(3), "08:00:30"),
        ),
        # Crosses midnight: starts on the day before DAY, ends (and is filed) on DAY.
        (cdr("a5", at(d, "00:05:00"), duration=600, SourcePhoneNumber=CAROL), at(d, "00:05:30")),
    ]


def warehouse_connection(env) -> duckdb.DuckDBPyConnection:
    """The test's DuckDB file, able to read its lake."""
    env.home.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(env.home / "warehouse.duckdb"))
    configure_lake_access(conn, env.storage())
    return conn


def ingest_day(env, conn, day: date, ranges=None):
    """One delivery day through the real ingest (the whole day unless ``ranges``)."""
    return ingest_delivery_day(
        env.storage(),
        conn,
        cdr_bucket=env.chime_cdr_bucket,
        lake_bucket=env.lake_bucket,
        delivery_day=day,
        ranges=ranges,
        workers=1,
    )


def build_lake(env) -> None:
    store = env.storage()
    days = set()
    for record, delivered in known_calls():
        put_cdr(store, env.chime_cdr_bucket, record, delivered)
        days.add(delivered.date())
    conn = warehouse_connection(env)
    try:
        for day in sorted(days):
            ingest_day(env, conn, day)
    finally:
        conn.close()


def lake_connection(env) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    configure_lake_access(conn, env.storage())
    return conn
