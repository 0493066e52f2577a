"""OpenTelemetry GenAI spans -> feedback events in SPEC's format (README, "Importing OpenTelemetry GenAI spans").

One ``ExportTraceServiceRequest`` is read whole (a protobuf message by :func:`proto_spans`, OTLP JSON by
:mod:`flywheel.feedback.otlp_json`, into the same :class:`Span`), its spans grouped by trace. A span is not feedback
by itself: feedback is a ``gen_ai.evaluation.result`` span event (``gen_ai.evaluation.name``, ``.score.value``,
``.score.label``, ``.explanation``) or an OpenInference annotation (``annotations.<i>.annotation.*``,
``evaluations.<i>.evaluation.*``); each becomes one event carrying what its span and trace say:

- question and answer: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (the last user message,
  the answer's text parts), else the older ``gen_ai.prompt`` / ``gen_ai.completion`` attributes (a JSON
  string or OpenLLMetry's ``gen_ai.prompt.<i>.content``) or span events, else OpenInference's
  ``llm.input_messages`` / ``input.value``; from the evaluated span, else the trace's spans in the request.
- ``model`` (``gen_ai.response.model``, else ``gen_ai.request.model``), ``context_ids`` (the documents of
  the trace's retrieval spans), user and session (``user.id``, ``session.id`` / ``gen_ai.conversation.id``),
  consent (a configured attribute; absent means false).

Like the MLflow mapping, only the mapping lives here: the events go through the one ingest path, so a
value that fits no signal is rejected (and quarantined) there with the field and the rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.config_sections import OtlpImportSettings
from flywheel.feedback.score_vocabulary import (
    DOWN,
    REASONS,
    SIGNALS,
    UP,
    number_signal,
    thumb,
)
from flywheel.identifiers import identifier_problem

# event_id = "otlp:<trace id>/<span id>/<evaluation name>[~n]": the ids of the span evaluated (hex, as
# OTLP JSON writes them) and the evaluation's name (or the annotation's own identifier) are the key, so
# the same spans sent or imported again are duplicates; the n-th result of one name on one span gets ~n.
EVENT_PREFIX = "otlp:"
EVALUATION_EVENT = "gen_ai.evaluation.result"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][\w.:@+=-]{0,99}", re.ASCII)
_ANNOTATION = re.compile(r"(?:trace\.)?(annotations|evaluations)\.(\d+)\.(annotation|evaluation)\.(\w+)")
_DOCUMENT_ID = re.compile(r"retrieval\.documents\.(\d+)\.document\.(id|metadata)")
_LEGACY = re.compile(r"gen_ai\.(prompt|completion)\.(\d+)\.(role|content)")
_OI_MESSAGE = re.compile(r"llm\.(input|output)_messages\.(\d+)\.message\.(role|content)")
_YES = {"true", "yes", "1"}


@dataclass(frozen=True)
class Span:
    """The parts of one OTLP span the mapping reads, with ids in hex."""

    trace_id: str
    span_id: str
    parent_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    resource: dict[str, Any]


@dataclass(frozen=True)
class Mapped:
    """One evaluation or annotation: its span, what it is called, and the event it became or why not."""

    trace_id: str
    span_id: str
    item: str
    event: dict[str, Any] | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Result:
    """An evaluation result or an annotation, as both conventions share it."""

    name: str
    time_ns: int
    score: Any = None
    label: Any = None
    explanation: Any = None
    response_id: Any = None
    annotator_kind: str | None = None
    identifier: str | None = None


def span_event_id(trace_id: str, item: str) -> str:
    """``otlp:<trace id>/<span id>/<name>``, the event id of one evaluation of one span; the same span
    always gives the same id (a re-sent export stores nothing new).

    The ingest refuses an id holding personal data, and about one random hex id in 9,000 reads as a
    card number (16 decimal digits passing Luhn) or an IBAN: such an id becomes ``otlp:h<sha-256 of
    it>``, as stable as the plain one, so no exporter's span is quarantined for its random id."""
    event_id = f"{EVENT_PREFIX}{trace_id}/{item}"
    hashed = event_id
    while identifier_problem(hashed) is not None:
        hashed = f"{EVENT_PREFIX}h{hashlib.sha256(hashed.encode()).hexdigest()[:40]}"
    return hashed


class OtlpParseError(ValueError):
    """A body or line that is not an OTLP trace export; the message names the rule, never a value."""


