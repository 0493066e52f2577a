"""``flywheel import otlp FILE`` and ``POST /v1/traces``: OTLP trace exports into the one ingest path.

Both read ``ExportTraceServiceRequest`` messages (``opentelemetry-proto``): the service's body as
protobuf or OTLP JSON, a file as OTLP JSON, either one request per line (what the OpenTelemetry
Collector's ``file`` exporter writes) or one JSON document (pretty-printed or not). OTLP JSON writes
trace and span ids in hex where protobuf's JSON mapping expects base64, so the ids are turned into
base64 first and one protobuf parser (and one mapping, :mod:`flywheel.feedback.otlp_spans`) serves all.
Fields OTLP JSON does not know are ignored, as the OTLP spec asks of receivers.

A file streams a request at a time; a line that is not an OTLP request is rejected with its line
number and quarantined, never stopping the rest.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flywheel.config import Settings
from flywheel.feedback.imports import ImportReport
from flywheel.feedback.ingest import ingest_source
from flywheel.feedback.otlp_spans import request_events
from flywheel.feedback.sources import Position, SourceItem, open_jsonl
from flywheel.feedback.store import FeedbackStore

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_IDS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8, "parentSpanId": 8, "parent_span_id": 8}
_PARSE_FIELD = re.compile(r"Failed to parse (\w+) field")


class OtlpParseError(ValueError):
    """A body or line that is not an OTLP trace export; the message names the rule, never a value."""


def parse_protobuf(body: bytes) -> Any:
    """An ``ExportTraceServiceRequest`` from its protobuf encoding."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        return ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RecursionError, ValueError):
        raise OtlpParseError("not an OTLP ExportTraceServiceRequest in protobuf: it cannot be decoded") from None


