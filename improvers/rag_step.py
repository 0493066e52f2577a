"""The RAG improver in the cycle: a candidate index version, retrieval validated."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from difflib import unified_diff

from flywheel.candidates import Candidate
from flywheel.improvers.context import CycleContext, cluster_events, earliest_seen, short_hash
from flywheel.schemas import FailureCluster


def rag_key(clusters: Sequence[FailureCluster]) -> str:
    """Where the cycle records what the RAG step did for these clusters."""
    return "rag:" + ",".join(sorted(c.cluster_id for c in clusters))


def improve_rag_step(ctx: CycleContext, clusters: Sequence[FailureCluster]) -> Candidate | None:
    """One candidate index version for the cycle's outdated-knowledge clusters, retrieval validated.

    None when there is nothing to do: no knowledge source or active index, or no newer knowledge
    (the reason is kept in the cycle's drafts)."""
    from flywheel.evals.retrieval import RetrievalCheck, validate
    from flywheel.improvers import rag
    from flywheel.knowledge.index import open_index
    from flywheel.knowledge.source import load_documents

    if not clusters:
        return None
    key = rag_key(clusters)
    with ctx.state() as state:
        cached = state.drafts(ctx.cycle_id, key)
        if cached is None:
            if ctx.settings.knowledge_source is None or ctx.index_version is None:
                cached = {"version": None, "reason": "no knowledge source or no active index (run `flywheel kb sync`)"}
                state.save_drafts(ctx.cycle_id, key, cached)
                return None
            index = open_index(ctx.settings, state)
            active = int(ctx.index_version)
            retriever = index.retriever(active)
            assert retriever is not None
            with ctx.feedback() as store:
                events = store.get([i for c in clusters for i in c.event_ids])
            index.embedder.embed(list(dict.fromkeys(e.query for e in events)))  # one batch, then cache hits
            proposal = rag.propose(
                cluster_ids=[c.cluster_id for c in clusters],
                events=events,
                active_chunks=index.chunks(active),
                source_documents=load_documents(ctx.settings.knowledge_source),
                retrieve=lambda q, k: [d for d, _ in retriever.retrieve(q, k)],
                embed=index.embedder.embed,
                chunk_chars=ctx.settings.knowledge.chunk_chars,
                k=ctx.settings.knowledge.retrieval_k,
            )
            if proposal.empty:
                cached = {
                    "version": None,
                    "reason": "no newer knowledge in the source and no trusted correction "
                    f"for {', '.join(proposal.implicated) or 'these queries'}",
                    "untrusted_corrections": len(proposal.skipped_corrections),
                }
                state.save_drafts(ctx.cycle_id, key, cached)
                return None
            report = index.create_version(
                proposal.chunks,
                parent=active,
                source=str(ctx.settings.knowledge_source),
                note=f"rag candidate, cycle {ctx.cycle_id}",
                provenance={"clusters": [c.cluster_id for c in clusters], "chunks": proposal.provenance},
            )
            golden = ctx.golden
            checks = [RetrievalCheck(i.input, frozenset(i.documents), "golden") for i in golden.items if i.documents]
            changed = set(proposal.changed_documents)
            checks += [
                RetrievalCheck(e.query, frozenset(changed), "cluster") for e in events if e.consent and e.correction
            ][:100]
            candidate_retriever = index.retriever(report.version)
            assert candidate_retriever is not None
            index.embedder.embed(list(dict.fromkeys(c.query for c in checks)))
            validation = validate(
                lambda q, k: [d for d, _ in retriever.retrieve(q, k)],
                lambda q, k: [d for d, _ in candidate_retriever.retrieve(q, k)],
                checks,
                changed,
                ctx.settings.knowledge.retrieval_k,
            )
            old_text = {c.doc_id: c.text for c in index.chunks(active)}
            diff = "".join(
                unified_diff(
                    [line + "\n" for d in proposal.changed_documents for line in old_text.get(d, "").splitlines()],
                    [line + "\n" for c in proposal.chunks if c.doc_id in changed for line in c.text.splitlines()],
                    f"index v{active} (active)",
                    f"index v{report.version} (candidate)",
                )
            )
            cached = {
                "version": report.version,
                "changed_documents": proposal.changed_documents,
                "provenance": proposal.provenance,
                "implicated": proposal.implicated,
                "untrusted_corrections": len(proposal.skipped_corrections),
                "embedded": report.embedded,
                "validation": validation.model_dump(mode="json"),
                "diff": diff,
            }
            state.save_drafts(ctx.cycle_id, key, cached)
        if cached["version"] is None:
            return None
        first_seen, by_cluster = earliest_seen(clusters)
        cand = Candidate(
            candidate_id=f"rag-{short_hash(ctx.cycle_id, str(cached['version']))}",
            cycle_id=ctx.cycle_id,
            kind="rag",
            cluster_ids=[c.cluster_id for c in clusters],
            parent=ctx.index_version,
            version=str(cached["version"]),
            first_seen=first_seen,
            created_at=datetime.now(UTC),
            payload={
                "template": ctx.champion_template,
                "index_version": str(cached["version"]),
                "changed_documents": cached["changed_documents"],
                "provenance": cached["provenance"],
                "retrieval": cached["validation"],
                "diff": cached["diff"],
                "cluster_first_seen": by_cluster,
                "cluster_events": cluster_events(clusters),
            },
        )
        state.add_candidate(cand)
        return state.candidate(cand.candidate_id) or cand
