"""``flywheel import otlp FILE`` and ``POST /v1/traces``: OTLP trace exports into the one ingest path.

Both read ``ExportTraceServiceRequest``s: the service's body as protobuf (``opentelemetry-proto``) or
OTLP JSON, a file as OTLP JSON, either one request per line (what the OpenTelemetry Collector's
``file`` exporter writes) or one JSON document (pretty-printed or not). Protobuf is decoded by its
message class, OTLP JSON read directly (:mod:`flywheel.feedback.otlp_json`; protobuf's JSON parser
was a third of a file import's CPU), both into the same spans and one mapping
(:mod:`flywheel.feedback.otlp_spans`).
Fields OTLP JSON does not know are ignored, as the OTLP spec asks of receivers.

A file streams a request at a time; a line that is not an OTLP request is rejected with its line
number and quarantined, never stopping the rest.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flywheel.config import Settings
from flywheel.feedback.imports import ImportReport
from flywheel.feedback.ingest import ingest_source
from flywheel.feedback.otlp_json import json_spans
from flywheel.feedback.otlp_spans import OtlpParseError, Span, proto_spans, request_events
from flywheel.feedback.sources import Position, SourceItem, open_jsonl
from flywheel.feedback.store import FeedbackStore

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_HEX_IDS = ("traceId", "spanId", "parentSpanId")


def parse_protobuf(body: bytes) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest`` in its protobuf encoding."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RecursionError, ValueError):
        raise OtlpParseError("not an OTLP ExportTraceServiceRequest in protobuf: it cannot be decoded") from None
    return proto_spans(request)


def parse_json(doc: Any) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest`` in OTLP JSON: text, bytes, or a decoded JSON value."""
    if isinstance(doc, bytes | str):
        try:
            doc = json.loads(doc)
        except RecursionError:
            raise OtlpParseError("not OTLP JSON: nested too deeply") from None
        except ValueError as exc:
            raise OtlpParseError(f"not JSON ({exc})") from None
    return json_spans(doc)


def to_protobuf(doc: dict[str, Any]) -> Any:
    """An OTLP JSON request (hex ids) as the protobuf message an OTLP/HTTP exporter would send."""
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    def ids(obj: dict[str, Any]) -> dict[str, Any]:
        return obj | {k: base64.b64encode(bytes.fromhex(v)).decode() for k, v in obj.items() if k in _HEX_IDS and v}

    fixed = {
        "resourceSpans": [
            rs
            | {
                "scopeSpans": [
                    ss | {"spans": [ids(s) | {"links": [ids(x) for x in s.get("links", [])]} for s in ss["spans"]]}
                    for ss in rs.get("scopeSpans", [])
                ]
            }
            for rs in doc.get("resourceSpans", [])
        ]
    }
    return ParseDict(fixed, ExportTraceServiceRequest(), ignore_unknown_fields=True)


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
    for key in _HEX_IDS:
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
    requests: Iterable[list[Span] | Unreadable]
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
            self.report.spans += len(request)
            self.report.traces += len({s.trace_id for s in request})
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


def file_requests(items: Iterable[SourceItem]) -> Iterator[list[Span] | Unreadable]:
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


def _parsed(line: int, text: bytes) -> list[Span] | Unreadable:
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


def ingest_request(
    settings: Settings, request: list[Span], store: FeedbackStore, name: str
) -> tuple[ImportReport, int]:
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
