"""One MLflow trace and its assessments -> feedback events in SPEC's format (README, "Importing from MLflow").

Only the mapping lives here; the events it makes are JSON values that go through the one ingest
path (validation, consent, scrubbing, quarantine, duplicates) like a file's lines, so a malformed
assessment is rejected there with the field and the rule, never here by a rule of its own.

- a person's feedback (source ``HUMAN``) is a signal: a boolean a thumb, a number a rating (or the
  value of the signal its name is mapped to), a signal's name that signal; its rationale the comment;
  ``metadata.reason`` the reason when it is one of SPEC's.
- an expectation is a ``correction`` (``accept`` when the output already says exactly that).
- the trace gives the rest: question and answer (root span), ``context_ids`` (retriever spans'
  documents), ``model`` (the LLM span's ``mlflow.llm.model``), ``prompt_version`` (the linked prompt),
  user and session (MLflow's ``mlflow.trace.user``/``session``) and consent (a configured tag).
Feedback from a judge or from code, superseded assessments, and Flywheel's own evaluation traces are
not a user's feedback: they are skipped, with why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from flywheel.config_sections import MlflowImportSettings
from flywheel.feedback.score_vocabulary import INPUT_KEYS, OUTPUT_KEYS, REASONS, SIGNALS, number_signal, text_of

# event_id = "mlflow:<trace id>/<assessment id>": the assessment id is the idempotency key, and the trace
# id rides along in the one field that is kept as it is (a metadata value is scrubbed text, and a hex id
# reads as a secret to the scrubber).
EVENT_PREFIX = "mlflow:"
GOLDEN_TAG = "flywheel.golden_id"  # the tag of Flywheel's own golden-answer traces (evals/traces.py)
_YES = {"true", "yes", "1"}
_THUMBS = {
    "yes": "thumbs_up",
    "pass": "thumbs_up",
    "true": "thumbs_up",
    "good": "thumbs_up",
    "no": "thumbs_down",
    "fail": "thumbs_down",
    "false": "thumbs_down",
    "bad": "thumbs_down",
}


@dataclass(frozen=True)
class Mapped:
    """One assessment: its id and the event it became, or why it was skipped."""

    assessment_id: str | None
    event: dict[str, Any] | None = None
    skipped: str | None = None


def trace_events(trace: Any, settings: MlflowImportSettings, prompt_name: str) -> Iterator[Mapped]:
    """Every assessment of ``trace`` as an event (a JSON value for the ingest) or a reason to skip it."""
    from mlflow.entities import Expectation, Feedback

    info = trace.info
    assessments = info.assessments or []
    if GOLDEN_TAG in (info.tags or {}):
        for a in assessments:
            yield Mapped(a.assessment_id, skipped="flywheel's own evaluation trace")
        return
    if not assessments:
        return
    base = _trace_fields(trace, settings, prompt_name)
    for a in assessments:
        if not a.valid:
            yield Mapped(a.assessment_id, skipped="superseded by a newer assessment")
        elif isinstance(a, Expectation):
            yield Mapped(a.assessment_id, _event(a, base, _expectation_fields(a.value, base.output)))
        elif isinstance(a, Feedback) and _source_type(a) != "HUMAN":
            yield Mapped(a.assessment_id, skipped=f"{_source_type(a).lower() or 'unknown'} feedback, not a person's")
        elif isinstance(a, Feedback):
            yield Mapped(a.assessment_id, _event(a, base, _feedback_fields(a, settings)))
        else:
            yield Mapped(a.assessment_id, skipped="not feedback or an expectation")


def _source_type(a: Any) -> str:
    return str(getattr(a.source, "source_type", "") or "") if a.source else ""


def _event(a: Any, base: TraceFields, fields: dict[str, Any]) -> dict[str, Any]:
    """The event of one assessment: the trace's fields, the assessment's own, and where it came from."""
    event = base.event_fields()
    event |= {"event_id": f"{EVENT_PREFIX}{base.trace_id}/{a.assessment_id}", "ts": _iso(a.create_time_ms)}
    if not event.get("user_id") and a.source is not None and a.source.source_id and _source_type(a) == "HUMAN":
        event["user_id"] = a.source.source_id  # who gave the feedback, when the trace names no user
    meta = {"mlflow_assessment": a.name, "mlflow_source_type": _source_type(a)}
    reason = (a.metadata or {}).get("reason")
    if isinstance(reason, str) and reason in REASONS:
        fields["reason"] = reason
    elif reason is not None:
        meta["mlflow_reason"] = reason  # a team's own word: kept (scrubbed), not mistaken for SPEC's
    return event | fields | {"metadata": meta}


def _feedback_fields(a: Any, settings: MlflowImportSettings) -> dict[str, Any]:
    """Signal, value and comment of a person's feedback; a value that fits no signal is passed on as
    it is, so the ingest rejects it with its rule and the quarantine keeps it."""
    value = a.value
    fields: dict[str, Any] = {}
    if isinstance(value, bool):
        fields["signal"] = "thumbs_up" if value else "thumbs_down"
    elif isinstance(value, int | float):
        fields["signal"] = _numeric_signal(a.name, value, settings)
        fields["value"] = value
    elif isinstance(value, str) and value.strip().lower() in SIGNALS:
        fields["signal"] = value.strip().lower()
    elif isinstance(value, str) and value.strip().lower() in _THUMBS:
        fields["signal"] = _THUMBS[value.strip().lower()]
    else:  # None (an error was logged instead), a label of the team's own, a list or an object
        fields["signal"] = value if isinstance(value, str) else None
    if a.rationale:
        fields["comment"] = a.rationale
    return fields


def _numeric_signal(name: str, value: float, settings: MlflowImportSettings) -> str:
    """The configured signal for this assessment name; else a whole number is a rating (1..5) and a
    fraction between 0 and 1 an expert review."""
    if name in settings.numeric_signals:
        return settings.numeric_signals[name]
    return number_signal(value)


def _expectation_fields(value: Any, output: str) -> dict[str, Any]:
    """An expected answer is a correction; one the output already gives (same text) is an accept."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    same = text.strip().casefold() == (output or "").strip().casefold()
    return {"signal": "accept" if same else "correction", "correction": text}


