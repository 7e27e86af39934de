"""The star schema loader, directly on DuckDB: latest version, order independence, type 2."""

import itertools
import random
import uuid
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from cdr_assets.connect.ctr_reader import finish
from cdr_assets.connect.load import load_staged
from cdr_assets.connect.parse import parse_file
from cdr_assets.connect.quality import DURATION_SQL, FOREIGN_KEY_SQL, ORDER_SQL, UNIQUE_SQL, run_check
from cdr_assets.connect.schema import STAGED_SCHEMA
from cdr_assets.connect.warehouse import (
    CUSTOMER_NAMESPACE,
    REFERENCE_COLUMNS,
    STAR_TABLES,
    LoadReport,
    customer_id,
    ensure_tables,
)
from cdr_assets_tests.connect.factory import concatenated, ctr, sample_versions

T = datetime(2026, 3, 1, 9, 0, 0)


def _load(conn: duckdb.DuckDBPyConnection, records: list[dict]) -> LoadReport:
    parsed = parse_file(concatenated(records), "k")
    assert not parsed.bad
    conn.register("batch", finish(pa.table(parsed.rows, schema=STAGED_SCHEMA)))
    report = LoadReport(None)
    load_staged(conn, "batch", report)
    conn.unregister("batch")
    return report


def _orders(n: int, sample: int = 3) -> list[tuple[int, ...]]:
    """In order, reversed, and a seeded sample of the other permutations (each load is ~0.1 s)."""
    every = list(itertools.permutations(range(n)))
    return [every[0], every[-1], *random.Random(n).sample(every[1:-1], sample)]


def _fresh() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    ensure_tables(conn)
    return conn


def _snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list]:
    out = {}
    for table in STAR_TABLES:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'connect' "
                "AND table_name = ? AND column_name <> 'loaded_at' ORDER BY ordinal_position",
                [table],
            ).fetchall()
        ]
        out[table] = conn.execute(f"SELECT {', '.join(cols)} FROM connect.{table} ORDER BY ALL").fetchall()
    return out


def _checks_pass(conn: duckdb.DuckDBPyConnection) -> None:
    for sql in (UNIQUE_SQL, FOREIGN_KEY_SQL, DURATION_SQL, ORDER_SQL):
        violations, detail = run_check(conn, sql)
        assert violations == 0, detail


def test_real_sample_six_deliveries_one_fact_row_latest_version():
    versions = sample_versions()
    conn = _fresh()
    _load(conn, versions)
    rows = conn.execute("SELECT contact_id, last_update_timestamp FROM connect.fact_contact").fetchall()
    assert rows == [("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47", datetime(2022, 1, 11, 4, 9, 47))]
    (address,) = conn.execute("SELECT transferred_to_endpoint_address FROM connect.fact_contact").fetchone()
    assert address == versions[4]["TransferredToEndpoint"]["Address"]
    cols = {r[0] for r in conn.execute("DESCRIBE connect.fact_contact").fetchall()}
    assert set(REFERENCE_COLUMNS.values()) <= cols
    _checks_pass(conn)


def test_every_arrival_order_gives_the_same_tables():
    versions = sample_versions()
    reference = None
    # Orders of the 6 deliveries, one per batch (as if in different files and days).
    for order in _orders(6):
        conn = _fresh()
        for i in order:
            _load(conn, [versions[i]])
        snap = _snapshot(conn)
        reference = reference or snap
        assert snap == reference, order
    assert len(reference["fact_contact"]) == 1


def test_rematerializing_a_batch_changes_nothing():
    batch = [ctr(f"c{i}", T + timedelta(minutes=i), agent=None if i % 3 == 0 else "bob") for i in range(9)]
    conn = _fresh()
    first = _load(conn, batch)
    snap = _snapshot(conn)
    again = _load(conn, batch)
    assert _snapshot(conn) == snap
    assert (first.inserted, again.inserted, again.updated, again.stale_versions) == (9, 0, 0, 9)
    assert again.agent_versions_changed == 0 and again.facts_repointed == 0


def test_equal_timestamps_are_broken_deterministically():
    a = ctr("tie", T, updated=T + timedelta(hours=1), attributes={"v": "a"})
    b = ctr("tie", T, updated=T + timedelta(hours=1), attributes={"v": "b"})
    results = set()
    for order in ([a, b], [b, a]):
        conn = _fresh()
        for rec in order:
            _load(conn, [rec])
        results.add(conn.execute("SELECT attributes FROM connect.fact_contact").fetchone()[0])
    assert len(results) == 1


def test_abandoned_contact_and_customer_dimension():
    conn = _fresh()
    _load(conn, [ctr("ab", T, agent=None, wait=40, phone="+15551234567")])
    row = conn.execute(
        "SELECT is_abandoned, agent_key, queue_wait_seconds, handle_seconds, customer_id "
        "FROM connect.fact_contact"
    ).fetchone()
    expected = str(uuid.uuid5(CUSTOMER_NAMESPACE, "TELEPHONE_NUMBER+15551234567"))
    assert (
        row == (True, None, 40, None, expected)
        and customer_id("TELEPHONE_NUMBER", "+15551234567") == expected
    )
    assert conn.execute("SELECT endpoint_type, address FROM connect.dim_customer").fetchall() == [
        ("TELEPHONE_NUMBER", "+15551234567")
    ]
    _checks_pass(conn)


