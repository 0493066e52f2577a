"""The RAG improver: outdated-knowledge clusters are fixed from the source of truth.

For the clusters routed to ``rag``:

1. **Implicated documents**: the ``context_ids`` of their events, and what the active index
   retrieves for their (consented) queries.
2. **Newer knowledge**, from two places only:
   - the knowledge source, where an implicated document changed since the active version, or a new
     document answers the cluster's queries;
   - trusted corrections: an expert review with a correction, or the same correction from at least
     ``min_users`` distinct consented users. A lone user's claim never enters the knowledge base.
3. **A candidate version**: the active version with those documents replaced or added, every other
   chunk untouched, and the provenance of every changed chunk.

No Prefect, no MLflow, no Chroma here: the caller gives the active version's chunks, the source's
documents, a retrieval function and an embedding function.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flywheel.knowledge.source import Chunk, Document, chunk_document
from flywheel.schemas import StoredEvent

CORRECTIONS_PREFIX = "corrections/"


@dataclass
class RagProposal:
    chunks: list[Chunk]  # the whole candidate version
    changed_documents: list[str]
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)  # chunk_id -> where it came from
    implicated: list[str] = field(default_factory=list)
    skipped_corrections: list[dict[str, Any]] = field(default_factory=list)  # untrusted, kept out

    @property
    def empty(self) -> bool:
        return not self.changed_documents


def _normalise(text: str) -> str:
    return re.sub(r"[^\w$%.]+", " ", text.lower()).strip(" .")


def trusted_corrections(
    events: Sequence[StoredEvent], min_users: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(trusted, untrusted)`` corrections among consented events, each with its evidence."""
    groups: dict[str, list[StoredEvent]] = defaultdict(list)
    for e in events:
        if e.consent and e.correction and e.correction.strip():
            groups[_normalise(e.correction)].append(e)
    trusted: list[dict[str, Any]] = []
    untrusted: list[dict[str, Any]] = []
    for members in groups.values():
        users = {e.user_id or e.session_id or e.event_id for e in members}
        expert = any(e.signal == "expert_review" for e in members)
        text = members[0].correction or ""  # never empty: only events with a correction were grouped
        doc = {
            "text": text.strip(),
            "users": len(users),
            "expert": expert,
            "event_ids": sorted(e.event_id for e in members)[:50],
            "queries": [e.query for e in members][:5],
        }
        (trusted if expert or len(users) >= min_users else untrusted).append(doc)
    trusted.sort(key=lambda d: (-d["users"], d["text"]))
    return trusted, untrusted


def propose(
    *,
    cluster_ids: Sequence[str],
    events: Sequence[StoredEvent],
    active_chunks: Sequence[Chunk],
    source_documents: Sequence[Document],
    retrieve: Callable[[str, int], list[str]],
    embed: Callable[[list[str]], np.ndarray],
    chunk_chars: int,
    min_users: int = 3,
    k: int = 3,
    new_document_similarity: float = 0.5,
) -> RagProposal:
    """The candidate version's chunks for these clusters (``changed_documents`` empty: nothing to do)."""
    consented_queries = list(dict.fromkeys(e.query for e in events if e.consent))
    # A product sends back the chunk ids `POST /v1/retrieve` gave it (`<doc_id>#<n>`), or document ids.
    document_of = {c.chunk_id: c.doc_id for c in active_chunks}
    implicated: set[str] = {document_of.get(d, d) for e in events for d in e.context_ids}
    for q in consented_queries[:50]:
        implicated.update(retrieve(q, k))

    active_docs: dict[str, list[Chunk]] = defaultdict(list)
    for c in active_chunks:
        active_docs[c.doc_id].append(c)
    changed: dict[str, Document] = {}
    provenance: dict[str, dict[str, Any]] = {}
    reasons: dict[str, dict[str, Any]] = {}
    for doc in source_documents:
        if doc.doc_id in implicated and doc.doc_id in active_docs:
            new_chunks = chunk_document(doc, chunk_chars)
            if [c.text for c in new_chunks] != [c.text for c in active_docs[doc.doc_id]]:
                changed[doc.doc_id] = doc
                reasons[doc.doc_id] = {"from": "knowledge source", "source": doc.source, "updated_at": doc.updated_at}
    new_docs = [
        d for d in source_documents if d.doc_id not in active_docs and not d.doc_id.startswith(CORRECTIONS_PREFIX)
    ]
    if new_docs and consented_queries:
        q_vec = embed(consented_queries[:50])
        d_vec = embed([d.text[:2000] for d in new_docs])
        best = (d_vec @ q_vec.T).max(axis=1)
        for doc, sim in zip(new_docs, best, strict=True):
            if sim >= new_document_similarity:
                changed[doc.doc_id] = doc
                reasons[doc.doc_id] = {
                    "from": "knowledge source (new document)",
                    "source": doc.source,
                    "similarity": round(float(sim), 3),
                }
    trusted, untrusted = trusted_corrections(events, min_users)
    if trusted:
        doc_id = f"{CORRECTIONS_PREFIX}{'+'.join(sorted(cluster_ids))[:120]}.md"
        body = "\n\n".join(t["text"] for t in trusted)
        changed[doc_id] = Document(doc_id, body, "trusted user corrections", "")
        reasons[doc_id] = {
            "from": "trusted corrections",
            "evidence": [{k: t[k] for k in ("users", "expert", "event_ids")} for t in trusted],
        }

    chunks: list[Chunk] = []
    for doc_id in sorted(set(active_docs) | set(changed)):
        if doc_id in changed:
            for c in chunk_document(changed[doc_id], chunk_chars):
                chunks.append(c)
                provenance[c.chunk_id] = {**reasons[doc_id], "doc_id": doc_id, "clusters": list(cluster_ids)}
        else:
            chunks.extend(active_docs[doc_id])
    return RagProposal(
        chunks=chunks,
        changed_documents=sorted(changed),
        provenance=provenance,
        implicated=sorted(implicated),
        skipped_corrections=untrusted,
    )
