"""Staging's two paths agree: DuckDB's reader takes a file only when the streaming decoder would
stage every record of it the same way; every other file is left to the decoder."""

import copy
import gzip
import json
from datetime import date, datetime

import pyarrow as pa
import pytest

from cdr_assets.connect.ctr_reader import finish, in_staged_order, read_ctr_files
from cdr_assets.connect.generate import generate_ctrs
from cdr_assets.connect.parse import parse_file
from cdr_assets.connect.schema import STAGED_SCHEMA
from cdr_assets.connect.staging import read_files
from cdr_assets.storage import LocalStorage
from cdr_assets_tests.conftest import SAMPLES
from cdr_assets_tests.connect.factory import concatenated, ctr, firehose_key

T = datetime(2026, 3, 1, 9, 0, 0)
DAY = date(2026, 3, 1)


def _streamed(files: dict[str, bytes]) -> tuple[pa.Table, list]:
    """The reference: every file through the streaming decoder."""
    tables, bad = [], []
    for key, data in files.items():
        parsed = parse_file(data, key)
        tables.append(pa.table(parsed.rows, schema=STAGED_SCHEMA))
        bad += [(key, b.offset, b.code) for b in parsed.bad]
    return in_staged_order(finish(pa.concat_tables(tables))), sorted(bad)


def _both(tmp_path, files: dict[str, bytes]):
    store = LocalStorage(tmp_path / "store")
    store.ensure_bucket("c")
    for key, data in files.items():
        store.put("c", key, data)
    staged = read_files(store, "c", sorted(files), DAY, workers=1)
    bad = sorted(
        (k, o, c)
        for k, o, c, *_ in zip(
            *(staged.quarantine[n].to_pylist() for n in ("source_key", "source_offset", "reason_code")),
            strict=True,
        )
    )
    return staged, bad, _streamed(files)


def _odd_values() -> dict[str, dict]:
    """One record each that the reader must not stage on its own judgement."""

    def edit(path: str, value) -> dict:
        rec = ctr("odd", T, queue="Support")
        *parents, leaf = path.split(".")
        node = rec
        for p in parents:
            node = node[p]
        node[leaf] = value
        return rec

    cases = {
        "number in a string field": edit("Channel", 5),
        "account id as a number": edit("AWSAccountId", 123456789012),
        "digits in a string field": edit("Agent.Username", "12345"),  # a real string, but looks numeric
        "object in a string field": edit("Queue.Name", {"x": 1}),
        "boolean in a string field": edit("DisconnectReason", True),
        "array in a string field": edit("Queue.ARN", ["a", 1]),
        "exponent number in a string field": edit("Agent.ARN", -1.5e-7),
        # The first and the last string leaf that the reader checks, at the ends of its search text.
        "number in the first string field": edit("ContactId", 5),
        "number in the last string field": edit("Recording", {"Location": "b/k.wav", "Status": 0}),
        "numeric string in a number field": edit("Agent.AgentInteractionDuration", "12"),
        "float in a number field": edit("Agent.AgentInteractionDuration", 3.7),
        "boolean in a number field": edit("Queue.Duration", True),
        # The first and the last number leaf, at the ends of the reader's search text.
        "float in the first number field": edit("AgentConnectionAttempts", 1.5),
        "string in the last number field": edit("Queue.Duration", "7"),
        "number beyond a BIGINT": edit("Agent.NumberOfHolds", 10**19),
        "negative duration": edit("Agent.CustomerHoldDuration", -3),
        "offset timestamp": edit("InitiationTimestamp", "2026-03-01T10:00:00+01:00"),
        "fractional timestamp": edit("DisconnectTimestamp", "2026-03-01T10:00:00.250Z"),
        "short timestamp": edit("DisconnectTimestamp", "2026-3-01T10:00:00Z"),
        "timestamp hour 24": edit("DisconnectTimestamp", "2026-03-01T24:00:00Z"),
        "timestamp second 60": edit("DisconnectTimestamp", "2026-03-01T10:00:60Z"),
        "timestamp minute 60": edit("Agent.AfterContactWorkEndTimestamp", "2026-03-01T10:60:00Z"),
        "timestamp year 0": edit("DisconnectTimestamp", "0000-03-01T10:00:00Z"),
        "timestamp February 30": edit("LastUpdateTimestamp", "2026-02-30T10:00:00Z"),
        "timestamp month 13": edit("Queue.EnqueueTimestamp", "2026-13-01T10:00:00Z"),
        "timestamp with a space": edit("DisconnectTimestamp", "2026-03-01 10:00:00Z"),  # flatten takes it
        "timestamp holding a separator": edit("DisconnectTimestamp", "2026-03-01T10:00:00Z\u001f"),
        "not a timestamp": edit("InitiationTimestamp", "yesterday"),
        "number as timestamp": edit("LastUpdateTimestamp", 1767225600),
        "no contact id": edit("ContactId", None),
        "empty contact id": edit("ContactId", ""),
        "agent is a string": edit("Agent", "alice"),
        "attributes are a list": edit("Attributes", ["a"]),
        "intent is a number": edit("Attributes", {"Intent": 7}),
        "recording only in Recordings": edit("Recordings", [{"Location": "b/k.wav"}]),
        "hierarchy level is a string": edit("Agent.HierarchyGroups.Level2", "x"),
    }
    return cases