def _agent_history(conn):
    return conn.execute(
        "SELECT routing_profile_name, valid_from, valid_to, is_current FROM connect.dim_agent "
        "ORDER BY valid_from"
    ).fetchall()


def _fact_profiles(conn):
    return conn.execute(
        "SELECT f.contact_id, a.routing_profile_name FROM connect.fact_contact f "
        "JOIN connect.dim_agent a USING (agent_key) ORDER BY 1"
    ).fetchall()


def test_agent_type2_history_in_any_arrival_order():
    # Sales on day 1 and 2, Support from day 3, Sales again on day 5.
    plan = [
        ("d1", 0, "Sales"),
        ("d2", 1, "Sales"),
        ("d3", 2, "Support"),
        ("d4", 3, "Support"),
        ("d5", 4, "Sales"),
    ]
    recs = [ctr(cid, T + timedelta(days=day), profile=profile) for cid, day, profile in plan]
    expected_history = [
        ("Sales", T, T + timedelta(days=2), False),
        ("Support", T + timedelta(days=2), T + timedelta(days=4), False),
        ("Sales", T + timedelta(days=4), None, True),
    ]
    expected_facts = [(cid, profile) for cid, _, profile in plan]
    reference = None
    for order in _orders(5):
        conn = _fresh()
        for i in order:
            _load(conn, [recs[i]])
        assert _agent_history(conn) == expected_history, order
        assert _fact_profiles(conn) == expected_facts, order
        _checks_pass(conn)
        snap = _snapshot(conn)
        reference = reference or snap
        assert snap == reference


def test_a_late_contact_splits_a_version():
    conn = _fresh()
    _load(conn, [ctr("a", T, profile="Sales"), ctr("c", T + timedelta(days=2), profile="Sales")])
    assert len(_agent_history(conn)) == 1
    report = _load(conn, [ctr("b", T + timedelta(days=1), profile="Support")])
    assert [h[0] for h in _agent_history(conn)] == ["Sales", "Support", "Sales"]
    assert _fact_profiles(conn) == [("a", "Sales"), ("b", "Support"), ("c", "Sales")]
    assert report.facts_repointed == 2  # b, and c that moved to the new third version
    _checks_pass(conn)


def test_states_alternating_within_one_second():
    recs = [ctr(cid, T, profile=p) for cid, p in (("s1", "Sales"), ("s2", "Support"), ("s3", "Sales"))]
    conn = _fresh()
    for rec in reversed(recs):
        _load(conn, [rec])
    assert [h[0] for h in _agent_history(conn)] == ["Sales", "Support", "Sales"]
    assert _fact_profiles(conn) == [("s1", "Sales"), ("s2", "Support"), ("s3", "Sales")]
    _checks_pass(conn)


def _random_history(seed: int) -> list[dict]:
    """Contacts on few agents and few seconds (ties), a third with a later version that may move
    the contact (other agent, initiation or routing profile) or keep its place."""
    rng = random.Random(seed)
    agents, profiles = ["alice", "bob", None], ["Sales", "Support"]
    records = []
    for i in range(30):
        at = T + timedelta(seconds=rng.randrange(8))
        agent, profile = rng.choice(agents), rng.choice(profiles)
        records.append(ctr(f"c{i:02d}", at, agent=agent, profile=profile))
        if rng.random() < 0.35:
            if rng.random() < 0.5:
                at = T + timedelta(seconds=rng.randrange(8))
                agent, profile = rng.choice(agents), rng.choice(profiles)
            records.append(ctr(f"c{i:02d}", at, agent=agent, profile=profile, updated=T + timedelta(hours=2)))
    return records


def test_incremental_agent_versions_match_a_load_of_everything_at_once():
    # One batch into empty tables rebuilds every run from scratch: the reference for partial reruns.
    for seed in range(4):
        records = _random_history(seed)
        conn = _fresh()
        _load(conn, records)
        reference = _snapshot(conn)
        rng = random.Random(seed)
        for _ in range(2):
            shuffled = rng.sample(records, len(records))
            cuts = sorted(rng.sample(range(1, len(records)), 4))
            conn = _fresh()
            for lo, hi in itertools.pairwise([0, *cuts, len(records)]):
                _load(conn, shuffled[lo:hi])
            assert _snapshot(conn) == reference, seed
            # These ties put contacts of one version in the second where the next one starts.
            _checks_pass(conn)


