"""Golden-set proposals: items someone may add to the golden set, where each came from, and what a
person decided about it.

They are stored as JSON in the state store and read back by another process (the CLI reviews what
a flow proposed), so they are pydantic models and string enums. The id is a hash of the content:
proposing the same item twice finds the first proposal (pending, accepted or rejected) instead of
making a second one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.feedback.scrub import PLACEHOLDERS

Scorer = Literal["exact", "contains", "word", "regex", "json", "judge"]
# The placeholders ingest's scrubber leaves, and any look-alike ("[ EMAIL ]", "[email]"): an item
# that holds one tests the product on a redacted question, and says something was redacted.
PLACEHOLDER = re.compile(r"\[\s*(?:" + "|".join(p.strip("[]") for p in PLACEHOLDERS.values()) + r")\s*\]", re.I)


class ProposalStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"


class SourceKind(StrEnum):
    """Where a proposal's expected answer came from."""

    correction = "correction"  # a user's or agent's correction of the output
    edit = "edit"  # what the user sent after editing the output
    expert_review = "expert_review"  # an expert's review: their correction, or the output they rated well
    synthetic = "synthetic"  # drafted by the drafting model


class ProposalSource(BaseModel):
    """Provenance: the consented events, the cluster and the model a proposal came from."""

    model_config = ConfigDict(extra="forbid")

    kind: SourceKind
    event_ids: list[str] = Field(default_factory=list, description="The consented feedback events it was taken from.")
    cluster_id: str | None = Field(None, description="The open failure cluster it covers.")
    model: str | None = Field(None, description="The drafting model, for synthetic items.")


class GoldenProposal(BaseModel):
    """One proposed golden item (SPEC: `{"proposal_id", "input", "expected", "category", "scorer", "source"}`)."""

    model_config = ConfigDict(extra="forbid")

    proposal_id: str
    input: str = Field(min_length=1)
    expected: str = Field(min_length=1)
    category: str = Field(min_length=1)
    scorer: Scorer
    source: ProposalSource
    status: ProposalStatus = ProposalStatus.pending
    created_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = Field(None, description="Why it was rejected.")
    golden_version: str | None = Field(None, description="The golden version its acceptance made.")

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def normalise(text: str) -> str:
    """Case and whitespace do not make two inputs different."""
    return " ".join(text.lower().split())


def proposal_id(input_text: str, expected: str) -> str:
    """``gp-`` and a hash of the normalised input and expected answer: stable across runs."""
    digest = hashlib.sha256(f"{normalise(input_text)}\x1f{normalise(expected)}".encode()).hexdigest()
    return f"gp-{digest[:12]}"


def holds_placeholder(*texts: str | None) -> bool:
    return any(t and PLACEHOLDER.search(t) for t in texts)
