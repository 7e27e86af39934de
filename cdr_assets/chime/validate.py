"""Parse and validate one Chime Voice Connector CDR object.

Unlike the reference processor (which drops keys that fail a type check and keeps the rest),
a record is either valid as a whole or rejected with a readable reason. Only the documented,
harmless quirks of real records are coerced, and each coercion is reported as a quirk.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from cdr_assets.chime.schema import DIRECTIONS, FIELDS, SCHEMA_VERSION, SERVICE_CODE

# Epoch bounds a real call can have: Voice Connector launched in 2019; 2100 is a typo guard.
MIN_EPOCH = 1_420_070_400  # 2015-01-01
MAX_EPOCH = 4_102_444_800  # 2100-01-01


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ValidCdr:
    # Values in schema.FIELDS order, then extra_fields (JSON text or None).
    values: tuple[object, ...]
    quirks: tuple[str, ...]

    @property
    def transaction_id(self) -> str:
        return self.values[1]  # type: ignore[return-value]


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
_KNOWN = frozenset(name for name, _, _ in FIELDS)


def _other_record_type(doc: dict[str, object]) -> Rejection | None:
    service = doc.get("ServiceCode")
    if service == "AmazonChimeBusinessCalling":
        return Rejection(
            "business_calling_record", "Amazon Chime Business Calling CDR, not a Voice Connector CDR"
        )
    if "SipMediaApplicationId" in doc or "SipRuleId" in doc:
        return Rejection("sma_record", "SIP media application detail record, not a Voice Connector CDR")
    usage = doc.get("UsageType")
    if (isinstance(usage, str) and "streaming" in usage.lower()) or (
        service == "AmazonChime" and "SourcePhoneNumber" not in doc
    ):
        return Rejection("sdr_record", "Streaming Detail Record (SDR), not a Voice Connector CDR")
    if service is not None and service != SERVICE_CODE:
        return Rejection("other_record_type", f"ServiceCode {service!r} is not {SERVICE_CODE!r}")
    return None


def parse_cdr(raw: bytes) -> ValidCdr | Rejection:
    """Validate the bytes of one CDR object against the full Voice Connector CDR schema."""
    if not raw:
        return Rejection("empty_object", "object is empty (0 bytes)")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        if "unexpected end" in msg.lower() or "EOF" in msg:
            return Rejection("truncated_json", f"JSON ends early (truncated object): {msg}")
        return Rejection("not_json", f"not valid JSON: {msg}")
    if not isinstance(doc, dict):
        return Rejection("not_an_object", f"top-level JSON is {type(doc).__name__}, expected one object")
    if not doc:
        return Rejection("empty_json_object", "JSON object has no fields")
    other = _other_record_type(doc)
    if other is not None:
        return other

    values: list[object] = []
    quirks: list[str] = []
    for name, typ, required in FIELDS:
        value = doc.get(name)
        if value is None:
            if required:
                what = "is null" if name in doc else "is missing"
                return Rejection("missing_field", f"required field {name} {what}")
            if name == "IsProxyCall":
                # Absent from records written before proxy calls existed: they were not proxied.
                quirks.append("missing_IsProxyCall")
                value = False
            values.append(value)
            continue
        vtype = type(value)
        if vtype is not typ:
            if typ is float and vtype is int:
                quirks.append("integer_BillableDurationMinutes")
                value = float(value)
            else:
                return Rejection(
                    "wrong_type",
                    f"field {name} is {_TYPE_NAMES.get(vtype, vtype.__name__)} "
                    f"({value!r:.40}), expected {_TYPE_NAMES[typ]}",
                )
        values.append(value)

    (_acct, txn, _call, vc, status, _msg, _sip, secs, mins, version, *_rest) = values
    start, end = values[17], values[18]
    for name, v in (("TransactionId", txn), ("VoiceConnectorId", vc), ("Status", status)):
        if not v:
            return Rejection("invalid_value", f"field {name} is an empty string")
    if version != SCHEMA_VERSION:
        return Rejection(
            "unsupported_schema_version", f"SchemaVersion {version!r}, expected {SCHEMA_VERSION!r}"
        )
    if values[16] not in DIRECTIONS:
        return Rejection("invalid_value", f"Direction {values[16]!r} is not Inbound or Outbound")
    if secs < 0 or mins < 0:  # type: ignore[operator]
        return Rejection("negative_duration", f"negative billable duration ({secs} s, {mins} min)")
    for name, v in (("StartTimeEpochSeconds", start), ("EndTimeEpochSeconds", end)):
        if not MIN_EPOCH <= v <= MAX_EPOCH:  # type: ignore[operator]
            return Rejection("timestamp_out_of_range", f"{name} {v} is outside 2015..2100")
    if end < start:  # type: ignore[operator]
        return Rejection("end_before_start", f"call ends ({end}) before it starts ({start})")

    extra = None
    unknown = doc.keys() - _KNOWN
    if unknown:
        quirks.append("extra_keys")
        extra = orjson.dumps({k: doc[k] for k in sorted(unknown)}).decode()
    values.append(extra)
    return ValidCdr(tuple(values), tuple(quirks))
