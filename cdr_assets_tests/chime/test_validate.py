"""Unit tests of ``parse_cdr``: real samples, documented quirks, and crafted bad records.

Pure: no storage, no Dagster. A record is valid as a whole or rejected with a readable reason
(unlike the reference processor, which dropped fields that failed a type check).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cdr_assets.chime.schema import FIELD_NAMES, FIELDS, REQUIRED
from cdr_assets.chime.validate import Rejection, ValidCdr, parse_cdr
from cdr_assets_tests.conftest import SAMPLES

VC_SAMPLES = {
    # file: (quirks, extra_fields)
    "chime_vc_cdr_admin_guide_example.json": (("missing_IsProxyCall",), None),
    "chime_vc_cdr_automated_cdr_transformation_cdr_sample.json": (("missing_IsProxyCall",), None),
    "chime_vc_cdr_automated_reports_cdr_sample_2.json": ((), None),
    "chime_vc_cdr_automated_reports_priced_cdr_sample.json": (
        ("missing_IsProxyCall", "extra_keys"),
        {"pricePerUnitUSD": "0.0048000000"},
    ),
}
DROP = object()  # marks a field to remove in _variant


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# A complete, valid record with every field (incl. IsProxyCall): the base for crafted inputs.
BASE: dict[str, Any] = orjson.loads(_sample("chime_vc_cdr_automated_reports_cdr_sample_2.json"))


def _variant(**changes: Any) -> bytes:
    doc = dict(BASE)
    for name, value in changes.items():
        if value is DROP:
            doc.pop(name, None)
        else:
            doc[name] = value
    return orjson.dumps(doc)


def _valid(raw: bytes) -> ValidCdr:
    result = parse_cdr(raw)
    assert isinstance(result, ValidCdr), result
    return result


def _rejected(raw: bytes, code: str, *words: str) -> Rejection:
    result = parse_cdr(raw)
    assert isinstance(result, Rejection), f"expected {code}, got a valid record: {result}"
    assert result.code == code, result
    _assert_readable(result.reason)
    for word in words:
        assert word in result.reason, (word, result.reason)
    return result


def _assert_readable(reason: str) -> None:
    assert isinstance(reason, str)
    assert 10 <= len(reason) <= 300, reason
    assert reason.isprintable(), reason
    assert "Traceback" not in reason and "object at 0x" not in reason, reason


def _value(cdr: ValidCdr, name: str) -> object:
    return cdr.values[FIELD_NAMES.index(name)]


# -- real samples -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VC_SAMPLES))
def test_voice_connector_samples_are_valid(name: str) -> None:
    raw = _sample(name)
    doc = orjson.loads(raw)
    quirks, extra = VC_SAMPLES[name]
    cdr = _valid(raw)

    assert sorted(cdr.quirks) == sorted(quirks)
    assert len(cdr.values) == len(FIELDS) + 1  # schema fields in order, then extra_fields
    for (field, typ, _required), value in zip(FIELDS, cdr.values, strict=False):
        if field == "IsProxyCall" and field not in doc:
            assert value is False  # coerced: older records predate proxy calls
        elif field not in doc:
            assert value is None  # an optional field (SipAuthUser) left out
        else:
            assert value == doc[field], field
            assert type(value) is typ, (field, type(value))
    assert cdr.values[-1] == (None if extra is None else orjson.dumps(extra).decode())
    assert cdr.transaction_id == doc["TransactionId"]
    assert _value(cdr, "ServiceCode") == "AmazonChimeVoiceConnector"


def test_sample_quirks_in_detail() -> None:
    guide = _valid(_sample("chime_vc_cdr_admin_guide_example.json"))
    assert _value(guide, "SipAuthUser") == "XXXX"
    assert _value(guide, "BillableDurationSeconds") == 6
    assert _value(guide, "BillableDurationMinutes") == 0.1
    assert _value(guide, "StartTimeEpochSeconds") == 1565399625
    assert _value(guide, "Streaming") is True
    assert _value(guide, "IsProxyCall") is False

    reports = _valid(_sample("chime_vc_cdr_automated_reports_cdr_sample_2.json"))
    assert _value(reports, "SipAuthUser") is None  # absent, optional, not invented
    assert _value(reports, "StatusMessage") == "Normal Call Clearing"
    assert reports.values[-1] is None

    # The tab-indented sample and the priced one hold the same call in another key order:
    # identical values, except that the priced one keeps its extra key.
    tabbed_raw = _sample("chime_vc_cdr_automated_cdr_transformation_cdr_sample.json")
    assert b"\t" in tabbed_raw
    tabbed = _valid(tabbed_raw)
    priced = _valid(_sample("chime_vc_cdr_automated_reports_priced_cdr_sample.json"))
    assert tabbed.values[:-1] == priced.values[:-1]
    assert orjson.loads(priced.values[-1]) == {"pricePerUnitUSD": "0.0048000000"}  # type: ignore[arg-type]


def test_other_record_types_in_samples() -> None:
    _rejected(_sample("chime_vc_sdr_admin_guide_example.json"), "sdr_record", "Streaming Detail Record")
    _rejected(_sample("chime_business_calling_cdr_admin_guide_example.json"), "business_calling_record")


def test_s3_event_sample_is_not_a_cdr() -> None:
    result = parse_cdr(_sample("chime_vc_cdr_s3_put_event_sample.json"))
    assert isinstance(result, Rejection)
    _assert_readable(result.reason)


# -- documented quirks ------------------------------------------------------------------------


def test_integer_zero_minutes_is_coerced_to_float() -> None:
    # The real record in aws-samples' CDRExample.png: 0 s, integer 0 minutes, no SipAuthUser.
    cdr = _valid(_variant(BillableDurationSeconds=0, BillableDurationMinutes=0))
    minutes = _value(cdr, "BillableDurationMinutes")
    assert minutes == 0.0 and type(minutes) is float
    assert cdr.quirks == ("integer_BillableDurationMinutes",)
    assert _value(cdr, "BillableDurationSeconds") == 0

    cdr = _valid(_variant(BillableDurationSeconds=60, BillableDurationMinutes=1))
    assert _value(cdr, "BillableDurationMinutes") == 1.0
    assert type(_value(cdr, "BillableDurationMinutes")) is float


def test_optional_fields() -> None:
    cdr = _valid(_variant(IsProxyCall=DROP, SipAuthUser=DROP))
    assert _value(cdr, "IsProxyCall") is False and _value(cdr, "SipAuthUser") is None
    assert cdr.quirks == ("missing_IsProxyCall",)
    cdr = _valid(_variant(IsProxyCall=None))  # explicit null: same as absent
    assert _value(cdr, "IsProxyCall") is False
    cdr = _valid(_variant(IsProxyCall=True, SipAuthUser="5600"))
    assert (_value(cdr, "IsProxyCall"), _value(cdr, "SipAuthUser")) == (True, "5600")
    assert cdr.quirks == ()


def test_extra_keys_are_kept_never_dropped() -> None:
    extras = {"pricePerUnitUSD": "0.0048", "zNested": {"a": [1, 2.5, None]}, "AAA": True}
    cdr = _valid(_variant(**extras))
    assert "extra_keys" in cdr.quirks
    assert orjson.loads(cdr.values[-1]) == extras  # type: ignore[arg-type]
    assert len(cdr.values) == len(FIELDS) + 1
    assert cdr.values[:-1] == _valid(_variant()).values[:-1]  # known fields unaffected


def test_edge_values_that_are_valid() -> None:
    start = BASE["StartTimeEpochSeconds"]
    cdr = _valid(_variant(EndTimeEpochSeconds=start))  # zero-length call
    assert _value(cdr, "EndTimeEpochSeconds") == start
    _valid(_variant(Direction="Inbound", Streaming=True, Status="Failed", StatusMessage=""))
    _valid(b"  \n" + _variant() + b"\n")  # surrounding whitespace is fine JSON


# -- crafted bad inputs -----------------------------------------------------------------------

_COMPACT = _variant()
BAD_INPUTS = [
    # id, raw, code, words the reason must contain
    ("empty", b"", "empty_object", ()),
    ("truncated_one_byte", _COMPACT[:1], "truncated_json", ()),
    ("truncated_half", _COMPACT[: len(_COMPACT) // 2], "truncated_json", ()),
    ("truncated_last_brace", _COMPACT[:-1], "truncated_json", ()),
    ("garbage", b"\x00\x01garbage\xff", "not_json", ()),
    ("zip_magic", b"PK\x03\x04\x14\x00", "not_json", ()),
    ("invalid_utf8_start", b"\xff\xfe{}", "not_json", ()),
    ("invalid_utf8_in_value", _COMPACT.replace(b'"Completed"', b'"Compl\xe9ted"'), "not_json", ()),
    ("whitespace_only", b"   \n", "not_json", ()),
    ("trailing_garbage", _COMPACT + b"}", "not_json", ()),
    ("two_records_concatenated", _COMPACT + _COMPACT, "not_json", ()),
    ("empty_list", b"[]", "not_an_object", ("list",)),
    ("list_of_records", b"[" + _COMPACT + b"," + _COMPACT + b"]", "not_an_object", ("list",)),
    ("string", b'"hello"', "not_an_object", ()),
    ("number", b"42", "not_an_object", ()),
    ("null", b"null", "not_an_object", ()),
    ("empty_json_object", b"{}", "empty_json_object", ()),
    ("seconds_as_string", _variant(BillableDurationSeconds="30"), "wrong_type", ("BillableDurationSeconds",)),
    ("seconds_as_bool", _variant(BillableDurationSeconds=True), "wrong_type", ("BillableDurationSeconds",)),
    ("seconds_as_float", _variant(BillableDurationSeconds=30.0), "wrong_type", ("BillableDurationSeconds",)),
    (
        "minutes_as_string",
        _variant(BillableDurationMinutes="0.5"),
        "wrong_type",
        ("BillableDurationMinutes",),
    ),
    ("minutes_as_bool", _variant(BillableDurationMinutes=False), "wrong_type", ("BillableDurationMinutes",)),
    ("start_as_float", _variant(StartTimeEpochSeconds=1.5e9), "wrong_type", ("StartTimeEpochSeconds",)),
    ("end_as_string", _variant(EndTimeEpochSeconds="1602100513"), "wrong_type", ("EndTimeEpochSeconds",)),
    ("streaming_as_string", _variant(Streaming="true"), "wrong_type", ("Streaming",)),
    ("streaming_as_int", _variant(Streaming=1), "wrong_type", ("Streaming",)),
    ("proxy_as_string", _variant(IsProxyCall="false"), "wrong_type", ("IsProxyCall",)),
    ("sip_user_as_int", _variant(SipAuthUser=5600), "wrong_type", ("SipAuthUser",)),
    ("account_as_int", _variant(AwsAccountId=999999999999), "wrong_type", ("AwsAccountId",)),
    ("direction_as_list", _variant(Direction=["Outbound"]), "wrong_type", ("Direction",)),
    ("negative_seconds", _variant(BillableDurationSeconds=-1), "negative_duration", ("-1",)),
    ("negative_minutes", _variant(BillableDurationMinutes=-0.5), "negative_duration", ("-0.5",)),
    (
        "end_before_start",
        _variant(EndTimeEpochSeconds=BASE["StartTimeEpochSeconds"] - 1),
        "end_before_start",
        (str(BASE["StartTimeEpochSeconds"]),),
    ),
    (
        "start_in_1970",
        _variant(StartTimeEpochSeconds=86_400),
        "timestamp_out_of_range",
        ("StartTimeEpochSeconds",),
    ),
    ("start_zero", _variant(StartTimeEpochSeconds=0), "timestamp_out_of_range", ("StartTimeEpochSeconds",)),
    (
        "end_in_milliseconds",
        _variant(EndTimeEpochSeconds=BASE["EndTimeEpochSeconds"] * 1000),
        "timestamp_out_of_range",
        ("EndTimeEpochSeconds",),
    ),
    ("direction_sideways", _variant(Direction="Sideways"), "invalid_value", ("Direction", "Sideways")),
    ("direction_lowercase", _variant(Direction="outbound"), "invalid_value", ("Direction",)),
    ("empty_transaction_id", _variant(TransactionId=""), "invalid_value", ("TransactionId",)),
    ("empty_voice_connector", _variant(VoiceConnectorId=""), "invalid_value", ("VoiceConnectorId",)),
    ("empty_status", _variant(Status=""), "invalid_value", ("Status",)),
    ("schema_1_0", _variant(SchemaVersion="1.0"), "unsupported_schema_version", ("1.0", "2.0")),
    ("schema_3_0", _variant(SchemaVersion="3.0"), "unsupported_schema_version", ("3.0",)),
    ("sma_record", _variant(SipMediaApplicationId="sma-1"), "sma_record", ("SIP media application",)),
    ("sma_rule_record", _variant(SipRuleId="rule-1"), "sma_record", ()),
    ("other_service", _variant(ServiceCode="SomethingElse"), "other_record_type", ("SomethingElse",)),
    ("service_as_int", _variant(ServiceCode=7), "other_record_type", ("ServiceCode",)),
    (
        "business_calling_service",
        _variant(ServiceCode="AmazonChimeBusinessCalling"),
        "business_calling_record",
        ("Business Calling",),
    ),
    ("streaming_usage", _variant(UsageType="USE1-VC-kinesis-audio-streaming"), "sdr_record", ()),
]


@pytest.mark.parametrize(
    ("raw", "code", "words"), [p[1:] for p in BAD_INPUTS], ids=[p[0] for p in BAD_INPUTS]
)
def test_bad_inputs_are_rejected(raw: bytes, code: str, words: tuple[str, ...]) -> None:
    _rejected(raw, code, *words)


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_missing_required_field(field: str) -> None:
    _rejected(_variant(**{field: DROP}), "missing_field", field, "missing")


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_null_required_field(field: str) -> None:
    _rejected(_variant(**{field: None}), "missing_field", field, "null")


def test_sdr_without_source_number_is_an_sdr() -> None:
    doc = {k: v for k, v in BASE.items() if k not in ("SourcePhoneNumber", "DestinationPhoneNumber")}
    _rejected(orjson.dumps({**doc, "ServiceCode": "AmazonChime"}), "sdr_record")


# -- the reference processor's bug, not copied ------------------------------------------------

_WRONG = {str: 12345, int: "1", float: "0.5", bool: "true"}


@pytest.mark.parametrize(("field", "typ"), [(name, typ) for name, typ, _ in FIELDS])
def test_one_wrong_typed_field_rejects_the_whole_record(field: str, typ: type) -> None:
    """The reference drops a field that fails its type check and keeps the rest; we reject."""
    raw = _variant(**{field: _WRONG[typ]}, pricePerUnitUSD="0.0048")
    result = parse_cdr(raw)
    assert isinstance(result, Rejection), f"{field} with a wrong type was accepted: {result}"
    if field == "ServiceCode":
        assert result.code == "other_record_type"  # a non-Voice-Connector service code
    else:
        assert result.code == "wrong_type"
    assert field in result.reason
    _assert_readable(result.reason)


def test_many_broken_fields_are_still_rejected() -> None:
    # The reference keeps a record as long as any one key survives its checks.
    broken = {name: _WRONG[typ] for name, typ, _ in FIELDS if name not in ("ServiceCode", "TransactionId")}
    result = parse_cdr(_variant(**broken))
    assert isinstance(result, Rejection)
    assert result.code == "wrong_type"


def test_parse_is_pure_and_repeatable() -> None:
    raw = _sample("chime_vc_cdr_automated_reports_priced_cdr_sample.json")
    assert parse_cdr(raw) == parse_cdr(raw)
    assert parse_cdr(b"[]") == parse_cdr(b"[]")
