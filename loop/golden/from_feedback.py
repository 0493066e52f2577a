"""Golden items hidden in feedback: what the right answer was, said by someone who knew.

A user's or support agent's correction, a large edit the user sent instead of the output, an
expert's correction, and an output an expert rated well are each a reference answer for the query.
Only consented events count (the others are counted, never read), and only those of open failure
clusters: feedback on what is failing now is what the golden set lacks. An event whose query or
reference answer held PII (scrubbed at ingest, so a placeholder now stands in it) is skipped: an
item about "[EMAIL]" tests nothing real and says something was redacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flywheel.config import Settings
from flywheel.embeddings import Embedder
from flywheel.proposals import ProposalSource, SourceKind, holds_placeholder
from flywheel.schemas import FailureCluster, StoredEvent

# Who is trusted most when several events of a cluster could become items.
_PREFERENCE = {SourceKind.expert_review: 0, SourceKind.correction: 1, SourceKind.edit: 2}


@dataclass(frozen=True)
class Found:
    """One event that carries a reference answer for its query."""

    input: str
    expected: str
    kind: SourceKind
    event: StoredEvent


def reference_answer(e: StoredEvent, positive_expert: float) -> Found | None:
    """The reference answer an event carries, if any (consent is checked by the caller)."""
    correction = (e.correction or "").strip()
    if correction:
        kind = SourceKind.expert_review if e.signal == "expert_review" else SourceKind.correction
        return Found(e.query.strip(), correction, kind, e)
    if e.signal == "edit" and e.polarity < 0 and (e.final_text or "").strip():
        return Found(e.query.strip(), (e.final_text or "").strip(), SourceKind.edit, e)
    if e.signal == "expert_review" and e.value is not None and e.value >= positive_expert and e.output.strip():
        return Found(e.query.strip(), e.output.strip(), SourceKind.expert_review, e)
    return None


def scorer_for(expected: str, settings: Settings) -> str:
    """A JSON object is checked key by key; any other reference answer by the configured scorer."""
    try:
        parsed = json.loads(expected)
    except json.JSONDecodeError:
        return settings.golden_set.feedback_scorer
    return "json" if isinstance(parsed, dict) else settings.golden_set.feedback_scorer


@dataclass
class ClusterFinds:
    """Candidates for one open cluster, best first, and what was passed over."""

    cluster: FailureCluster
    found: list[Found]
    no_consent: int = 0
    pii: int = 0


def finds_by_cluster(
    clusters: Sequence[FailureCluster],
    events: dict[str, StoredEvent],
    positive_reviews: Sequence[StoredEvent],
    embedder: Embedder,
    settings: Settings,
) -> list[ClusterFinds]:
    """Each open cluster's candidate items: its members' corrections, edits and expert corrections,
    and the positive expert reviews of queries like its own (a review is a positive event, so
    triage never puts it in a cluster: it joins the cluster whose consented queries it is closest
    to, at ``triage.cluster_threshold`` or more)."""
    out = []
    for c in clusters:
        finds = ClusterFinds(c, [])
        for eid in c.event_ids:
            e = events.get(eid)
            if e is None:
                continue
            if not e.consent:
                finds.no_consent += 1
                continue
            _take(finds, reference_answer(e, settings.finetune.positive_expert))
        out.append(finds)
    for finds, review in _attach_reviews(out, events, positive_reviews, embedder, settings.triage.cluster_threshold):
        _take(finds, reference_answer(review, settings.finetune.positive_expert))
    for finds in out:
        finds.found.sort(key=lambda f: (_PREFERENCE[f.kind], f.event.ts, f.event.event_id))
    return out


def _take(finds: ClusterFinds, found: Found | None) -> None:
    if found is None:
        return
    # Only the texts the item copies matter: PII scrubbed from the output of a corrected event is not copied.
    if holds_placeholder(found.input, found.expected):
        finds.pii += 1
        return
    finds.found.append(found)


def _attach_reviews(
    finds: list[ClusterFinds],
    events: dict[str, StoredEvent],
    reviews: Sequence[StoredEvent],
    embedder: Embedder,
    threshold: float,
) -> Iterable[tuple[ClusterFinds, StoredEvent]]:
    reviews = [r for r in reviews if r.consent]
    members: list[tuple[int, str]] = []
    for i, f in enumerate(finds):
        queries = dict.fromkeys(e.query for eid in f.cluster.event_ids if (e := events.get(eid)) and e.consent)
        members += [(i, q) for q in list(queries)[:200]]
    if not reviews or not members:
        return
    m_vec = embedder.embed([q for _, q in members])
    r_vec = embedder.embed([r.query for r in reviews])
    owner = np.array([i for i, _ in members])
    sims = r_vec @ m_vec.T
    for row, review in enumerate(reviews):
        best = int(sims[row].argmax())
        if sims[row, best] >= threshold:
            yield finds[int(owner[best])], review


def source_of(found: Found, cluster_id: str) -> ProposalSource:
    return ProposalSource(kind=found.kind, event_ids=[found.event.event_id], cluster_id=cluster_id)
