"""The typed records that pass from one stage of the loop to the next (SPEC.md names them)."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, ClassVar, Literal

from flywheel_client.models import Arm, FeedbackResult, IndexedError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from flywheel.candidates import Decision
from flywheel.identifiers import DOCUMENT_ID, DOCUMENT_ID_RULE, identifier_problem


class Signal(str, Enum):
    thumbs_up = "thumbs_up"
    thumbs_down = "thumbs_down"
    rating = "rating"
    correction = "correction"
    edit = "edit"
    accept = "accept"
    dismiss = "dismiss"
    copy = "copy"
    outcome = "outcome"
    expert_review = "expert_review"


class Reason(str, Enum):
    wrong = "wrong"
    outdated = "outdated"
    unsafe = "unsafe"
    off_topic = "off_topic"
    format = "format"  # type: ignore[assignment]  # the reason's wire name; shadows str.format on the member only
    tone = "tone"
    missing_context = "missing_context"
    not_relevant = "not_relevant"
    already_done = "already_done"
    other = "other"


CATEGORIES: tuple[str, ...] = (
    "factual",
    "outdated_knowledge",
    "format",
    "tone",
    "off_topic",
    "missing_context",
    "unsafe",
    "other",
)
Category = Literal["factual", "outdated_knowledge", "format", "tone", "off_topic", "missing_context", "unsafe", "other"]
Route = Literal["prompt", "rag", "finetune"]


# A JSON number, never a string or a boolean, and finite: Python's JSON parser reads NaN and Infinity.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _non_finite(value: Any, path: str = "") -> str | None:
    """Where inside JSON-like data a NaN or an infinity sits (its dotted path), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if (where := _non_finite(item, f"{path}.{key}" if path else str(key))) is not None:
            return where
    return None


NUL = "\x00"
NUL_RULE = "contains a NUL character (U+0000), which no text field may hold"
TS_RANGE_RULE = "out of range: in UTC it falls outside the years 1 to 9999"


def _holds_nul(value: Any) -> bool:
    """Whether a NUL sits in any string inside JSON-like data, dictionary keys included."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(map(_holds_nul, value))


def _bad_key(value: Any, path: str = "metadata") -> str | None:
    """Why a key inside metadata (at any depth) is not an identifier, naming where by position, not by key."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for n, (key, item) in enumerate(items):
        if isinstance(value, dict) and (problem := identifier_problem(str(key))) is not None:
            return f"key {n + 1} of {path}: {problem}"
        if (problem := _bad_key(item, f"{path}.{key}")) is not None:
            return problem
    return None