@pytest.mark.parametrize("case", sorted(_odd_values()))
def test_an_odd_record_sends_its_file_to_the_streaming_decoder(tmp_path, case):
    odd = _odd_values()[case]
    files = {
        firehose_key(T, suffix="a"): concatenated([ctr("g1", T), odd, ctr("g2", T)]),
        firehose_key(T, suffix="b"): concatenated([ctr("g3", T), ctr("g4", T)], "\n"),
    }
    staged, bad, (reference, reference_bad) = _both(tmp_path, files)
    assert staged.streamed == 1, "the odd file, and only it, is read by the streaming decoder"
    assert staged.rows.equals(reference) and bad == reference_bad


def test_generated_files_are_read_by_duckdb_exactly_as_the_decoder_reads_them(tmp_path):
    store = LocalStorage(tmp_path / "gen")
    store.ensure_bucket("c")
    generate_ctrs(store, "c", contacts=600, days=1, start=DAY, seed=5, records_per_file=50)
    keys = sorted(o.key for o in store.list_objects("c", "ctr/"))
    files = {k: store.get("c", k) for k in keys}
    staged, bad, (reference, _) = _both(tmp_path, files)
    assert staged.streamed == 0 and not bad
    assert staged.rows.equals(reference)
    assert staged.rows.num_rows == sum(f[2] for f in staged.per_file) > 600


def test_tricky_but_valid_records_stay_on_the_fast_path(tmp_path):
    tricky = ctr(
        "t1",
        T,
        attributes={
            "note": 'a}{"ContactId":"fake"}{b',
            "multi": "line1\nline2}\n{",
            "ctl": "tab\there\u0001",
            "uni": "Zoë — 日本 🎧",
            "quote": 'say "hi" \\ back',
            "Intent": "billing",
        },
    )
    nested = ctr("t2", T, attributes={"Intent": None, "deep": {"b": [1, 2.5, True], "a": None}})
    sparse = ctr("t3", T, agent=None, queue=None)
    sparse["CustomerEndpoint"] = None
    nulls = copy.deepcopy(ctr("t4", T))
    nulls["Agent"]["HierarchyGroups"] = None
    nulls["DisconnectTimestamp"] = ""
    files = {
        firehose_key(T, suffix="a"): concatenated([tricky, nested], ""),
        firehose_key(T, suffix="b"): concatenated([sparse, nulls], "\r\n"),
        firehose_key(T, suffix="c"): "".join(json.dumps(r, indent=2) for r in (tricky, sparse)).encode(),
        firehose_key(T, suffix="d"): b"",
        firehose_key(T, suffix="e"): gzip.compress(concatenated([ctr("z1", T)], "\n")),
        firehose_key(T, suffix="f"): (SAMPLES / "connect_ctr_duplicated_samples.json").read_bytes(),  # array
    }
    staged, bad, (reference, _) = _both(tmp_path, files)
    assert staged.streamed == 0 and not bad
    assert staged.rows.equals(reference)
    assert staged.rows.filter(pa.compute.equal(staged.rows["contact_id"], "t1"))["customer_intent"][
        0
    ].as_py() == ("billing")


def test_a_string_holding_the_reader_s_separator_is_staged_as_the_decoder_stages_it(tmp_path):
    # The reader looks for non-strings between unit separators (U+001F): a string holding one may
    # send its file to the decoder, but never changes what is staged.
    odd = ctr("s1", T, agent="x\u001f5\u001fy", queue="\u001f{\u001f")
    files = {
        firehose_key(T, suffix="a"): concatenated([ctr("g1", T), odd]),
        firehose_key(T, suffix="b"): concatenated([ctr("g2", T)]),
    }
    staged, bad, (reference, reference_bad) = _both(tmp_path, files)
    assert not bad and not reference_bad
    assert staged.rows.equals(reference)
    assert "x\u001f5\u001fy" in staged.rows["agent_username"].to_pylist()


def test_malformed_files_do_not_stop_their_batch(tmp_path):
    good = [concatenated([ctr(f"g{i}", T)]) for i in range(5)]
    files = {firehose_key(T, suffix=str(i)): data for i, data in enumerate(good)}
    files[firehose_key(T, suffix="t")] = good[0][:40] + good[1]  # truncated, then a good record
    files[firehose_key(T, suffix="u")] = good[2].replace(b"g2", b"g\xff2")  # invalid UTF-8
    files[firehose_key(T, suffix="v")] = good[3][:-1] + b"}}"  # an extra brace at the end
    staged, bad, (reference, reference_bad) = _both(tmp_path, files)
    assert staged.streamed == 3 and staged.rows.equals(reference) and bad == reference_bad
    paths = [str(tmp_path / "store" / "buckets" / "c" / k) for k in sorted(files)]
    direct = read_ctr_files(paths)
    assert len(direct.records) == 5 and len(direct.rejected) == 3
    assert all(
        "Malformed JSON" in why or "Expected OBJECT" in why or "UTF-8" in why
        for why in direct.rejected.values()
    ), direct.rejected


