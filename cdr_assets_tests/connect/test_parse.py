"""The Firehose file parser: streaming decode, resynchronisation, offsets, flattening."""

import gzip
import json
from datetime import datetime

from cdr_assets.connect.parse import parse_file
from cdr_assets_tests.conftest import SAMPLES
from cdr_assets_tests.connect.factory import concatenated, ctr

T = datetime(2026, 3, 1, 9, 0, 0)


def _tricky(cid: str) -> dict:
    return ctr(
        cid, T, attributes={"note": 'a}{"ContactId":"fake"}{b', "json": "{[}]", "multi": "line1\nline2}\n{"}
    )


def test_real_samples_parse():
    parsed = parse_file((SAMPLES / "connect_ctr_duplicated_samples.json").read_bytes(), "k")
    assert parsed.row_count == parsed.records == 6 and not parsed.bad
    assert {str(t) for t in parsed.rows["last_update_timestamp"]} == {
        "2022-01-05 17:48:35",
        "2022-01-11 03:41:32",
        "2022-01-11 04:09:47",
    }
    single = parse_file((SAMPLES / "connect_ctr_sample_single.json").read_bytes(), "k")
    assert single.row_count == 1
    row = {k: v[0] for k, v in single.rows.items()}
    assert row["agent_username"] == "Steve.Lusk" and row["queue_duration"] == 346
    assert row["hierarchy_l2_name"] == "TCC ALL" and row["hierarchy_l3_arn"] is None
    assert row["with_voice_mail"] and row["recording_location"].endswith(".wav")
    assert row["acw_duration"] == 5 and row["number_of_holds"] == 2


def test_concatenated_with_braces_in_values():
    recs = [_tricky(f"c{i}") for i in range(3)]
    for sep in ("", "\n", "\r\n", "  \n\n"):
        parsed = parse_file(concatenated(recs, sep), "k")
        assert parsed.rows["contact_id"] == ["c0", "c1", "c2"] and not parsed.bad, sep
        assert json.loads(parsed.rows["attributes"][0])["note"] == 'a}{"ContactId":"fake"}{b'


def test_pretty_printed_records_back_to_back():
    text = "".join(json.dumps(_tricky(f"p{i}"), indent=4) for i in range(2)).encode()
    parsed = parse_file(text, "k")
    assert parsed.rows["contact_id"] == ["p0", "p1"]


def test_bad_spans_do_not_hide_good_records():
    good = [concatenated([ctr(f"g{i}", T)]) for i in range(4)]
    truncated = good[0][: len(good[0]) // 2]
    data = good[1] + b"garbage!!" + good[2] + truncated + good[3] + b'{"ContactId": "x"'
    parsed = parse_file(data, "k")
    assert parsed.rows["contact_id"] == ["g1", "g2", "g3"]
    assert [b.code for b in parsed.bad] == ["invalid_json"] * 3
    assert [b.offset for b in parsed.bad] == [
        len(good[1]),
        len(good[1]) + 9 + len(good[2]),
        len(good[1]) + 9 + len(good[2]) + len(truncated) + len(good[3]),
    ]
    assert parsed.bad[0].raw == b"garbage!!" and parsed.bad[1].raw == truncated
    assert parsed.records == parsed.row_count + len(parsed.bad)


def test_invalid_records_are_quarantined_alone():
    bad_ts = ctr("b1", T)
    bad_ts["InitiationTimestamp"] = "yesterday"
    no_id = ctr("", T)
    wrong_type = ctr("b3", T)
    wrong_type["Agent"]["AgentInteractionDuration"] = "long"
    data = concatenated([ctr("ok1", T), bad_ts, no_id, [1, 2], wrong_type, ctr("ok2", T)], "\n")
    parsed = parse_file(data, "k")
    assert parsed.rows["contact_id"] == ["ok1", "ok2"]
    assert [b.code for b in parsed.bad] == ["bad_timestamp", "bad_record", "bad_record", "bad_type"]


def test_numbers_a_bigint_cannot_hold_are_quarantined_not_fatal():
    def with_holds(cid: str, raw: str) -> bytes:  # raw JSON text, as Python's json.dumps cannot write it
        rec = ctr(cid, T)
        rec["Agent"]["NumberOfHolds"] = "HOLDS"
        return json.dumps(rec).replace('"HOLDS"', raw).encode()

    raws = {"ok": "2", "huge": "18446744073709551616", "inf": "Infinity", "nan": "NaN"}
    parsed = parse_file(b"".join(with_holds(cid, raw) for cid, raw in raws.items()), "k")
    assert parsed.rows["contact_id"] == ["ok"] and parsed.rows["number_of_holds"] == [2]
    assert [b.code for b in parsed.bad] == ["bad_value"] * 3
    assert ["beyond a 64-bit integer" in b.reason for b in parsed.bad] == [True, False, False]
    assert ["not a finite number" in b.reason for b in parsed.bad] == [False, True, True]


def test_json_array_delivery_and_gzip():
    arr = json.dumps([ctr("a1", T), ctr("a2", T)]).encode()
    assert parse_file(arr, "k").rows["contact_id"] == ["a1", "a2"]
    assert parse_file(gzip.compress(concatenated([ctr("z1", T)])), "k").rows["contact_id"] == ["z1"]


def test_positions_and_byte_offsets_with_non_ascii_and_bad_utf8():
    first = concatenated([ctr("é1", T, attributes={"name": "Zoë"})])
    data = first + b"\xff\xfe" + concatenated([ctr("e2", T)])
    parsed = parse_file(data, "k")
    assert parsed.rows["contact_id"] == ["é1", "e2"]
    assert parsed.rows["source_record"] == [0, 2]  # positions among the file's values
    assert [b.code for b in parsed.bad] == ["invalid_json"] and parsed.bad[0].offset == len(first)  # bytes
    assert parsed.bad[0].raw == b"\xff\xfe"
    inside = concatenated([ctr("u1", T, attributes={"x": "AB"})]).replace(b"AB", b"A\xffB")
    parsed = parse_file(inside + concatenated([ctr("u2", T)]), "k")
    assert parsed.rows["contact_id"] == ["u2"] and [b.code for b in parsed.bad] == ["invalid_utf8"]
    assert parsed.bad[0].raw == inside


def test_timestamps_are_utc():
    rec = ctr("tz", T)
    rec["InitiationTimestamp"] = "2026-03-01T10:00:00+01:00"
    parsed = parse_file(concatenated([rec]), "k")
    assert str(parsed.rows["initiation_timestamp"][0]) == "2026-03-01 09:00:00"
