"""`flywheel golden propose`: new golden items from the feedback of open failure clusters and,
on request, from the drafting model for categories with too few items.

Every candidate passes the same gate before it is stored as a pending proposal: no PII placeholder
(and, for drafted text, nothing the scrubber would remove), not a near-duplicate of an existing
golden item, nor of another proposal (this run's or an earlier one's, whatever was decided about
it). A product with no golden file at all gets proposals too: that is how its first version starts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from flywheel.config import Settings
from flywheel.improvers.routing import fixed_clusters
from flywheel.loop.golden.from_feedback import finds_by_cluster, scorer_for, source_of
from flywheel.loop.golden.similar import InputIndex
from flywheel.loop.golden.versions import current_golden
from flywheel.loop.triage_step import triage_step
from flywheel.proposals import GoldenProposal, ProposalSource, SourceKind, proposal_id
from flywheel.runtime import runtime_for
from flywheel.schemas import FailureCluster


class Dropped(BaseModel):
    """What did not become a proposal, and why (counts only: dropped text is never printed)."""

    no_consent: int = Field(0, description="Events of open clusters without consent: counted, never read.")
    pii: int = Field(0, description="Candidates whose text held a PII placeholder (or PII, for drafted text).")
    duplicate_of_golden: int = Field(0, description="Near-duplicates of an existing golden item's input.")
    duplicate: int = Field(0, description="Near-duplicates of another proposal, this run's or an earlier one's.")
    per_cluster: int = Field(0, description="Beyond `golden_set.max_per_cluster`, or a second from one user.")
    invalid: int = Field(0, description="Drafted items the golden schema or their scorer cannot use.")


class ProposeReport(BaseModel):
    proposals: list[GoldenProposal] = Field(default_factory=list, description="The new pending proposals.")
    golden_version: str | None = Field(
        None, description="The golden version they were checked against (none: no file)."
    )
    golden_items: int = 0
    open_clusters: int = 0
    synthetic: dict[str, int] = Field(
        default_factory=dict, description="Items asked of the drafting model, by category."
    )
    dropped: Dropped = Field(default_factory=Dropped)
    notes: list[str] = Field(default_factory=list)

    def public(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude={"proposals"})
        return {"proposals": [p.public() for p in self.proposals], **doc}


def open_clusters(settings: Settings, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
    """Clusters still failing: none whose fix (of its route's kind) was promoted after its last
    negative event."""
    state = runtime_for(settings).state
    fixed = {kind: fixed_clusters(state, clusters, kind) for kind in {c.route for c in clusters}}
    return [c for c in clusters if c.cluster_id not in fixed[c.route]]


class _Gate:
    """The one check every candidate passes: not known, not like a golden item, not like a proposal."""

    def __init__(self, golden: InputIndex, proposed: InputIndex, known_ids: set[str], dropped: Dropped) -> None:
        self.golden, self.proposed, self.known_ids, self.dropped = golden, proposed, known_ids, dropped

    def admit(self, input_text: str, expected: str, vector: np.ndarray | None = None) -> str | None:
        """The new proposal's id, or None (and the reason counted)."""
        pid = proposal_id(input_text, expected)
        if pid in self.known_ids:
            self.dropped.duplicate += 1
            return None
        if self.golden.match(input_text, vector) is not None:
            self.dropped.duplicate_of_golden += 1
            return None
        if self.proposed.add_if_new(input_text, vector) is not None:
            self.dropped.duplicate += 1
            return None
        self.known_ids.add(pid)
        return pid


def propose(settings: Settings, synthetic: int = 0) -> ProposeReport:
    """Make, store and return new pending proposals (see the module's docstring)."""
    from flywheel.embeddings import open_embedder

    golden = current_golden(settings)
    report = ProposeReport(golden_version=golden.version if golden else None, golden_items=len(golden or ()))
    clusters = open_clusters(settings, triage_step(runtime_for(settings)))
    report.open_clusters = len(clusters)
    with runtime_for(settings).borrow_feedback() as store:
        events = {e.event_id: e for e in store.get({eid for c in clusters for eid in c.event_ids})}
        reviews = [e for e in store.events(polarity=1) if e.signal == "expert_review" and e.consent]
    with runtime_for(settings).borrow_state() as state:
        known = state.proposals()
    items = list(golden.items) if golden else []
    new: list[GoldenProposal] = []
    with open_embedder(settings) as embedder:
        t = settings.golden_set.near_duplicate_threshold
        golden_index, proposed = InputIndex(embedder, t), InputIndex(embedder, t)
        golden_index.extend([i.input for i in items])
        proposed.extend([p.input for p in known])
        gate = _Gate(golden_index, proposed, {p.proposal_id for p in known}, report.dropped)
        new += _from_feedback(settings, clusters, events, reviews, embedder, gate, report)
        if synthetic:
            have = Counter(i.category for i in items)
            have.update(p.category for p in known + new if p.status == "pending")
            for c in clusters:
                if c.category != "other":
                    have.setdefault(c.category, 0)
            new += _synthetic(settings, synthetic, have, clusters, items, known + new, gate, report)
    with runtime_for(settings).borrow_state() as state:
        report.proposals = state.add_proposals(new)
    return report


def _from_feedback(
    settings: Settings,
    clusters: Sequence[FailureCluster],
    events: dict[str, Any],
    reviews: Sequence[Any],
    embedder: Any,
    gate: _Gate,
    report: ProposeReport,
) -> list[GoldenProposal]:
    finds = finds_by_cluster(clusters, events, reviews, embedder, settings)
    inputs = list(dict.fromkeys(f.input for cf in finds for f in cf.found))
    vectors = dict(zip(inputs, embedder.embed(inputs), strict=True)) if inputs else {}
    cap = settings.golden_set.max_per_cluster
    out = []
    for cf in finds:
        report.dropped.no_consent += cf.no_consent
        report.dropped.pii += cf.pii
        users: set[str] = set()
        for f in cf.found:
            if len(users) >= cap or f.event.user_key() in users:
                report.dropped.per_cluster += 1
                continue
            pid = gate.admit(f.input, f.expected, vectors[f.input])
            if pid is None:
                continue
            users.add(f.event.user_key())
            out.append(
                GoldenProposal(
                    proposal_id=pid,
                    input=f.input,
                    expected=f.expected,
                    category=cf.cluster.category,
                    scorer=scorer_for(f.expected, settings),  # type: ignore[arg-type]
                    source=source_of(f, cf.cluster.cluster_id),
                )
            )
    return out


def _synthetic(
    settings: Settings,
    n: int,
    have: Counter[str],
    clusters: Sequence[FailureCluster],
    items: Sequence[Any],
    proposals: Sequence[GoldenProposal],
    gate: _Gate,
    report: ProposeReport,
) -> list[GoldenProposal]:
    from flywheel.llm import make_client
    from flywheel.loop.context import endpoint_errors
    from flywheel.loop.golden.synthetic import allocate, draft

    minimum = settings.golden_set.min_per_category
    report.synthetic = allocate(n, have, minimum)
    if not report.synthetic:
        report.notes.append(
            f"no synthetic items drafted: every category has at least {minimum} golden items or "
            "pending proposals (`golden_set.min_per_category`)"
            if have
            else "no synthetic items drafted: no category to draft for (no golden items, no open clusters)"
        )
        return []
    client = make_client(settings, purpose="`flywheel golden propose --synthetic`")
    out = []
    for category, wanted in report.synthetic.items():
        mine = [c for c in clusters if c.category == category]
        examples = [q for c in mine for q in c.example_queries]  # consented, scrubbed
        existing = [(i.input, i.expected) for i in items if i.category == category]
        existing += [(p.input, p.expected) for p in proposals if p.category == category]
        drafted = endpoint_errors(f"drafting golden items for {category}")(draft)(
            client, settings.draft_model, category, wanted, examples, existing, settings.golden_set.draft_batch
        )
        report.dropped.invalid += drafted.invalid
        report.dropped.pii += drafted.pii
        report.notes += [f"{category}: {note}" for note in drafted.notes]
        for item in drafted.items:
            if (pid := gate.admit(item.input, item.expected)) is None:
                continue
            out.append(
                GoldenProposal(
                    proposal_id=pid,
                    input=item.input,
                    expected=item.expected,
                    category=category,
                    scorer=item.scorer,
                    source=ProposalSource(
                        kind=SourceKind.synthetic,
                        model=settings.draft_model,
                        cluster_id=mine[0].cluster_id if mine else None,
                    ),
                )
            )
    return out
