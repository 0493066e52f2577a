"""OTLP JSON (an ``ExportTraceServiceRequest`` as the OTLP/JSON encoding writes it) straight into the
spans the mapping reads (:class:`flywheel.feedback.otlp_spans.Span`), without protobuf.

Protobuf's JSON parser is pure Python (its fast backend does not cover JSON) and was a third of a
file import's time; this reader walks only the fields the mapping reads and checks their types as it
goes, so a request of the wrong shape is refused with the field that is wrong, as before:

- keys in lowerCamelCase or as the proto field names (``resourceSpans`` or ``resource_spans``), unknown
  keys ignored (as OTLP asks of receivers), ``null`` read as absent;
- trace and span ids in hex (OTLP JSON), 16 and 8 bytes, or empty;
- 64-bit integers as JSON numbers or decimal strings; ``bytesValue`` in base64 (kept as hex, like the
  protobuf path).

Fields the mapping does not read (span name, kind, status, links, dropped counts) are not checked.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator
from typing import Any

from flywheel.feedback.otlp_spans import OtlpParseError, Span

_ID_BYTES = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
_SNAKE = {
    "resourceSpans": "resource_spans",
    "scopeSpans": "scope_spans",
    "traceId": "trace_id",
    "spanId": "span_id",
    "parentSpanId": "parent_span_id",
    "startTimeUnixNano": "start_time_unix_nano",
    "endTimeUnixNano": "end_time_unix_nano",
    "timeUnixNano": "time_unix_nano",
    "stringValue": "string_value",
    "boolValue": "bool_value",
    "intValue": "int_value",
    "doubleValue": "double_value",
    "arrayValue": "array_value",
    "kvlistValue": "kvlist_value",
    "bytesValue": "bytes_value",
}
_VALUE_KINDS = ("stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue", "bytesValue")
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def json_spans(doc: Any) -> list[Span]:
    """Every span of one OTLP JSON request, in the order written; :class:`OtlpParseError` names the
    field whose value has the wrong type (or the id that is not hex)."""
    if not isinstance(doc, dict):
        raise OtlpParseError("not OTLP JSON: an ExportTraceServiceRequest is a JSON object with resourceSpans")
    try:
        return list(_spans(doc))
    except RecursionError:
        raise OtlpParseError("not OTLP JSON: nested too deeply") from None


def _spans(doc: dict[str, Any]) -> Iterator[Span]:
    for rs in _objects(doc, "resourceSpans"):
        resource = _attributes(_object(rs, "resource"))
        for ss in _objects(rs, "scopeSpans"):
            for s in _objects(ss, "spans"):
                yield Span(
                    _id(s, "traceId"),
                    _id(s, "spanId"),
                    _id(s, "parentSpanId") or None,
                    _uint(s, "startTimeUnixNano"),
                    _uint(s, "endTimeUnixNano"),
                    _attributes(s),
                    [(_string(e, "name"), _uint(e, "timeUnixNano"), _attributes(e)) for e in _objects(s, "events")],
                    resource,
                )


def _get(obj: dict[str, Any], key: str) -> Any:
    value = obj.get(key)
    if value is None and key in _SNAKE:
        value = obj.get(_SNAKE[key])
    return value


def _wrong(key: str) -> OtlpParseError:
    return OtlpParseError(f"not an OTLP ExportTraceServiceRequest: field {key} has a value of the wrong type")


def _objects(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """A repeated message field: absent is empty, anything but a list of objects is refused."""
    value = _get(obj, key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _wrong(key)
    return value


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = _get(obj, key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(key)
    return value


def _string(obj: dict[str, Any], key: str) -> str:
    value = _get(obj, key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(key)
    return value


def _id(obj: dict[str, Any], key: str) -> str:
    """A trace or span id as lower-case hex ("" when absent)."""
    value = _get(obj, key)
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _wrong(key)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpParseError(f"not OTLP JSON: {key} is not a hex id") from None
    if len(raw) != _ID_BYTES[key]:
        raise OtlpParseError(f"not OTLP JSON: {key} is not {_ID_BYTES[key] * 2} hex digits")
    return raw.hex()


def _uint(obj: dict[str, Any], key: str) -> int:
    value = _int(_get(obj, key), key)
    if value < 0 or value >= 2**64:
        raise _wrong(key)
    return value


def _int(value: Any, key: str) -> int:
    """A 64-bit integer as OTLP JSON writes it: a number, or a decimal string."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _wrong(key)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _wrong(key)


def _attributes(obj: dict[str, Any], key: str = "attributes") -> dict[str, Any]:
    """``KeyValue``s as a plain dict (an array a list, a key-value list a dict); a later key wins."""
    out: dict[str, Any] = {}
    for kv in _objects(obj, key):
        out[_string(kv, "key")] = _value(_object(kv, "value"))
    return out


def _value(value: dict[str, Any]) -> Any:
    """One ``AnyValue``: the first of its kinds that is set, as the protobuf path reads it."""
    for kind in _VALUE_KINDS:
        found = _get(value, kind)
        if found is None:
            continue
        if kind == "stringValue":
            if not isinstance(found, str):
                raise _wrong(kind)
            return found
        if kind == "boolValue":
            if not isinstance(found, bool):
                raise _wrong(kind)
            return found
        if kind == "intValue":
            number = _int(found, kind)
            if not -(2**63) <= number < 2**63:
                raise _wrong(kind)
            return number
        if kind == "doubleValue":
            return _double(found)
        if kind == "arrayValue":
            if not isinstance(found, dict):
                raise _wrong(kind)
            return [_value(v) for v in _objects(found, "values")]
        if kind == "kvlistValue":
            if not isinstance(found, dict):
                raise _wrong(kind)
            return _attributes(found, "values")
        return _bytes_hex(found)
    return None


def _double(value: Any) -> float:
    if isinstance(value, bool):
        raise _wrong("doubleValue")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value in _FLOAT_WORDS:
            return _FLOAT_WORDS[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise _wrong("doubleValue")


def _bytes_hex(value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong("bytesValue")
    try:
        standard = value.replace("-", "+").replace("_", "/")  # protobuf's JSON takes either alphabet
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True).hex()
    except (binascii.Error, ValueError):
        raise _wrong("bytesValue") from None
