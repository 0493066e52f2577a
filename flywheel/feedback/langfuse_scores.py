"""One Langfuse score and its trace -> a feedback event in SPEC's format (README, "Importing from Langfuse").

Only the mapping lives here, as for MLflow and OTLP: the event goes through the one ingest path, so a
score that fits no signal (a rating of 7, a label of the team's own) is rejected and quarantined there
with the field and the rule, never here by a rule of its own.

- ``BOOLEAN`` is a thumb (1 up, 0 down); ``NUMERIC`` a rating when whole, an expert review when a
  fraction between 0 and 1 (or the signal its name is mapped to); ``CATEGORICAL`` the signal or thumb
  its label names (a label that is one of SPEC's reasons is a thumbs down with that reason);
  ``CORRECTION`` (Langfuse's corrected output) a ``correction`` (``accept`` when it is the output as it was).
- the score's comment is the comment; ``metadata.reason`` the reason when it is one of SPEC's.
- the trace gives question and answer (``input``/``output``), user and session, the model (its first
  generation's), the prompt version (that generation's, else ``metadata.prompt_version``) and consent
  (a configured metadata key).
Scores from a judge (source ``EVAL``), ``TEXT`` notes with no mapped signal, scores on no trace and
names mapped to ``ignore`` are not a user's feedback: they are skipped, with why.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from flywheel.config_sections import LangfuseImportSettings
from flywheel.feedback.score_vocabulary import (
    DOWN,
    INPUT_KEYS,
    OUTPUT_KEYS,
    REASONS,
    SIGNALS,
    UP,
    number_signal,
    text_of,
    thumb,
)

# event_id = "langfuse:<score id>": the score id is the idempotency key (Langfuse upserts a score by its
# id, so a score edited later is the same event: a duplicate, not a second one).
EVENT_PREFIX = "langfuse:"
_SAFE_ID = re.compile(r"[A-Za-z0-9][\w.:@+=-]{0,199}", re.ASCII)
_YES = {"true", "yes", "1"}


@dataclass(frozen=True)
class Mapped:
    """One score: its id, its trace, and the event it became, or why it was skipped."""

    score_id: str | None
    trace_id: str | None
    event: Any = None
    skipped: str | None = None


def score_id(score: Any) -> str | None:
    found = score.get("id") if isinstance(score, dict) else None
    return found if isinstance(found, str) and found else None


def trace_id(score: Any) -> str | None:
    found = score.get("traceId") if isinstance(score, dict) else None
    return found if isinstance(found, str) and found else None


def skip_reason(score: Any, settings: LangfuseImportSettings) -> str | None:
    """Why ``score`` is not a person's feedback to import, before its trace is read; None if it is."""
    if not isinstance(score, dict):
        return None  # not an object: the ingest rejects it with its rule
    source = str(score.get("source") or "")
    if source.upper() in {s.upper() for s in settings.skip_sources}:
        return f"{source.lower()} score, not a person's"
    if trace_id(score) is None:
        return "not on a trace (a session's or a dataset run's score)"
    mapped = settings.signals.get(str(score.get("name") or ""))
    if mapped == "ignore":
        return "ignored by imports.langfuse.signals"
    if score.get("dataType") == "TEXT" and mapped is None:
        return "text score with no signal mapped"
    return None