def _one_line(n: int) -> str:
    return json.dumps(ctr(f"e{n}", T), separators=(",", ":"))


_A, _B, _C, _D = (_one_line(n) for n in range(4))
# DuckDB settles each file's layout from its start: these change it midway or stretch it.
LAYOUTS = {
    "newline-separated, then two records on a line": f"{_A}\n{_B}\n{_C}{_D}\n",
    "newline-separated, then an indented record": f"{_A}\n{_B}\n" + json.dumps(ctr("e2", T), indent=2),
    "newline-separated, then text after a record": f"{_A}\n{_B} x\n",
    "newline-separated, then a number": f"{_A}\n5\n{_B}\n",
    "blank lines and spaces": f"\n\n  {_A}\n\n{_B}   {_C}",
    "an array": f"[{_A},\n{_B}]\n",
    "an empty array": "[]",
    "an array, then a record": f"[{_A},{_B}]{_C}",
    "two arrays": f"[{_A},{_B}][{_C}]",
    "an array without a comma": f"[{_A} {_B}]",
    "an array with a trailing comma": f"[{_A},{_B},]",
    "an array holding a number": f"[{_A},5]",
    "an array in an array": f"[[{_A}]]",
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_file_layout_stages_as_the_decoder_stages_it(tmp_path, layout):
    files = {
        firehose_key(T, suffix="a"): LAYOUTS[layout].encode(),
        firehose_key(T, suffix="b"): concatenated([ctr("g1", T)], "\n"),
    }
    staged, bad, (reference, reference_bad) = _both(tmp_path, files)
    assert staged.rows.equals(reference) and bad == reference_bad


def test_identical_deliveries_hash_alike_whichever_path_reads_them():
    samples = (SAMPLES / "connect_ctr_duplicated_samples.json").read_bytes()
    rows = finish(pa.table(parse_file(samples, "k").rows, schema=STAGED_SCHEMA))
    assert rows.num_rows == 6 and len(set(rows["record_hash"].to_pylist())) == 3


# Staged values that record_hash does not read: set from values it does, or the row's provenance.
_NOT_HASHED = {"customer_intent", "with_voice_mail", "record_hash", "source_key", "source_record"}


def test_record_hash_changes_with_every_staged_value():
    """The hash is built from the leaves by kind (``ctr_reader._joined``), not from the staged
    columns: a staged column added without a place in it would leave versions that differ only
    there to be told apart by their file names."""
    parsed = parse_file(concatenated([ctr("h1", T, attributes={"Intent": "billing"})]), "k")
    row = pa.table(parsed.rows, schema=STAGED_SCHEMA).to_pylist()[0]
    variants = [row]
    for name, value in row.items():
        if name in _NOT_HASHED:
            continue
        kind = STAGED_SCHEMA.field(name).type
        if pa.types.is_timestamp(kind):
            changed = (value or T).replace(year=(value or T).year + 1)
        elif pa.types.is_integer(kind):
            changed = (value or 0) + 1
        else:
            changed = (value or "") + "x" if name != "attributes" else '{"Intent": "sales"}'
        variants.append({**row, name: changed})
    hashes = finish(pa.Table.from_pylist(variants, schema=STAGED_SCHEMA))["record_hash"].to_pylist()
    assert len(variants) == len(STAGED_SCHEMA) - len(_NOT_HASHED) + 1
    assert len(set(hashes)) == len(variants)


def test_both_storage_modes_read_by_duckdb_and_a_vanished_file_is_accounted_for(cdr_env, monkeypatch):
    store = cdr_env.storage()
    bucket = cdr_env.connect_bucket
    generate_ctrs(store, bucket, contacts=200, days=1, start=DAY, seed=3, records_per_file=40)
    odd = firehose_key(T, suffix="odd")  # left to the streaming decoder
    store.put(bucket, odd, concatenated([ctr("o1", T), _odd_values()["number in a string field"]]))
    keys = sorted(o.key for o in store.list_objects(bucket, "ctr/"))
    files = {k: store.get(bucket, k) for k in keys}
    gone = firehose_key(T, suffix="gone")  # listed, then deleted before it was read
    gets: list[str] = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda b, k, *a, **kw: gets.append(k) or real_get(b, k, *a, **kw))
    staged = read_files(store, bucket, [*keys, gone], DAY, workers=1)
    reference, reference_bad = _streamed(files)
    assert staged.streamed == 2 and staged.rows.equals(reference)
    reasons = sorted(staged.quarantine["reason_code"].to_pylist())
    assert reasons == sorted(["vanished", *(code for _, _, code in reference_bad)])
    assert staged.bytes_read == sum(len(d) for d in files.values())
    if cdr_env.mode == "s3":  # every object downloaded once, the rejected one included
        assert sorted(k for k in gets if k != gone) == keys