def test_a_newer_version_in_place_keeps_its_agent_version_and_the_username_follows_the_latest():
    conn = _fresh()
    _load(conn, [ctr("a", T, profile="Sales"), ctr("b", T + timedelta(days=1), profile="Support")])
    before = conn.execute("SELECT contact_id, agent_key FROM connect.fact_contact ORDER BY 1").fetchall()
    newer = ctr("a", T, profile="Sales", updated=T + timedelta(days=3), attributes={"v": "2"})
    newer["Agent"]["Username"] = "alice.renamed"
    report = _load(conn, [newer])
    assert (report.updated, report.facts_repointed) == (1, 0)
    after = conn.execute("SELECT contact_id, agent_key FROM connect.fact_contact ORDER BY 1").fetchall()
    assert after == before
    assert conn.execute("SELECT DISTINCT username FROM connect.dim_agent").fetchall() == [("alice.renamed",)]
    _checks_pass(conn)


def test_a_newer_version_without_agent_drops_the_agent_version():
    conn = _fresh()
    _load(conn, [ctr("a", T), ctr("b", T + timedelta(hours=1))])
    _load(conn, [ctr("a", T, agent=None, updated=T + timedelta(days=1))])
    rows = conn.execute("SELECT contact_id, agent_arn, agent_key FROM connect.fact_contact ORDER BY 1")
    rows = rows.fetchall()
    assert rows[0] == ("a", None, None) and rows[1][2] is not None
    assert _agent_history(conn) == [("Sales", T + timedelta(hours=1), None, True)]
    _checks_pass(conn)


def test_each_check_finds_what_it_checks():
    # States alternating within one second (three versions whose boundaries fall inside it), then
    # a contact a day later; each corruption below is rolled back before the next.
    conn = _fresh()
    recs = [ctr(cid, T, profile=p) for cid, p in (("s1", "Sales"), ("s2", "Support"), ("s3", "Sales"))]
    _load(conn, [*recs, ctr("s4", T + timedelta(days=1), profile="Sales")])
    _checks_pass(conn)
    key = dict(conn.execute("SELECT contact_id, agent_key FROM connect.fact_contact").fetchall())
    set_fact = "UPDATE connect.fact_contact SET {} WHERE contact_id = '{}'"
    cases = [
        (FOREIGN_KEY_SQL, set_fact.format(f"agent_key = {key['s3']}", "s1"), "agent_version_not_valid"),
        (FOREIGN_KEY_SQL, set_fact.format(f"agent_key = {key['s2']}", "s4"), "agent_version_not_valid"),
        # s2 into s1's version: the Support version is left without contacts.
        (FOREIGN_KEY_SQL, set_fact.format(f"agent_key = {key['s1']}", "s2"), "agent_version_bounds"),
        (
            FOREIGN_KEY_SQL,
            "UPDATE connect.dim_agent SET valid_to = valid_to + INTERVAL 1 SECOND "
            f"WHERE agent_key = {key['s1']}",
            "agent_version_bounds",
        ),
        (FOREIGN_KEY_SQL, set_fact.format("agent_key = 7", "s4"), "agent_unresolved"),
        (FOREIGN_KEY_SQL, set_fact.format("queue_key = 7", "s4"), "queue_unresolved"),
        (FOREIGN_KEY_SQL, set_fact.format("queue_key = NULL", "s4"), "queue_missing"),
        (FOREIGN_KEY_SQL, set_fact.format("customer_key = 7", "s4"), "customer_unresolved"),
        (FOREIGN_KEY_SQL, set_fact.format("date_key = 7", "s4"), "date_unresolved"),
        (DURATION_SQL, set_fact.format("acw_duration = -1", "s4"), "negative_acw"),
        (DURATION_SQL, set_fact.format("customer_hold_duration = -1", "s4"), "negative_hold"),
        (
            ORDER_SQL,
            set_fact.format("disconnect_timestamp = initiation_timestamp - INTERVAL 1 SECOND", "s4"),
            "disconnect_before_initiation",
        ),
        # No key constraint on the fact (the load keeps it unique): the check is what proves it.
        (
            UNIQUE_SQL,
            "INSERT INTO connect.fact_contact SELECT * FROM connect.fact_contact WHERE contact_id = 's4'",
            "duplicate_contact_ids",
        ),
    ]
    for sql, corrupt, column in cases:
        conn.execute("BEGIN")
        conn.execute(corrupt)
        violations, detail = run_check(conn, sql)
        conn.execute("ROLLBACK")
        # Moving a contact can break its versions' bounds too: at least this kind, maybe more.
        assert violations >= detail[column] >= 1, (corrupt, detail)
    _checks_pass(conn)


def test_a_load_turns_vacuum_off_only_for_its_commit():
    conn = _fresh()
    conn.execute("SET max_vacuum_tasks = 7")
    _load(conn, [ctr("v1", T)])
    assert conn.execute("SELECT current_setting('max_vacuum_tasks')").fetchone() == (7,)
    conn.register("bad", pa.table({"contact_id": ["v2"]}))  # not a staged batch: the load fails
    with pytest.raises(duckdb.Error):
        load_staged(conn, "bad", LoadReport(None))
    assert conn.execute("SELECT current_setting('max_vacuum_tasks')").fetchone() == (7,)
    assert conn.execute("SELECT contact_id FROM connect.fact_contact").fetchall() == [("v1",)]