def score_event(score: Any, trace: dict[str, Any] | None, settings: LangfuseImportSettings, prompt_name: str) -> Any:
    """The event of one score with its trace's fields; a score that is not an object is passed on as it is."""
    if not isinstance(score, dict):
        return score
    event: dict[str, Any] = _trace_fields(trace or {}, settings, prompt_name)
    sid = score_id(score)
    event["event_id"] = f"{EVENT_PREFIX}{_key(sid)}" if sid else None
    event["ts"] = score.get("timestamp")
    if not event.get("user_id") and isinstance(score.get("authorUserId"), str):
        event["user_id"] = score["authorUserId"]  # who gave the feedback, when the trace names no user
    fields = _signal_fields(score, event.get("output") or "", settings)
    meta = {
        "langfuse_score": score.get("name"),
        "langfuse_source": score.get("source"),
        "langfuse_data_type": score.get("dataType"),
    }
    reason = (score.get("metadata") or {}).get("reason") if isinstance(score.get("metadata"), dict) else None
    if isinstance(reason, str) and reason in REASONS:
        fields.setdefault("reason", reason)
    elif reason is not None:
        meta["langfuse_reason"] = reason  # a team's own word: kept (scrubbed), not mistaken for SPEC's
    return event | fields | {"metadata": {k: v for k, v in meta.items() if v is not None}}


def _key(sid: str) -> str:
    """The score id as it can sit in an event id, or a stable hash of it (Langfuse lets clients choose ids)."""
    if _SAFE_ID.fullmatch(sid):
        return sid
    return "h" + hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _signal_fields(score: dict[str, Any], output: str, settings: LangfuseImportSettings) -> dict[str, Any]:
    """Signal, value, correction, comment and reason of one score; one that fits no signal keeps what it
    had (``signal`` its label, or nothing) so that the ingest rejects it with its rule."""
    kind = score.get("dataType")
    value = score.get("value")
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    text = score.get("stringValue") if isinstance(score.get("stringValue"), str) else None
    label = text.strip().lower() if text is not None and kind != "CORRECTION" else None
    mapped = settings.signals.get(str(score.get("name") or ""))
    fields: dict[str, Any] = {}
    if kind == "CORRECTION" or mapped == "correction":
        corrected = text if text is not None else (None if value is None else str(value))
        same = corrected is not None and corrected.strip().casefold() == output.strip().casefold()
        fields = {"signal": "accept" if same else "correction", "correction": corrected}
    elif mapped == "thumbs" or (mapped is None and kind == "BOOLEAN"):
        fields["signal"] = thumb(label, number)
    elif mapped is not None:
        fields["signal"] = mapped
        if number is not None:
            fields["value"] = number
    elif label in SIGNALS:
        fields["signal"] = label
    elif label in UP or label in DOWN:
        fields["signal"] = "thumbs_up" if label in UP else "thumbs_down"
    elif label in REASONS:
        fields["signal"] = "thumbs_down"
    elif kind == "NUMERIC" and number is not None:
        fields["signal"] = number_signal(number)
        fields["value"] = number
    else:  # a label of the team's own, a numeric score without a number
        fields["signal"] = text
    if label in REASONS:
        fields["reason"] = label
    comment = score.get("comment")
    if isinstance(comment, str) and comment:
        fields["comment"] = comment
    return fields


def _trace_fields(trace: dict[str, Any], settings: LangfuseImportSettings, prompt_name: str) -> dict[str, Any]:
    """What an event takes from its trace (the fields that are set)."""
    found = trace.get("metadata")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    generation = _generation(trace, prompt_name)
    fields = {
        "query": text_of(trace.get("input"), INPUT_KEYS),
        "output": text_of(trace.get("output"), OUTPUT_KEYS),
        "consent": _consented(meta.get(settings.consent_key)),
        "user_id": trace.get("userId"),
        "session_id": trace.get("sessionId"),
        "model": generation.get("model") or meta.get("model"),
        "prompt_version": _str(generation.get("promptVersion")) or _str(meta.get("prompt_version")),
        "index_version": meta.get("index_version"),
        "arm": meta.get("arm"),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _generation(trace: dict[str, Any], prompt_name: str) -> dict[str, Any]:
    """The trace's generation that used ``prompt_name``, else its first generation (``{}`` if none: the
    single-trace endpoint lists observations, some deployments only their ids)."""
    found = [o for o in trace.get("observations") or [] if isinstance(o, dict) and o.get("type") == "GENERATION"]
    return next((o for o in found if o.get("promptName") == prompt_name), found[0] if found else {})


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _consented(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in _YES)
