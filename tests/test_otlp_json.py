"""OTLP JSON is read without protobuf (flywheel/feedback/otlp_json.py): whatever protobuf encodes, the
JSON reader must see the same spans as the protobuf path, and a request of the wrong shape is refused
with the field that is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from flywheel.feedback.otlp_import import parse_json, parse_protobuf, to_json, to_protobuf
from flywheel.feedback.otlp_json import json_spans
from flywheel.feedback.otlp_spans import OtlpParseError, proto_spans

_SCALARS = (
    st.text(max_size=20)
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=12)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


def _any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list):
        out.array_value.values.extend(_any_value(v) for v in value)
    else:
        out.kvlist_value.values.extend(KeyValue(key=k, value=_any_value(v)) for k, v in value.items())
    return out


def _request(attrs: dict[str, Any], events: list[tuple[str, int, dict[str, Any]]], times: tuple[int, int]) -> Any:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items())
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.parent_span_id = bytes(range(16)), b"\xff" * 8, b"\x01" * 8
    span.name, span.start_time_unix_nano, span.end_time_unix_nano = "chat", *times
    span.attributes.extend(KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items())
    for name, ns, event_attrs in events:
        event = span.events.add(name=name, time_unix_nano=ns)
        event.attributes.extend(KeyValue(key=k, value=_any_value(v)) for k, v in event_attrs.items())
    return request


@settings(max_examples=150, deadline=None)
@given(
    attrs=st.dictionaries(st.text(max_size=10), _VALUES, max_size=4),
    events=st.lists(
        st.tuples(st.text(max_size=10), st.integers(0, 2**64 - 1), st.dictionaries(st.text(max_size=6), _VALUES)),
        max_size=2,
    ),
    times=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
)
def test_json_reads_every_value_protobuf_can_carry_the_same(attrs: dict, events: list, times: tuple) -> None:
    request = _request(attrs, events, times)
    doc = json.loads(json.dumps(to_json(request)))  # as a file or a body holds it
    assert json_spans(doc) == proto_spans(request)
    assert parse_protobuf(request.SerializeToString()) == proto_spans(request)
    assert proto_spans(to_protobuf(doc)) == proto_spans(request)


def test_proto_field_names_numbers_as_strings_and_either_base64_alphabet_are_read() -> None:
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "0F" * 16,
                                "span_id": "ab" * 8,
                                "start_time_unix_nano": "1700000000000000001",
                                "endTimeUnixNano": 1.7e18,
                                "attributes": [
                                    {"key": "n", "value": {"int_value": "-5"}},
                                    {"key": "d", "value": {"doubleValue": "Infinity"}},
                                    {"key": "b", "value": {"bytesValue": "-_8"}},
                                    {"key": "none", "value": {}},
                                    {"key": "nulls", "value": {"stringValue": None, "boolValue": False}},
                                ],
                                "name": "ignored",
                                "links": [{"traceId": "not read"}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (span,) = parse_json(json.dumps(doc))
    assert (span.trace_id, span.span_id, span.parent_id) == ("0f" * 16, "ab" * 8, None)
    assert (span.start_ns, span.end_ns) == (1700000000000000001, 1700000000000000000)
    assert span.attributes == {"n": -5, "d": float("inf"), "b": "fbff", "none": None, "nulls": False}


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ([], "not OTLP JSON: an ExportTraceServiceRequest is a JSON object with resourceSpans"),
        ({"resourceSpans": 7}, "field resourceSpans has a value of the wrong type"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [5]}]}]}, "field spans has a value of the wrong type"),
        ({"resourceSpans": [{"resource": []}]}, "field resource has a value of the wrong type"),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]},
            "not OTLP JSON: traceId is not a hex id",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]},
            "not OTLP JSON: spanId is not 16 hex digits",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]},
            "field startTimeUnixNano has a value of the wrong type",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"endTimeUnixNano": -1}]}]}]},
            "field endTimeUnixNano has a value of the wrong type",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": 3, "value": {}}]}]}]}]},
            "field key has a value of the wrong type",
        ),
        (
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {"intValue": 1.5}}]}]}]}
                ]
            },
            "field intValue has a value of the wrong type",
        ),
        (
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {"intValue": 2**63}}]}]}]}
                ]
            },
            "field intValue has a value of the wrong type",
        ),
        (
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"events": [{"name": ["x"]}]}]}]}]},
            "field name has a value of the wrong type",
        ),
        (
            {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"bytesValue": "***"}}]}}]},
            "field bytesValue has a value of the wrong type",
        ),
        (
            {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"stringValue": 1}}]}}]},
            "field stringValue has a value of the wrong type",
        ),
    ],
)
def test_a_request_of_the_wrong_shape_is_refused_naming_the_field(doc: Any, error: str) -> None:
    with pytest.raises(OtlpParseError) as exc:
        parse_json(json.dumps(doc))
    assert str(exc.value).endswith(error)


def test_deep_nesting_and_text_that_is_not_json_are_refused_with_a_reason() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(5000):
        value = {"arrayValue": {"values": [value]}}
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": value}]}}]}
    with pytest.raises(OtlpParseError, match="nested too deeply"):
        json_spans(doc)
    with pytest.raises(OtlpParseError, match=r"^not JSON \("):
        parse_json(b"{not json")