def proto_spans(request: Any) -> list[Span]:
    """Every span of an ``ExportTraceServiceRequest`` protobuf message, in the order written."""
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    Span(
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex() or None,
                        s.start_time_unix_nano,
                        s.end_time_unix_nano,
                        attributes(s.attributes),
                        [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in s.events],
                        resource,
                    )
                )
    return spans


def by_trace(spans: Sequence[Span]) -> list[list[Span]]:
    """The spans grouped by trace, in the order traces first appear."""
    traces: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    return list(traces.values())


def attributes(key_values: Any) -> dict[str, Any]:
    """OTLP ``KeyValue``s as a plain dict (an array a list, a key-value list a dict)."""
    return {kv.key: value_of(kv.value) for kv in key_values}


def value_of(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def request_events(spans: Sequence[Span], settings: OtlpImportSettings) -> Iterator[Mapped]:
    """Every evaluation result and annotation of one request's spans, as an event or a reason to skip it. An
    evaluation carrying a ``gen_ai.response.id`` other than its span's is about the span of the request
    that gave that response (feedback recorded later, on a span of its own), when there is one."""
    traces = by_trace(spans)
    contexts = {spans[0].trace_id: _TraceContext(spans, settings) for spans in traces}
    by_response = {
        s.attributes["gen_ai.response.id"]: s
        for spans in traces
        for s in spans
        if isinstance(s.attributes.get("gen_ai.response.id"), str) and s.attributes["gen_ai.response.id"]
    }
    skip_kinds = {k.upper() for k in settings.skip_annotator_kinds}
    for spans in traces:
        for span in spans:
            seen: dict[str, int] = {}
            for result in _results(span):
                subject = span
                if result.response_id and result.response_id != span.attributes.get("gen_ai.response.id"):
                    subject = by_response.get(result.response_id, span)
                key = _key(result.identifier or result.name)
                seen[key] = seen.get(key, 0) + 1
                item = f"{subject.span_id}/{key if seen[key] == 1 else f'{key}~{seen[key]}'}"
                if result.annotator_kind and result.annotator_kind.upper() in skip_kinds:
                    yield Mapped(
                        subject.trace_id,
                        subject.span_id,
                        item,
                        skipped=f"{result.annotator_kind.lower()} annotation, not a person's",
                    )
                    continue
                fields = _signal_fields(result, settings)
                if fields is None:
                    yield Mapped(subject.trace_id, subject.span_id, item, skipped="ignored by imports.otlp.signals")
                    continue
                event = contexts[subject.trace_id].fields_for(subject).event_fields()
                event |= {
                    "event_id": span_event_id(subject.trace_id, item),
                    "ts": _iso(result.time_ns or span.end_ns),
                }
                meta = {"otlp_evaluation": result.name}
                if result.annotator_kind:
                    meta["otlp_annotator_kind"] = result.annotator_kind
                yield Mapped(subject.trace_id, subject.span_id, item, event | fields | {"metadata": meta})


def _key(name: str) -> str:
    """The name as it can sit in an event id, or a stable hash of it."""
    if _SAFE_NAME.fullmatch(name):
        return name
    return "h" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _results(span: Span) -> Iterator[Result]:
    """The ``gen_ai.evaluation.result`` events of the span, then its OpenInference annotations."""
    for name, time_ns, attrs in span.events:
        if name == EVALUATION_EVENT:
            yield Result(
                name=str(attrs.get("gen_ai.evaluation.name") or ""),
                time_ns=time_ns,
                score=attrs.get("gen_ai.evaluation.score.value"),
                label=attrs.get("gen_ai.evaluation.score.label"),
                explanation=attrs.get("gen_ai.evaluation.explanation"),
                response_id=attrs.get("gen_ai.response.id"),
            )
    annotations: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for key, value in span.attributes.items():
        if (m := _ANNOTATION.fullmatch(key)) is not None:
            annotations[(m.group(1), m.group(2))][m.group(4)] = value
    for _key, a in sorted(annotations.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))):
        yield Result(
            name=str(a.get("name") or ""),
            time_ns=span.end_ns,
            score=a.get("score"),
            label=a.get("label"),
            explanation=a.get("explanation"),
            annotator_kind=str(a["annotator_kind"]) if a.get("annotator_kind") else None,
            identifier=str(a["identifier"]) if a.get("identifier") else None,
        )