@dataclass(frozen=True)
class TraceFields:
    """What every event of one trace shares."""

    trace_id: str
    query: str
    output: str
    consent: bool
    user_id: str | None = None
    session_id: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    index_version: str | None = None
    arm: str | None = None
    context_ids: list[str] | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields of SPEC's event format that are set (the trace id goes into the event id)."""
        return {k: v for k, v in asdict(self).items() if v is not None and k != "trace_id"}


def _trace_fields(trace: Any, settings: MlflowImportSettings, prompt_name: str) -> TraceFields:
    info = trace.info
    tags, meta = info.tags or {}, info.trace_metadata or {}
    spans = list(trace.data.spans) if trace.data else []
    root = next((s for s in spans if s.parent_id is None), None)
    return TraceFields(
        trace_id=info.trace_id,
        query=text_of(root.inputs, INPUT_KEYS) if root else (info.request_preview or ""),
        output=text_of(root.outputs, OUTPUT_KEYS) if root else (info.response_preview or ""),
        consent=_consented(tags.get(settings.consent_key, meta.get(settings.consent_key))),
        user_id=meta.get("mlflow.trace.user") or tags.get("user_id"),
        session_id=meta.get("mlflow.trace.session") or tags.get("session_id"),
        prompt_version=_prompt_version(tags, meta, prompt_name),
        model=_model(spans) or tags.get("model") or meta.get("model"),
        index_version=tags.get("index_version") or meta.get("index_version"),
        arm=tags.get("arm") or meta.get("arm"),
        context_ids=_context_ids(spans) or None,
    )


def _consented(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in _YES


def _prompt_version(tags: dict[str, str], meta: dict[str, str], prompt_name: str) -> str | None:
    """The version of the linked prompt named ``prompt_name`` (else of the first linked prompt)."""
    try:
        linked = json.loads(tags.get("mlflow.linkedPrompts") or "[]")
    except ValueError:
        linked = []
    linked = (
        [p for p in linked if isinstance(p, dict) and p.get("version") is not None] if isinstance(linked, list) else []
    )
    chosen = next((p for p in linked if p.get("name") == prompt_name), linked[0] if linked else None)
    if chosen is not None:
        return str(chosen["version"])
    return tags.get("prompt_version") or meta.get("prompt_version")


def _model(spans: list[Any]) -> str | None:
    """The model of the first LLM span that names one (MLflow's autologging sets ``mlflow.llm.model``)."""
    for span in spans:
        model = span.get_attribute("mlflow.llm.model")
        if isinstance(model, str) and model:
            return model
    return None


def _context_ids(spans: list[Any]) -> list[str]:
    """The documents retriever spans returned: a document's id, else its ``doc_uri``, in order, once each."""
    ids: list[str] = []
    for span in spans:
        if span.span_type != "RETRIEVER" or not isinstance(span.outputs, list):
            continue
        for doc in span.outputs:
            if not isinstance(doc, dict):
                continue
            found_meta = doc.get("metadata")
            meta: dict[str, Any] = found_meta if isinstance(found_meta, dict) else {}
            found = doc.get("id") or meta.get("doc_uri") or meta.get("doc_id")
            if isinstance(found, str) and found and found not in ids:
                ids.append(found)
    return ids


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
