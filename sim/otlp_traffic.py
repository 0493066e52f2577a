"""The simulator's traffic as OpenTelemetry GenAI spans: what a product instrumented with OpenTelemetry
would export for the same requests and feedback (``flywheel sim traffic --via otlp``, ``flywheel demo
--via otlp``), as OTLP JSON for ``POST /v1/traces``.

Each feedback event the traffic generator draws (SPEC's format) becomes one trace, read back by the
receiver (:mod:`flywheel.feedback.otlp_spans`) into the same stored event:

- a ``chat`` span (kind CLIENT) with ``gen_ai.input.messages`` (the user's question) and
  ``gen_ai.output.messages`` (the answer), ``gen_ai.request.model`` / ``gen_ai.response.model``,
  ``gen_ai.response.id``, ``user.id`` (``session.id``), the consent attribute the service reads
  (``[imports.otlp] consent_key``) and ``flywheel.prompt_version`` / ``index_version`` / ``arm``;
- a ``retrieval`` child span with ``gen_ai.retrieval.documents`` when the event has ``context_ids``;
- the feedback as a ``gen_ai.evaluation.result`` event on the chat span, at the event's time: name
  ``user_feedback``, ``score.label`` the reason of a thumbs-down that has one (the receiver reads a
  reason as a thumbs-down with that reason), else the signal's name; ``score.value`` the event's value;
  ``explanation`` its comment; ``gen_ai.response.id`` the span's.

Trace and span ids are derived from the event's id (SHA-256), so the same traffic (seed and clock)
gives the same spans, and the stored ``event_id`` is ``otlp:<trace id>/<span id>/user_feedback``
(:func:`stored_event_id`), but for the one random span id in about 9,000 that reads as a card number or
an IBAN, which the receiver stores under a hash of that id (``otlp_spans.span_event_id``).

What spans cannot carry is not sent: the event's ``metadata`` (the stored event's metadata is the
receiver's, ``{"otlp_evaluation": "user_feedback"}``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flywheel.feedback.otlp_spans import EVALUATION_EVENT, span_event_id

EVALUATION_NAME = "user_feedback"
SERVICE_NAME = "flywheel-sim-traffic"
SPAN_KIND_CLIENT = 3
ANSWER_NS = 800_000_000  # the simulated answer took 0.8 s: the chat span ends when the user is served
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def span_ids(event_id: str) -> tuple[str, str, str]:
    """Trace id, chat span id and retrieval span id (hex) of the event ``event_id``: a hash, so the same
    event gives the same spans."""
    digest = hashlib.sha256(f"flywheel-sim-traffic:{event_id}".encode()).hexdigest()
    return digest[:32], digest[32:48], digest[48:64]


def stored_event_id(event_id: str) -> str:
    """The ``event_id`` the service stores for the event ``event_id`` sent as spans."""
    trace_id, span_id, _ = span_ids(event_id)
    return span_event_id(trace_id, f"{span_id}/{EVALUATION_NAME}")


def export_request(events: Sequence[Mapping[str, Any]], *, consent_key: str) -> dict[str, Any]:
    """One ``ExportTraceServiceRequest`` (OTLP JSON, ids in hex) holding one trace per event."""
    spans = [span for event in events for span in _trace(event, consent_key)]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes({"service.name": SERVICE_NAME})},
                "scopeSpans": [{"scope": {"name": "flywheel.sim.traffic"}, "spans": spans}],
            }
        ]
    }


def _trace(event: Mapping[str, Any], consent_key: str) -> list[dict[str, Any]]:
    """The spans of one served request and its feedback."""
    trace_id, chat_id, retrieval_id = span_ids(event["event_id"])
    end = _unix_ns(event["ts"])
    start = end - ANSWER_NS
    response_id = f"chatcmpl-{chat_id}"
    model = event.get("model")
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.response.id": response_id,
        "gen_ai.input.messages": _messages("user", event["query"]),
        "gen_ai.output.messages": _messages("assistant", event["output"], finish_reason="stop"),
        "user.id": event.get("user_id"),
        "session.id": event.get("session_id"),
        consent_key: bool(event.get("consent", False)),
        "flywheel.prompt_version": event.get("prompt_version"),
        "flywheel.index_version": event.get("index_version"),
        "flywheel.arm": event.get("arm"),
    }
    spans = [
        _span(
            trace_id,
            chat_id,
            None,
            f"chat {model}" if model else "chat",
            start,
            end,
            chat,
            [_evaluation(event, response_id, end)],
        )
    ]
    if event.get("context_ids"):
        documents = json.dumps([{"id": doc_id} for doc_id in event["context_ids"]])
        spans.append(
            _span(
                trace_id,
                retrieval_id,
                chat_id,
                "retrieval",
                start,
                start + 1,
                {"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": documents},
                [],
            )
        )
    return spans


def _evaluation(event: Mapping[str, Any], response_id: str, time_ns: int) -> dict[str, Any]:
    """The user's feedback as a ``gen_ai.evaluation.result`` span event."""
    signal, reason = event["signal"], event.get("reason")
    attrs = {
        "gen_ai.evaluation.name": EVALUATION_NAME,
        "gen_ai.evaluation.score.label": reason if signal == "thumbs_down" and reason else signal,
        "gen_ai.evaluation.score.value": event.get("value"),
        "gen_ai.evaluation.explanation": event.get("comment"),
        "gen_ai.response.id": response_id,
    }
    return {"name": EVALUATION_EVENT, "timeUnixNano": str(time_ns), "attributes": _attributes(attrs)}


def _span(
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    name: str,
    start: int,
    end: int,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": SPAN_KIND_CLIENT,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": _attributes(attributes),
    }
    if parent_id is not None:
        span["parentSpanId"] = parent_id
    if events:
        span["events"] = events
    return span


def _messages(role: str, text: str, **extra: str) -> str:
    """GenAI messages (one message, one text part) as the JSON string instrumentations record."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}], **extra}], ensure_ascii=False)


def _attributes(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OTLP ``KeyValue``s; a value of None is left out, as an SDK leaves an unset attribute."""
    out = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            typed: dict[str, Any] = {"boolValue": value}
        elif isinstance(value, int):
            typed = {"intValue": str(value)}
        elif isinstance(value, float):
            typed = {"doubleValue": value}
        else:
            typed = {"stringValue": str(value)}
        out.append({"key": key, "value": typed})
    return out


def _unix_ns(ts: str) -> int:
    """An ISO 8601 time (with its zone) as nanoseconds since the epoch, exactly (no float)."""
    delta = datetime.fromisoformat(ts) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
