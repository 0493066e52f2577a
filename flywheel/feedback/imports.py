"""What one ``flywheel import SOURCE`` did (SPEC "Importing feedback"): the ingest's tally for a
source that is not a file, with the source's own counts beside it (what it read, what it skipped).

Every count of an item that reached the ingest comes from the ingest path itself (``stored`` and
``reject``, as for a file); the importer only adds what never reached it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

from pydantic import BaseModel, Field, PrivateAttr

from flywheel.schemas import StoredEvent


class ImportRejection(BaseModel):
    """Why one item was rejected: its place in the import and what the source calls it."""

    index: int = Field(description="0-based place of the item in this import's stream.")
    item: str | None = Field(None, description="The source's own id of the item (e.g. an MLflow assessment id).")
    trace_id: str | None = Field(None, description="The trace it belongs to, when the source has traces.")
    error: str


class ImportReport(BaseModel):
    """``{"source", "read", "accepted", "duplicates", "rejected", "skipped_no_consent", "errors"}`` and
    the fields SPEC lets grow: what was skipped and why, where rejected items were kept."""

    max_errors: ClassVar[int] = 1000
    _remembered: ClassVar[int] = 20_000  # item ids kept for naming a rejection (a batch is at most 5,000)

    source: str
    read: int = Field(
        0,
        description="Items read from the source (for MLflow: assessments; for OTLP: evaluation "
        "results and annotations, and lines that are not OTLP; for Langfuse: scores).",
    )
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped_no_consent: int = Field(
        0, description="Accepted events without consent: stored for the statistics, their text never leaves the store."
    )
    errors: list[ImportRejection] = Field(default_factory=list, description=f"The first {max_errors} rejections.")
    errors_total: int = 0
    skipped: dict[str, int] = Field(default_factory=dict, description="Items read but not feedback to import, by why.")
    traces: int = Field(0, description="Traces read (for OTLP: a trace's spans in one request, counted per request).")
    spans: int = Field(0, description="Spans read, for `import otlp`.")
    scrubbed: int = 0
    negative: int = 0
    quarantine: list[str] = Field(default_factory=list, description="Files the rejected items were written to.")
    experiment: str | None = Field(None, description="The MLflow experiment read, for `import mlflow`.")
    file: str | None = Field(None, description="The file read, for `import otlp`.")
    host: str | None = Field(None, description="The Langfuse server read, for `import langfuse`.")
    since: str | None = Field(None, description="Only traces after this time were read (ISO 8601), if any.")
    high_water: str | None = Field(None, description="The newest trace read: where the next import starts.")
    prefect_events: int = 0

    _names: OrderedDict[int, tuple[str | None, str | None]] = PrivateAttr(default_factory=OrderedDict)

    def name(self, index: int, item: str | None, trace_id: str | None) -> None:
        """Remember what the item at ``index`` is called, so a rejection can name it (bounded memory)."""
        self._names[index] = (item, trace_id)
        if len(self._names) > self._remembered:
            self._names.popitem(last=False)

    def skip(self, why: str) -> None:
        """Count one item read and not offered to the ingest."""
        self.read += 1
        self.skipped[why] = self.skipped.get(why, 0) + 1

    # The ingest's Tally ------------------------------------------------------------------------------
    def reject(self, position: int, error: str) -> None:
        self.rejected += 1
        self.errors_total += 1
        if len(self.errors) < self.max_errors:
            item, trace_id = self._names.get(position, (None, None))
            self.errors.append(ImportRejection(index=position, item=item, trace_id=trace_id, error=error))

    def stored(self, offered: int, new: list[StoredEvent]) -> None:
        self.accepted += len(new)
        self.duplicates += offered - len(new)
        self.scrubbed += sum(1 for e in new if e.pii_scrubbed)
        self.negative += sum(1 for e in new if e.polarity < 0)
        self.skipped_no_consent += sum(1 for e in new if not e.consent)

    def public(self) -> dict[str, Any]:
        return self.model_dump()