class FeedbackEvent(BaseModel):
    """One line of a feedback JSONL file, exactly as SPEC.md defines it.

    Strict where a lax reading would change the meaning: ``consent`` is a JSON boolean (``"yes"`` or
    ``1`` is not consent), ``ts`` an ISO 8601 string with a timezone (an epoch number is ambiguous in
    its unit), ``value`` and ``confidence`` finite JSON numbers. Versions may be numbers or strings
    (teams log both) and are kept as strings. ``event_id``, versions, ``model``, ``context_ids`` items
    and ``metadata`` keys are stored unscrubbed, so they follow the grammar of :mod:`flywheel.identifiers`.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    event_id: str = Field(min_length=1, max_length=256)
    ts: AwareDatetime
    signal: Signal
    query: str
    output: str
    user_id: str | None = None
    session_id: str | None = None
    consent: StrictBool = False
    prompt_version: str | None = None
    model: str | None = None
    index_version: str | None = None
    arm: Arm | None = Field(
        None, description="Which variant served the output, as `GET /v1/champion` told the product."
    )
    confidence: Number | None = Field(None, ge=0.0, le=1.0)
    reason: Reason | None = None
    comment: str | None = None
    correction: str | None = None
    final_text: str | None = None
    value: Number | None = None
    context_ids: list[str] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_is_text(cls, v: Any) -> Any:
        if isinstance(v, str | datetime):
            return v
        raise ValueError("must be an ISO 8601 string with a timezone (e.g. 2026-11-10T10:00:00Z), not a number")

    @field_validator("ts")
    @classmethod
    def _ts_in_utc(cls, v: datetime) -> datetime:
        # Stored and compared in UTC: a time whose UTC reading leaves years 1..9999 cannot be kept.
        try:
            return v.astimezone(UTC)
        except OverflowError:
            raise ValueError(TS_RANGE_RULE) from None

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, v: Any) -> Any:
        # One rule for every text, keys and nested values too, so both stores take the same events.
        if _holds_nul(v):
            raise ValueError(NUL_RULE)
        return v

    @field_validator("prompt_version", "index_version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        # Teams log versions as numbers as often as strings; keep both (a finite number only).
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return str(v)
        return v

    @field_validator("event_id", "prompt_version", "index_version", "model")
    @classmethod
    def _is_identifier(cls, v: str | None) -> str | None:
        # Stored unscrubbed (keys, versions, names the loop groups by): so ids only, never text or PII.
        if v is not None and (problem := identifier_problem(v)) is not None:
            raise ValueError(problem)
        return v

    @field_validator("context_ids")
    @classmethod
    def _are_document_ids(cls, v: list[str] | None) -> list[str] | None:
        for i, item in enumerate(v or ()):
            if (problem := identifier_problem(item, DOCUMENT_ID, DOCUMENT_ID_RULE)) is not None:
                raise ValueError(f"item {i}: {problem}")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_is_finite(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if (problem := _bad_key(v)) is not None:  # first: the path below names keys
            raise ValueError(problem)
        if (where := _non_finite(v)) is not None:
            raise ValueError(f"{where or 'a value'} is not a finite number")
        return v

    @model_validator(mode="after")
    def _signal_needs_its_fields(self) -> FeedbackEvent:
        s, v = self.signal, self.value
        if s is Signal.rating and (v is None or not 1 <= v <= 5):
            raise ValueError("signal 'rating' needs 'value' between 1 and 5")
        if s is Signal.outcome and v not in (0, 1):
            raise ValueError("signal 'outcome' needs 'value' 1 (success) or 0 (failure)")
        if s is Signal.expert_review and (v is None or not 0 <= v <= 1):
            raise ValueError("signal 'expert_review' needs 'value' between 0 and 1")
        if s is Signal.correction and not (self.correction or "").strip():
            raise ValueError("signal 'correction' needs a non-empty 'correction'")
        if s is Signal.edit and self.final_text is None:
            raise ValueError("signal 'edit' needs 'final_text'")
        return self


@dataclass(slots=True)
class StoredEvent:
    """A feedback event as the store keeps it: scrubbed, normalised to polarity and strength.

    A slotted dataclass, not a pydantic model: events were validated on the way in, and ingest
    and triage handle hundreds of thousands of them. ``signal`` and ``reason`` hold the enum values.
    """

    event_id: str
    ts: datetime
    signal: str
    polarity: int  # -1 negative, 0 neutral, +1 positive
    strength: float  # 0..1
    query: str
    output: str
    user_id: str | None = None
    session_id: str | None = None
    consent: bool = False
    prompt_version: str | None = None
    model: str | None = None
    index_version: str | None = None
    arm: str | None = None  # "production" or "canary"
    confidence: float | None = None
    reason: str | None = None
    comment: str | None = None
    correction: str | None = None
    final_text: str | None = None
    value: float | None = None
    context_ids: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    pii_scrubbed: list[str] = field(default_factory=list)  # kinds of PII that were removed

    def user_key(self) -> str:
        """Who gave the feedback, for per-user caps: the user, else the session, else the event itself."""
        return self.user_id or (f"session:{self.session_id}" if self.session_id else f"event:{self.event_id}")

    def __reduce__(self) -> tuple[type[StoredEvent], tuple[Any, ...]]:
        """Pickled as its field values in order (the checking processes of a long ingest send events
        back): half the time of the dataclass's own per-field state, each way."""
        return StoredEvent, _STORED_FIELDS(self)


_STORED_FIELDS = operator.attrgetter(*(f.name for f in fields(StoredEvent)))


class IngestError(BaseModel):
    file: str
    line: int
    error: str


class IngestReport(BaseModel):
    """What one ingest did; every count is of this process's own work, never read back from the store."""

    max_errors: ClassVar[int] = 1000  # a report stays readable when a whole file is bad

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[IngestError] = Field(default_factory=list, description=f"The first {max_errors} rejections.")
    errors_total: int = Field(0, description="Rejections in all, listed or not.")
    errors_truncated: bool = Field(False, description="True when `errors` stopped before `errors_total`.")
    quarantine: list[str] = Field(default_factory=list, description="Files the rejected lines were written to.")
    scrubbed: int = Field(0, description="Accepted (newly stored) events that had PII removed.")
    negative: int = Field(0, description="Accepted (newly stored) events that are negative feedback.")
    prefect_events: int = Field(0, description="`flywheel.feedback.negative` events sent to Prefect.")

    def reject(self, file: str, line: int, error: str) -> None:
        """Count one rejected line; list it while the list is short."""
        self.rejected += 1
        self.errors_total += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(IngestError(file=file, line=line, error=error))
        else:
            self.errors_truncated = True

    def stored(self, offered: int, new: list[StoredEvent]) -> None:
        """Count one committed batch: ``new`` are the events it stored, the rest were duplicates."""
        _count_stored(self, offered, new)

    def public(self) -> dict[str, Any]:
        """The SPEC document (with the extra fields SPEC allows to grow)."""
        return self.model_dump()