def _signal_fields(r: Result, settings: OtlpImportSettings) -> dict[str, Any] | None:
    """Signal, value, comment and reason of one result; None when the name is mapped to ``ignore``. A
    result that fits no signal keeps what it had (``signal`` its label or nothing), so the ingest
    rejects it with its rule and the quarantine keeps it."""
    mapped = settings.signals.get(r.name)
    if mapped == "ignore":
        return None
    label = r.label.strip().lower() if isinstance(r.label, str) else None
    score = r.score if isinstance(r.score, int | float) and not isinstance(r.score, bool) else None
    fields: dict[str, Any] = {}
    if mapped == "thumbs":
        fields["signal"] = thumb(label, score)
    elif mapped is not None:
        fields["signal"] = mapped
    elif label in SIGNALS:
        fields["signal"] = label
    elif label in UP or label in DOWN:
        fields["signal"] = "thumbs_up" if label in UP else "thumbs_down"
    elif label in REASONS:
        fields["signal"] = "thumbs_down"
    elif score is not None:
        fields["signal"] = number_signal(score)
        fields["value"] = score
    else:
        fields["signal"] = r.label if isinstance(r.label, str) else None
    if fields.get("signal") in ("rating", "outcome", "expert_review") and "value" not in fields and score is not None:
        fields["value"] = score
    if label in REASONS:
        fields["reason"] = label
    if isinstance(r.explanation, str) and r.explanation:
        fields["correction" if fields["signal"] == "correction" else "comment"] = r.explanation
    return fields


@dataclass(frozen=True)
class SpanFields:
    """What one event takes from its span and trace."""

    query: str | None
    output: str | None
    consent: bool
    user_id: str | None = None
    session_id: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    index_version: str | None = None
    arm: str | None = None
    context_ids: list[str] | None = None

    def event_fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _TraceContext:
    """The trace-wide fallbacks, computed once per trace: its spans in start order, their documents."""

    spans: list[Span]
    settings: OtlpImportSettings
    ordered: list[Span] = field(init=False)
    context_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ordered = sorted(self.spans, key=lambda s: (s.parent_id is not None, s.start_ns))
        self.context_ids = [d for s in sorted(self.spans, key=lambda s: s.start_ns) for d in _documents(s)]
        self.context_ids = list(dict.fromkeys(self.context_ids))

    def fields_for(self, span: Span) -> SpanFields:
        chain = [span, *(s for s in self.ordered if s is not span)]
        return SpanFields(
            query=_first(chain, _query),
            output=_first(chain, _output),
            consent=_consented(self._attr(chain, self.settings.consent_key)),
            user_id=_str(self._attr(chain, "user.id")),
            session_id=_str(self._attr(chain, "session.id") or self._attr(chain, "gen_ai.conversation.id")),
            model=_str(_first(chain, _model)),
            prompt_version=_str(
                self._attr(chain, "flywheel.prompt_version") or self._attr(chain, "llm.prompt_template.version")
            ),
            index_version=_str(self._attr(chain, "flywheel.index_version")),
            arm=_str(self._attr(chain, "flywheel.arm")),
            context_ids=self.context_ids or None,
        )

    @staticmethod
    def _attr(chain: list[Span], key: str) -> Any:
        """The attribute on the span, else on the trace's other spans (root first), else on the resource."""
        for s in chain:
            if s.attributes.get(key) not in (None, ""):
                return s.attributes[key]
        for s in chain:
            if s.resource.get(key) not in (None, ""):
                return s.resource[key]
        return None


def _first(chain: list[Span], read: Any) -> Any:
    for s in chain:
        if (found := read(s)) is not None:
            return found
    return None


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _consented(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in _YES)


def _model(span: Span) -> str | None:
    a = span.attributes
    found = a.get("gen_ai.response.model") or a.get("gen_ai.request.model") or a.get("llm.model_name")
    return found if isinstance(found, str) and found else None


def _query(span: Span) -> str | None:
    """The question the span answered: the last user message it was given."""
    a = span.attributes
    if (text := _message_text(_json(a.get("gen_ai.input.messages")), "user")) is not None:
        return text
    if (text := _message_text(_json(a.get("gen_ai.prompt")), "user")) is not None:
        return text
    if (text := _indexed(a, _LEGACY, "prompt", "user")) is not None:
        return text
    if (text := _indexed(a, _OI_MESSAGE, "input", "user")) is not None:
        return text
    for name, _, attrs in span.events:
        if name == "gen_ai.content.prompt" and (text := _message_text(_json(attrs.get("gen_ai.prompt")), "user")):
            return text
        if name == "gen_ai.user.message" and isinstance(attrs.get("content"), str):
            return str(attrs["content"])
    return _plain(a.get("input.value"))