def parse_json(doc: Any) -> Any:
    """An ``ExportTraceServiceRequest`` from OTLP JSON: text, bytes, or a decoded JSON value."""
    from google.protobuf.json_format import ParseDict, ParseError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    if isinstance(doc, bytes | str):
        try:
            doc = json.loads(doc)
        except RecursionError:
            raise OtlpParseError("not OTLP JSON: nested too deeply") from None
        except ValueError as exc:
            raise OtlpParseError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise OtlpParseError("not OTLP JSON: an ExportTraceServiceRequest is a JSON object with resourceSpans")
    fixed = _base64_ids(doc)
    try:
        return ParseDict(fixed, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except RecursionError:
        raise OtlpParseError("not OTLP JSON: nested too deeply") from None
    except (ParseError, ValueError, TypeError, AttributeError) as exc:
        found = _PARSE_FIELD.search(str(exc))
        where = f": field {found.group(1)} has a value of the wrong type" if found else ": it does not fit its schema"
        raise OtlpParseError(f"not an OTLP ExportTraceServiceRequest{where}") from None


def _base64_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the request whose span, parent and link ids are base64, as protobuf's JSON reads bytes."""
    out = dict(doc)
    resources = out.get("resourceSpans", out.get("resource_spans"))
    if not isinstance(resources, list):
        return out
    fixed_resources = []
    for rs in resources:
        if isinstance(rs, dict):
            rs = dict(rs)
            for scope_key in ("scopeSpans", "scope_spans"):
                if isinstance(rs.get(scope_key), list):
                    rs[scope_key] = [_scope(s) for s in rs[scope_key]]
        fixed_resources.append(rs)
    out["resourceSpans" if "resourceSpans" in out else "resource_spans"] = fixed_resources
    return out


def _scope(scope: Any) -> Any:
    if not isinstance(scope, dict) or not isinstance(scope.get("spans"), list):
        return scope
    spans = []
    for span in scope["spans"]:
        if isinstance(span, dict):
            span = _ids(span)
            if isinstance(span.get("links"), list):
                span["links"] = [_ids(link) if isinstance(link, dict) else link for link in span["links"]]
        spans.append(span)
    return scope | {"spans": spans}


def _ids(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for key, size in _IDS.items():
        value = out.get(key)
        if not isinstance(value, str) or value == "":
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise OtlpParseError(f"not OTLP JSON: {key} is not a hex id") from None
        if len(raw) != size:
            raise OtlpParseError(f"not OTLP JSON: {key} is not {size * 2} hex digits")
        out[key] = base64.b64encode(raw).decode("ascii")
    return out


def to_json(request: Any) -> dict[str, Any]:
    """A request as OTLP JSON (camelCase, ids in hex): what a Collector's file exporter writes."""
    from google.protobuf.json_format import MessageToDict

    doc: dict[str, Any] = MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for scope in rs.get("scopeSpans", []):
            for span in scope.get("spans", []):
                _hex(span)
                for link in span.get("links", []):
                    _hex(link)
    return doc


def _hex(obj: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if isinstance(obj.get(key), str):
            obj[key] = base64.b64decode(obj[key]).hex()


@dataclass(frozen=True)
class Unreadable:
    """A line (or file) that is not an OTLP request: its text is what the quarantine keeps."""

    line: int
    text: bytes
    error: str


@dataclass
class OtlpRequests:
    """A source of the ingest: the evaluation results and annotations of OTLP requests, as events.

    ``span_of`` (kept when ``track_spans``) says which span each item came from, so a request's answer
    can count the spans that had an item rejected (OTLP's ``partial_success.rejected_spans``)."""

    name: str
    requests: Iterable[Any | Unreadable]
    settings: Settings
    report: ImportReport
    track_spans: bool = False
    span_of: dict[int, tuple[str, str]] = field(default_factory=dict)
    counts: ClassVar[Position] = Position.index

    def items(self) -> Iterator[SourceItem]:
        position = 0
        for request in self.requests:
            if isinstance(request, Unreadable):
                self.report.read += 1
                self.report.name(position, f"line {request.line}", None)
                yield SourceItem(position, request.text, f"line {request.line}: {request.error}")
                position += 1
                continue
            spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
            self.report.spans += len(spans)
            self.report.traces += len({s.trace_id for s in spans})
            for mapped in request_events(request, self.settings.imports.otlp):
                if mapped.event is None:
                    self.report.skip(mapped.skipped or "skipped")
                    continue
                self.report.read += 1
                self.report.name(position, mapped.item, mapped.trace_id)
                if self.track_spans:
                    self.span_of[position] = (mapped.trace_id, mapped.span_id)
                yield SourceItem.of_value(position, mapped.event)
                position += 1


def file_requests(items: Iterable[SourceItem]) -> Iterator[Any | Unreadable]:
    """The requests of an OTLP JSON file, given its non-blank lines: one request per line when the
    first line is a JSON object, else the whole file as one document."""
    lines = iter(items)
    first = next(lines, None)
    if first is None:
        return
    try:
        whole_line = isinstance(json.loads(first.text), dict)
    except (ValueError, RecursionError):
        whole_line = False
    if not whole_line:
        text = b"\n".join([first.text, *(i.text for i in lines)])
        yield _parsed(first.position, text)
        return
    yield _parsed(first.position, first.text)
    for item in lines:
        yield _parsed(item.position, item.text)


def _parsed(line: int, text: bytes) -> Any | Unreadable:
    try:
        return parse_json(text)
    except OtlpParseError as exc:
        return Unreadable(line, text, str(exc))


def import_otlp(settings: Settings, path: str, store: FeedbackStore) -> ImportReport:
    """Import the OTLP JSON file at ``path`` (``-`` for stdin) into ``store``."""
    report = ImportReport(source="otlp", file=path)
    with open_jsonl(path) as lines:
        name = "otlp-" + (Path(path).name if path != "-" else "stdin")
        source = OtlpRequests(name, file_requests(lines.items()), settings, report)
        ingest_source(source, store, settings.quarantine_dir, settings.ingest, report, kept=report.quarantine)
    return report


def ingest_request(settings: Settings, request: Any, store: FeedbackStore, name: str) -> tuple[ImportReport, int]:
    """One ``POST /v1/traces`` request's feedback, stored atomically; the report and how many spans had
    an item rejected."""
    report = ImportReport(source="otlp")
    source = OtlpRequests(name, [request], settings, report, track_spans=True)
    spans: set[tuple[str, str]] = set()
    tally = _SpanTally(report, source, spans)
    ingest_source(source, store, settings.quarantine_dir, settings.ingest, tally, atomic=True)
    return report, len(spans)


@dataclass
class _SpanTally:
    """The report's tally, also noting the span of each rejected item."""

    report: ImportReport
    source: OtlpRequests
    spans: set[tuple[str, str]]

    def reject(self, position: int, error: str) -> None:
        self.report.reject(position, error)
        if position in self.source.span_of:
            self.spans.add(self.source.span_of[position])

    def stored(self, offered: int, new: list[Any]) -> None:
        self.report.stored(offered, new)