class BatchReport(FeedbackResult):
    """What one request's events did (``POST /v1/feedback``), counted as they are stored: the wire
    fields are the client's ``FeedbackResult`` (one definition), the counting is the server's."""

    def reject(self, index: int, error: str) -> None:
        """Count one rejected item of the request."""
        self.rejected += 1
        self.errors.append(IndexedError(index=index, error=error))

    def stored(self, offered: int, new: list[StoredEvent]) -> None:
        """Count the request's committed events: ``new`` were stored, the rest were duplicates."""
        _count_stored(self, offered, new)


def _count_stored(report: IngestReport | BatchReport, offered: int, new: list[StoredEvent]) -> None:
    """One rule for both reports: of ``offered`` events, ``new`` were stored and the rest were duplicates."""
    report.accepted += len(new)
    report.duplicates += offered - len(new)
    report.scrubbed += sum(1 for e in new if e.pii_scrubbed)
    report.negative += sum(1 for e in new if e.polarity < 0)


class ClusterDiagnosis(BaseModel):
    """What the drafting model made of a cluster triage left in ``other`` (feedback without a reason):
    a root cause and a category, or what was missing for one. Kept on the cluster, so the cycle's
    ``clusters``, ``outcomes`` and report say how its category was found."""

    diagnosed: bool = Field(description="True when the model named a category; the cluster took it and its route.")
    category: Category | None = Field(None, description="The category named (never `other`), when diagnosed.")
    root_cause: str = Field("", description="The model's root cause in one or two sentences, when it gave one.")
    model: str | None = Field(None, description="The model asked (the drafting model), when one was asked.")
    why_not: str | None = Field(
        None,
        description="When not diagnosed: what was missing, e.g. 'no consented "
        "examples: ...', 'no text to read: ...', 'the diagnosis could not name a category: ...'.",
    )
    examples: int = Field(0, description="Consented, scrubbed examples the model read.")
    attempts: int = Field(
        0, description="Replies asked for (an unusable reply is asked again, a bounded number of times)."
    )
    problems: list[str] = Field(default_factory=list, description="Why replies could not be used.")


class FailureCluster(BaseModel):
    """One failure mode: negative events of one category whose queries mean the same thing."""

    cluster_id: str
    category: Category
    route: Route
    size: int
    users: int
    priority: float
    event_ids: list[str]
    summary: str
    consented: int = Field(0, description="Events in the cluster whose text may be used.")
    usable_examples: int = Field(0, description="Consented events with a correction or edit (fine-tuning material).")
    finetune_gap: int = Field(0, description="Usable examples still missing before fine-tuning may be considered.")
    prompt_failed: bool = Field(False, description="Prompt revisions already failed on it (a persistent cluster).")
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    reasons: dict[str, int] = Field(default_factory=dict)
    example_queries: list[str] = Field(default_factory=list, description="Consented, scrubbed queries only.")
    diagnosis: ClusterDiagnosis | None = Field(
        None,
        description="Set when triage left the cluster in `other` and the cycle asked the drafting model for a "
        "root cause; the category and route above are the diagnosed ones when it named one.",
    )


class ClusterStatus(StrEnum):
    skipped = "skipped"  # no improver worked on it this cycle (``why`` says what stopped it)
    no_candidate = "no_candidate"  # worked on, nothing good enough came out
    candidate = "candidate"  # at least one candidate covers it (``decision`` says what became of it)


class ClusterOutcome(BaseModel):
    """What one cycle did with one failure cluster, and why (loop/outcomes.py builds it)."""

    cluster_id: str
    category: str
    route: str
    size: int
    users: int
    consented: int
    status: ClusterStatus
    why: str = Field(description="One line: what stopped it, what the improver found, or the gate's reason.")
    drafts: int | None = Field(None, description="Prompt drafts made (prompt route).")
    kept: int | None = Field(None, description="Drafts that screened at least as well as the champion.")
    champion_resolved: float | None = Field(None, description="Share of its complaints the champion resolved.")
    best_resolved: float | None = Field(None, description="Share the best draft resolved.")
    candidates: list[str] = Field(default_factory=list)
    decision: Decision | None = Field(None, description="The best decision among its candidates.")
    golden_items: int | None = Field(None, description="Golden items of its category in the cycle's golden set.")
    note: str | None = Field(
        None,
        description="A warning about the evidence, e.g. a candidate for it that no "
        "golden item can test (its category has none).",
    )
    diagnosis: ClusterDiagnosis | None = Field(
        None, description="How a cluster without reasons got its category (or why it stayed `other`)."
    )