def _output(span: Span) -> str | None:
    """The answer the span gave: its output messages' text."""
    a = span.attributes
    if (text := _message_text(_json(a.get("gen_ai.output.messages")), "assistant")) is not None:
        return text
    if (text := _message_text(_json(a.get("gen_ai.completion")), "assistant")) is not None:
        return text
    if (text := _indexed(a, _LEGACY, "completion", None)) is not None:
        return text
    if (text := _indexed(a, _OI_MESSAGE, "output", None)) is not None:
        return text
    for name, _, attrs in span.events:
        if name == "gen_ai.content.completion" and (
            text := _message_text(_json(attrs.get("gen_ai.completion")), "assistant")
        ):
            return text
        if name == "gen_ai.choice":
            message = _json(attrs.get("message"))
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return str(message["content"])
            if isinstance(attrs.get("message.content"), str):
                return str(attrs["message.content"])
    return _plain(a.get("output.value"))


def _json(value: Any) -> Any:
    """A structured attribute as it is; one recorded as a JSON string, decoded (else the string)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _message_text(messages: Any, role: str) -> str | None:
    """The text of the last message of ``role`` (else the last message): a plain string as it is, a
    message's ``content`` string, or its ``parts`` of type ``text`` joined (tool calls and media left)."""
    if isinstance(messages, str):
        return messages or None
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list):
        return None
    dicts = [m for m in messages if isinstance(m, dict)]
    if not dicts:
        return None
    chosen = [m for m in dicts if m.get("role") == role] or dicts
    message = chosen[-1]
    if isinstance(message.get("content"), str):
        return str(message["content"])
    parts = message.get("parts") if isinstance(message.get("parts"), list) else message.get("content")
    if isinstance(parts, list):
        texts = [
            p.get("content") or p.get("text") for p in parts if isinstance(p, dict) and p.get("type", "text") == "text"
        ]
        strings = [t for t in texts if isinstance(t, str)]
        return "\n".join(strings) if strings else None
    return None


def _indexed(attrs: dict[str, Any], pattern: re.Pattern[str], kind: str, role: str | None) -> str | None:
    """Flattened messages (``gen_ai.prompt.0.content``, ``llm.input_messages.0.message.content``)."""
    messages: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in attrs.items():
        if (m := pattern.fullmatch(key)) is not None and m.group(1) == kind:
            messages[int(m.group(2))][m.group(3)] = value
    if not messages:
        return None
    return _message_text([messages[i] for i in sorted(messages)], role or "assistant")


def _documents(span: Span) -> list[str]:
    """Document ids of a retrieval span: ``gen_ai.retrieval.documents`` or OpenInference's
    ``retrieval.documents.<i>.document.id``; a document id with a chunk number in its metadata
    (``chunk`` or ``chunk_index``) and no ``#`` becomes ``<id>#<n>``, the service's chunk id."""
    a = span.attributes
    docs: list[tuple[Any, Any]] = []
    found = _json(a.get("gen_ai.retrieval.documents"))
    if isinstance(found, list):
        docs += [(d.get("id"), d.get("metadata")) for d in found if isinstance(d, dict)]
    indexed: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in a.items():
        if (m := _DOCUMENT_ID.fullmatch(key)) is not None:
            indexed[int(m.group(1))][m.group(2)] = value
    docs += [(indexed[i].get("id"), indexed[i].get("metadata")) for i in sorted(indexed)]
    ids = []
    for doc_id, meta in docs:
        if not isinstance(doc_id, str | int) or doc_id == "":
            continue
        doc_id = str(doc_id)
        meta = _json(meta)
        chunk = meta.get("chunk", meta.get("chunk_index")) if isinstance(meta, dict) else None
        if "#" not in doc_id and isinstance(chunk, int) and not isinstance(chunk, bool):
            doc_id = f"{doc_id}#{chunk}"
        ids.append(doc_id)
    return ids


def _iso(ns: int) -> str | None:
    """Nanoseconds since the epoch as ISO 8601, to the microsecond (exactly: no float on the way)."""
    if not ns:
        return None
    return (datetime.fromtimestamp(ns // 10**9, UTC) + timedelta(microseconds=ns % 10**9 // 1000)).isoformat()
