"""The steps of one improvement cycle, as plain functions (the Prefect flow in ``flows/cycle.py``
wires them as tasks; ``run_cycle`` runs the same steps without Prefect).

begin -> triage -> improve (one improver per routed cluster) -> merge -> evaluate (champion and
every candidate) -> gate (MLflow record first, then decisions) -> finish.

Every step stores its result in the state store under a key derived from the cycle and its
inputs (drafts per cluster, candidates by a content hash, evaluations by variant and golden
version, MLflow runs by tags), so a cycle that was killed and is started again resumes the same
cycle id and redoes nothing that had finished.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from difflib import unified_diff
from pathlib import Path
from typing import Any, TypeVar

import openai
import uvloop

from pydantic import BaseModel, Field

from evals.golden import GoldenSet, load_golden
from evals.pipeline import Answer, Variant, builtin_pipeline, load_user_pipeline
from evals.runner import (BatchRows, EvalBatch, EvalResult, assemble, evaluate_many, from_cache, judge_with,
                          plan_batches, run_batch)
from flywheel.champion import production_model, register_prompt, require_production_prompt, use_mlflow
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.feedback.store import open_store
from flywheel.llm import endpoint, make_async_client, make_client
from flywheel.schemas import Candidate, ChampionSet, FailureCluster, StoredEvent
from flywheel.state import open_state
from improvers.finetune import TERMINAL as JOB_DONE
from improvers.prompt import (DraftingResult, FailingExample, combine_edits, integrity_problems, merge_prompts,
                              propose)
from flywheel.replies import ReplyProblem, achat_json
from improvers.screening import VERDICT_SCHEMA, Screening, Verdict, parse_verdict, resolution_messages, screen

Progress = Callable[[str], None]
F = TypeVar("F", bound=Callable[..., Any])


class EndpointFailed(FlywheelError):
    """The LLM endpoint kept failing after retries: the cycle ends and nothing is promoted."""


class CycleSetup(BaseModel):
    cycle_id: str
    resumed: bool
    champion_version: str
    champion_template: str
    golden_version: str
    index_version: str | None = None
    champion_model: str = ""  # the provider's name of the model in production
    champion_model_version: str | None = None  # its registry version; None: the base model


class CycleReport(BaseModel):
    cycle_id: str
    golden_version: str
    champion_score: float | None
    candidates: list[Candidate]
    resumed: bool = False
    clusters: list[dict[str, Any]] = Field(default_factory=list)
    champion_run_id: str | None = None
    cycle_run_id: str | None = None
    finetune: dict[str, Any] = Field(default_factory=dict)
    champion_per_category: dict[str, float] = Field(default_factory=dict)
    chart_uri: str | None = None  # the chart logged to the cycle's MLflow run
    chart_link: str | None = None  # where an operator opens it (the MLflow UI when configured)
    chart_png: bytes | None = Field(None, exclude=True)  # the chart itself, for the Prefect artifact

    def public(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "golden_version": self.golden_version,
            "champion_score": self.champion_score,
            "candidates": [c.public() for c in self.candidates],
            "resumed": self.resumed,
            "clusters": self.clusters,
            "finetune": self.finetune,
            "mlflow_run_id": self.cycle_run_id,
        }


def endpoint_errors(what: str) -> Callable[[F], F]:
    """Turn the SDK's errors (after its own retries) into one clear EndpointFailed."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except openai.APIError as exc:
                status = getattr(exc, "status_code", None)
                raise EndpointFailed(
                    f"{what}: the LLM endpoint failed after retries ({type(exc).__name__}"
                    f"{f' {status}' if status else ''}: {str(exc)[:200]}); nothing was promoted"
                ) from exc

        return inner  # type: ignore[return-value]

    return wrap


def _crash_point(step: str) -> None:
    """Fault injection for the resume tests: FLYWHEEL_CRASH_AFTER=<step> kills the process there."""
    if os.environ.get("FLYWHEEL_CRASH_AFTER") == step:
        os._exit(137)


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------------------
def begin(settings: Settings) -> CycleSetup:
    """Check what the cycle needs (endpoint, champion, golden set) and open or resume a cycle."""
    endpoint(settings, purpose="`flywheel cycle`")
    champion = require_production_prompt(settings)
    golden = load_golden(settings.golden)
    with open_state(settings.ensure_home()) as state:
        cycle_id = state.unfinished_cycle()
        resumed = cycle_id is not None
        if cycle_id is None:
            cycle_id = f"cyc-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        state.start_cycle(cycle_id)
    model = production_model(settings)
    return CycleSetup(cycle_id=cycle_id, resumed=resumed, champion_version=champion.version,
                      champion_template=champion.template, golden_version=golden.version,
                      index_version=active_index_version(settings), champion_model=model.provider_model,
                      champion_model_version=model.version)


def triage_step(settings: Settings, progress: Callable[[int], None] | None = None) -> list[FailureCluster]:
    """Triage everything in the store, as `flywheel triage` and the cycle both do: the configured
    embedder, the LLM classifier when enabled, and the history of failed prompts (fine-tune routing)."""
    from flywheel.embeddings import build_embedder
    from flywheel.triage import TriageInputs, llm_classifier, triage_events

    classify = None
    if settings.triage.infer_with_llm:
        classify = llm_classifier(make_client(settings, purpose="triage with infer_with_llm"), settings.judge_model)
    with open_state(settings.ensure_home()) as state:
        failed = state.prompt_failed_clusters()
    with open_store(settings.resolved_store_url) as store:
        negatives = list(store.events(polarity=-1))
    inputs = TriageInputs(settings.triage, build_embedder(settings), prompt_failed=failed, classify=classify)
    return triage_events(negatives, inputs, progress)


def prompt_clusters(clusters: Sequence[FailureCluster], settings: Settings) -> list[FailureCluster]:
    """The clusters the prompt improver works on this cycle: routed to it, with enough consented
    text, and not already fixed (a prompt for it was promoted after its last negative event; new
    negative feedback re-opens it)."""
    fixed = fixed_clusters(settings, clusters, "prompt")
    chosen = [c for c in clusters if c.route == "prompt" and c.consented >= settings.improve.min_cluster_consented
              and c.category != "other" and c.cluster_id not in fixed]
    return chosen[: settings.improve.max_clusters]


def fixed_clusters(settings: Settings, clusters: Sequence[FailureCluster], kind: str) -> set[str]:
    """Clusters whose fix of ``kind`` was promoted after their last negative event: nothing new to
    fix until new negative feedback arrives (a rollback re-opens them)."""
    with open_state(settings.ensure_home()) as state:
        return {c.cluster_id for c in clusters if c.last_seen is not None
                and (at := state.promoted_at(c.cluster_id, kind)) is not None and at > c.last_seen.timestamp()}


def failing_examples(events: Sequence[StoredEvent], limit: int) -> list[FailingExample]:
    """Consented events only (the privacy rule), the most informative first, deterministic order."""
    usable = [e for e in events if e.consent]
    usable.sort(key=lambda e: (-(bool(e.correction) or bool(e.final_text)), -bool(e.reason), -bool(e.comment),
                               e.ts, e.event_id))
    seen: set[str] = set()
    out = []
    for e in usable:
        if e.query in seen:
            continue
        seen.add(e.query)
        better = e.correction or (e.final_text if e.signal == "edit" else None)
        out.append(FailingExample(query=e.query, output=e.output, signal=e.signal, reason=e.reason,
                                  comment=e.comment, better=better))
        if len(out) == limit:
            break
    return out


def answer_queries(settings: Settings, template: str, queries: Sequence[str],
                   index_version: str | None = None, model: str | None = None) -> list[str]:
    """Run the product pipeline with ``template`` (over ``index_version``) on a few queries, for
    screening; errors propagate."""

    async def main() -> list[str]:
        answer, _, close = answer_factory(settings)()
        try:
            variant = Variant(label="screening", prompt_template=template, model=model or settings.target_model,
                              index_version=index_version)
            gate = asyncio.Semaphore(settings.eval.concurrency)

            async def one(q: str) -> str:
                async with gate:
                    return await answer(variant, q)

            return list(await asyncio.gather(*(one(q) for q in queries)))
        finally:
            await close()

    return uvloop.run(main())


def judge_resolutions(settings: Settings, examples: Sequence[FailingExample], outputs: Sequence[str]) -> list[Verdict]:
    """The judge's verdict per (failing example, fresh answer): concurrent under the evaluation's
    limit, retried by the SDK, and cached in the state store (the same answer to the same complaint
    is judged once, also across a resumed cycle)."""
    keys = [_short_hash("resolution", settings.judge_model, e.query, e.output, e.feedback_text(), e.better or "", out)
            for e, out in zip(examples, outputs, strict=True)]
    with open_state(settings.home) as state:
        cached = {k: doc for k in keys if (doc := state.cached_eval("screen:" + k)) is not None}

    async def main() -> dict[str, Verdict]:
        client = make_async_client(settings, purpose="screening")
        gate = asyncio.Semaphore(settings.eval.concurrency)
        try:
            async def one(e: FailingExample, out: str) -> Verdict:
                async with gate:
                    reply = await achat_json(client, settings.judge_model, resolution_messages(e, out),
                                             name="resolution", schema=VERDICT_SCHEMA, temperature=0)
                return parse_verdict(reply)

            todo = [(k, e, out) for k, e, out in zip(keys, examples, outputs, strict=True) if k not in cached]
            verdicts = await asyncio.gather(*(one(e, out) for _, e, out in todo))
            return {k: v for (k, _, _), v in zip(todo, verdicts, strict=True)}
        finally:
            await client.close()

    fresh = uvloop.run(main()) if len(cached) < len(set(keys)) else {}
    with open_state(settings.home) as state:
        for k, verdict in fresh.items():
            state.cache_eval("screen:" + k, verdict.model_dump())
    return [fresh[k] if k in fresh else Verdict.model_validate(cached[k]) for k in keys]


def screen_template(settings: Settings, setup: CycleSetup, template: str,
                    examples: Sequence[FailingExample]) -> Screening:
    """A prompt's judged answers on failing examples (the merge check uses it)."""
    outputs = answer_queries(settings, template, [e.query for e in examples], setup.index_version,
                             setup.champion_model)
    return screen(outputs, examples, lambda exs, outs: judge_resolutions(settings, exs, outs))


def draft_id(cycle_id: str, template: str) -> str:
    return _short_hash(cycle_id, template)


def register_draft(settings: Settings, cycle_id: str, template: str, message: str, provenance: dict[str, str]) -> str:
    """Register a drafted prompt as a registry version exactly once, even across a crash: the
    version is found again by its ``flywheel.draft_id`` tag before a new one is created."""
    did = draft_id(cycle_id, template)
    client = use_mlflow(settings)
    for pv in client.search_prompt_versions(settings.prompt_name):
        tags = getattr(pv, "tags", None) or {}
        if tags.get("flywheel.draft_id") == did:
            # Two clusters of one category can draft the same text: the one that kept it names it.
            if provenance.get("flywheel.kept") == "true" and tags.get("flywheel.kept") != "true":
                for key in ("flywheel.kept", "flywheel.cluster_ids", "flywheel.screening"):
                    if key in provenance:
                        client.set_prompt_version_tag(settings.prompt_name, pv.version, key, provenance[key])
            return str(pv.version)
    ref = register_prompt(settings, template, message, {"flywheel.draft_id": did, "flywheel.cycle_id": cycle_id,
                                                         **provenance})
    return ref.version


def _prompt_candidate(setup: CycleSetup, template: str, clusters: Sequence[FailureCluster],
                      payload: dict[str, Any]) -> Candidate:
    first_seen, by_cluster = _first_seen(clusters)
    return Candidate(
        candidate_id=f"prompt-{draft_id(setup.cycle_id, template)}",
        cycle_id=setup.cycle_id, kind="prompt", cluster_ids=[c.cluster_id for c in clusters],
        parent=setup.champion_version, first_seen=first_seen, created_at=datetime.now(timezone.utc),
        payload={"template": template,
                 "diff": prompt_diff(setup.champion_template, template, setup.champion_version),
                 "cluster_first_seen": by_cluster, **payload},
    )


def _first_seen(clusters: Sequence[FailureCluster]) -> tuple[datetime | None, dict[str, str]]:
    """The earliest negative event of the clusters, and each one's (loop velocity is measured from them)."""
    by_cluster = {c.cluster_id: c.first_seen for c in clusters if c.first_seen}
    earliest = min(by_cluster.values()) if by_cluster else None
    return earliest, {cid: ts.isoformat() for cid, ts in by_cluster.items()}


def prompt_diff(before: str, after: str, parent_version: str) -> str:
    wrap = lambda t: [s + "\n" for s in t.replace(". ", ".\n").splitlines()]  # noqa: E731 - one sentence a line
    return "".join(unified_diff(wrap(before), wrap(after), f"prompt v{parent_version} (champion)", "candidate"))


@endpoint_errors("drafting")
def improve_prompt_step(settings: Settings, setup: CycleSetup, cluster: FailureCluster,
                        protected: Sequence[str]) -> list[Candidate]:
    """One cluster through the prompt improver; drafts and candidates are stored as they are made.
    Only kept drafts become prompt versions in the registry; the rest stay in the cycle's record."""
    with open_state(settings.home) as state:
        cached = state.drafts(setup.cycle_id, cluster.cluster_id)
        if cached is None:
            with open_store(settings.resolved_store_url) as store:
                examples = failing_examples(store.get(cluster.event_ids), settings.improve.examples_per_cluster)
            result = propose(
                cluster_id=cluster.cluster_id, category=cluster.category, champion=setup.champion_template,
                examples=examples, client=make_client(settings, purpose="drafting"), model=settings.draft_model,
                run_queries=lambda t, qs: answer_queries(settings, t, qs, setup.index_version, setup.champion_model),
                judge=lambda exs, outs: judge_resolutions(settings, exs, outs),
                protected=protected,
                settings=settings.improve,
            )
            cached = result.model_dump(mode="json")
            state.save_drafts(setup.cycle_id, cluster.cluster_id, cached)
        result = DraftingResult.model_validate(cached)
        provenance = {"flywheel.cluster_ids": cluster.cluster_id, "flywheel.parent_version": setup.champion_version}
        for rank, idx in enumerate(result.kept):
            draft = result.drafts[idx]
            if cached["drafts"][idx].get("version") is None:
                cached["drafts"][idx]["version"] = register_draft(
                    settings, setup.cycle_id, draft.template,
                    f"draft {idx + 1} (round {draft.round}) for {cluster.cluster_id} ({cluster.category}), cycle "
                    f"{setup.cycle_id}: resolved {draft.screening:.0%} of its failing examples, champion "
                    f"{result.champion_screening:.0%}",
                    {**provenance, "flywheel.screening": str(draft.screening), "flywheel.kept": "true",
                     "flywheel.round": str(draft.round)},
                )
                state.save_drafts(setup.cycle_id, cluster.cluster_id, cached)
        if not result.kept:
            # No draft resolved as much as the champion: prompts failed here. No usable draft at all
            # (the drafting model refused or answered garbage) says nothing about the cluster, and
            # neither does a champion that already resolves the complaints.
            screened = any(d.screening is not None for d in result.drafts)
            outcome = ("no_improvement" if screened else "already_resolved" if result.rounds == 0
                       else "drafting_failed")
            state.record_attempt(cluster.cluster_id, setup.cycle_id, "prompt", f"drafts-{setup.cycle_id}", outcome)
        out = []
        for idx in result.kept:
            draft = result.drafts[idx]
            cand = _prompt_candidate(setup, draft.template, [cluster], {
                "critique": result.critique, "screening": draft.screening,
                "champion_screening": result.champion_screening, "category": cluster.category,
                "cluster_summary": cluster.summary, "round": draft.round,
                # A draft that only tied the champion goes to the golden set, but fixes nothing here.
                "fixes": [cluster.cluster_id] if (draft.screening or 0.0) > (result.champion_screening or 0.0) else [],
            })
            cand.version = cached["drafts"][idx]["version"]
            state.add_candidate(cand)
            out.append(state.candidate(cand.candidate_id) or cand)
        return out


def drafting_summary(settings: Settings, cycle_id: str, cluster_id: str) -> dict[str, Any] | None:
    """What the prompt improver did on a cluster, for the cycle's output and report."""
    with open_state(settings.home) as state:
        doc = state.drafts(cycle_id, cluster_id)
    if doc is None:
        return None
    result = DraftingResult.model_validate(doc)
    if result.kept:
        why = f"{len(result.kept)} draft(s) went to the golden set"
    elif result.rounds == 0:
        why = result.stopped
    elif any(d.screening is not None for d in result.drafts):
        why = (f"no draft resolved as much as the champion ({result.champion_screening:.0%}; best "
               f"{result.best_screening:.0%})")
    else:
        why = "no usable draft: " + ("; ".join(result.problems[:3]) or "every draft failed the integrity checks")
    return {"rounds": result.rounds, "rollouts": result.rollouts, "champion_resolved": result.champion_screening,
            "best_resolved": result.best_screening, "drafts": len(result.drafts), "kept": len(result.kept),
            "problems": result.problems + [f"draft {i + 1} (round {d.round}): {'; '.join(d.problems)}"
                                           for i, d in enumerate(result.drafts) if d.problems],
            "stopped": result.stopped, "outcome": why}


def unique_candidates(settings: Settings, cands: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per id: clusters of one category can draft the same prompt, which is then one
    candidate covering all of them (their ids and first-seen times are merged and saved)."""
    by_id: dict[str, Candidate] = {}
    for cand in cands:
        seen = by_id.get(cand.candidate_id)
        if seen is None:
            by_id[cand.candidate_id] = cand.model_copy(deep=True)
            continue
        for cid in cand.cluster_ids:
            if cid not in seen.cluster_ids:
                seen.cluster_ids.append(cid)
        seen.payload["fixes"] = sorted(set(seen.payload.get("fixes") or []) | set(cand.payload.get("fixes") or []))
        seen.payload.setdefault("cluster_first_seen", {}).update(cand.payload.get("cluster_first_seen") or {})
        if cand.first_seen and (seen.first_seen is None or cand.first_seen < seen.first_seen):
            seen.first_seen = cand.first_seen
    merged = list(by_id.values())
    if len(merged) < len(cands):
        client = use_mlflow(settings)
        with open_state(settings.home) as state:
            for cand in merged:
                state.save_candidate(cand)
                if cand.kind == "prompt" and cand.version and len(cand.cluster_ids) > 1:
                    client.set_prompt_version_tag(settings.prompt_name, cand.version, "flywheel.cluster_ids",
                                                  ",".join(cand.cluster_ids))
    return merged


@endpoint_errors("merging drafts")
def merge_step(settings: Settings, setup: CycleSetup, candidates: Sequence[Candidate],
               clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Candidate | None:
    """One prompt with every cluster's best revision, when there are two or more. It must resolve,
    on each winner's own failing examples, as much as that winner did: the drafting model's merge
    is checked, and when it loses one cluster's fix the winners' additions are combined without a
    model and checked the same way; when both lose something there is no merged candidate (the
    single-cluster candidates go on alone)."""
    # Only drafts that resolved more than the champion fixed something a merge could keep; one that
    # merely tied goes to the golden set alone (a merge must not claim its cluster as fixed).
    candidates = [c for c in candidates
                  if (c.payload.get("screening") or 0.0) > (c.payload.get("champion_screening") or 0.0)]
    if not settings.improve.merge or len(candidates) < 2:
        return None
    with open_state(settings.home) as state:
        key = "merge:" + ",".join(sorted(c.candidate_id for c in candidates))
        cached = state.drafts(setup.cycle_id, key)
        if cached is None:
            cached = _checked_merge(settings, setup, candidates, clusters, protected)
            state.save_drafts(setup.cycle_id, key, cached)
        if cached.get("template") is None:
            return None
        by_id = {c.cluster_id: c for c in clusters}
        covered = [by_id[cid] for cand in candidates for cid in cand.cluster_ids if cid in by_id]
        cand = _prompt_candidate(setup, cached["template"], covered,
                                 {"merged_from": [c.candidate_id for c in candidates], "category": "merged",
                                  "fixes": sorted({cid for c in candidates for cid in c.payload.get("fixes") or []}),
                                  "merge": {k: v for k, v in cached.items() if k != "template"}})
        cand.version = register_draft(
            settings, setup.cycle_id, cached["template"], f"merge of {len(candidates)} drafts ({cached['method']}), "
            f"cycle {setup.cycle_id}",
            {"flywheel.cluster_ids": ",".join(cand.cluster_ids), "flywheel.parent_version": setup.champion_version,
             "flywheel.merged_from": ",".join(c.candidate_id for c in candidates), "flywheel.kept": "true"},
        )
        state.add_candidate(cand)
        return state.candidate(cand.candidate_id) or cand


def _checked_merge(settings: Settings, setup: CycleSetup, candidates: Sequence[Candidate],
                   clusters: Sequence[FailureCluster], protected: Sequence[str]) -> dict[str, Any]:
    """The merged template that keeps every winner's fix, how it was made and what was checked."""
    by_id = {c.cluster_id: c for c in clusters}
    checks: list[tuple[str, float, list[FailingExample]]] = []  # (cluster, winner's resolved share, examples)
    with open_store(settings.resolved_store_url) as store:
        for cand in candidates:
            for cid in cand.cluster_ids:
                if cid in by_id:
                    examples = failing_examples(store.get(by_id[cid].event_ids), settings.improve.examples_per_cluster)
                    checks.append((cid, float(cand.payload.get("screening") or 0.0), examples))
    winners = [c.payload["template"] for c in candidates]
    tried: list[dict[str, Any]] = []
    attempts: list[tuple[str, Callable[[], str]]] = [
        ("drafting model", lambda: merge_prompts(make_client(settings, purpose="drafting"), settings.draft_model,
                                                 setup.champion_template, winners)),
        ("combined edits", lambda: combine_edits(setup.champion_template, winners)),
    ]
    for method, make in attempts:
        try:
            template = make()
        except ReplyProblem as exc:
            tried.append({"method": method, "problem": str(exc)})
            continue
        problems = integrity_problems(template, setup.champion_template, protected, settings.improve)
        if problems:
            tried.append({"method": method, "problem": "; ".join(problems)})
            continue
        lost = []
        for cid, share, examples in checks:
            merged = screen_template(settings, setup, template, examples)
            if merged.share < share:
                lost.append(f"{cid}: {merged.share:.0%} < {share:.0%}")
        if not lost:
            return {"template": template, "method": method, "tried": tried, "checked_clusters": len(checks)}
        tried.append({"method": method, "problem": "loses what a winner fixed: " + ", ".join(lost)})
    return {"template": None, "method": None, "tried": tried, "checked_clusters": len(checks)}


def rag_clusters(clusters: Sequence[FailureCluster], settings: Settings) -> list[FailureCluster]:
    """Outdated-knowledge clusters not already fixed by a promoted index version."""
    fixed = fixed_clusters(settings, clusters, "rag")
    return [c for c in clusters if c.route == "rag" and c.cluster_id not in fixed][: settings.improve.max_clusters]


def improve_rag_step(settings: Settings, setup: CycleSetup, clusters: Sequence[FailureCluster]) -> Candidate | None:
    """One candidate index version for the cycle's outdated-knowledge clusters, retrieval validated.

    None when there is nothing to do: no knowledge source or active index, or no newer knowledge
    (the reason is kept in the cycle's drafts)."""
    from evals.retrieval import RetrievalCheck, validate
    from flywheel.knowledge.index import open_index
    from flywheel.knowledge.source import load_documents
    from improvers import rag

    if not clusters:
        return None
    key = "rag:" + ",".join(sorted(c.cluster_id for c in clusters))
    with open_state(settings.home) as state:
        cached = state.drafts(setup.cycle_id, key)
        if cached is None:
            if settings.knowledge_source is None or setup.index_version is None:
                cached = {"version": None, "reason": "no knowledge source or no active index (run `flywheel kb sync`)"}
                state.save_drafts(setup.cycle_id, key, cached)
                return None
            index = open_index(settings, state)
            active = int(setup.index_version)
            retriever = index.retriever(active)
            assert retriever is not None
            with open_store(settings.resolved_store_url) as store:
                events = store.get([i for c in clusters for i in c.event_ids])
            index.embedder.embed(list(dict.fromkeys(e.query for e in events)))  # one batch, then cache hits
            proposal = rag.propose(
                cluster_ids=[c.cluster_id for c in clusters], events=events, active_chunks=index.chunks(active),
                source_documents=load_documents(settings.knowledge_source),
                retrieve=lambda q, k: [d for d, _ in retriever.retrieve(q, k)], embed=index.embedder.embed,
                chunk_chars=settings.knowledge.chunk_chars, k=settings.knowledge.retrieval_k,
            )
            if proposal.empty:
                cached = {"version": None, "reason": "no newer knowledge in the source and no trusted correction "
                                                     f"for {', '.join(proposal.implicated) or 'these queries'}",
                          "untrusted_corrections": len(proposal.skipped_corrections)}
                state.save_drafts(setup.cycle_id, key, cached)
                return None
            report = index.create_version(
                proposal.chunks, parent=active, source=str(settings.knowledge_source),
                note=f"rag candidate, cycle {setup.cycle_id}",
                provenance={"clusters": [c.cluster_id for c in clusters], "chunks": proposal.provenance},
            )
            golden = load_golden(settings.golden)
            checks = [RetrievalCheck(i.input, frozenset(i.documents), "golden") for i in golden.items if i.documents]
            changed = set(proposal.changed_documents)
            checks += [RetrievalCheck(e.query, frozenset(changed), "cluster") for e in events
                       if e.consent and e.correction][:100]
            candidate_retriever = index.retriever(report.version)
            assert candidate_retriever is not None
            index.embedder.embed(list(dict.fromkeys(c.query for c in checks)))
            validation = validate(lambda q, k: [d for d, _ in retriever.retrieve(q, k)],
                                  lambda q, k: [d for d, _ in candidate_retriever.retrieve(q, k)],
                                  checks, changed, settings.knowledge.retrieval_k)
            old_text = {c.doc_id: c.text for c in index.chunks(active)}
            diff = "".join(unified_diff(
                [line + "\n" for d in proposal.changed_documents for line in old_text.get(d, "").splitlines()],
                [line + "\n" for c in proposal.chunks if c.doc_id in changed for line in c.text.splitlines()],
                f"index v{active} (active)", f"index v{report.version} (candidate)"))
            cached = {"version": report.version, "changed_documents": proposal.changed_documents,
                      "provenance": proposal.provenance, "implicated": proposal.implicated,
                      "untrusted_corrections": len(proposal.skipped_corrections), "embedded": report.embedded,
                      "validation": validation.model_dump(mode="json"), "diff": diff}
            state.save_drafts(setup.cycle_id, key, cached)
        if cached["version"] is None:
            return None
        first_seen, by_cluster = _first_seen(clusters)
        cand = Candidate(
            candidate_id=f"rag-{_short_hash(setup.cycle_id, str(cached['version']))}", cycle_id=setup.cycle_id,
            kind="rag", cluster_ids=[c.cluster_id for c in clusters], parent=setup.index_version,
            version=str(cached["version"]), first_seen=first_seen,
            created_at=datetime.now(timezone.utc),
            payload={"template": setup.champion_template, "index_version": str(cached["version"]),
                     "changed_documents": cached["changed_documents"], "provenance": cached["provenance"],
                     "retrieval": cached["validation"], "diff": cached["diff"],
                     "cluster_first_seen": by_cluster},
        )
        state.add_candidate(cand)
        return state.candidate(cand.candidate_id) or cand


def finetune_clusters(clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
    return [c for c in clusters if c.route == "finetune"]


class FinetuneOutcome(BaseModel):
    """What the fine-tuning step did this cycle: candidates (succeeded jobs), and the jobs and
    notes an operator reads (a job still running, a failed one with the provider's reason)."""

    candidates: list[Candidate] = Field(default_factory=list)
    jobs: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    dataset: dict[str, Any] | None = None


@endpoint_errors("fine-tuning")
def improve_finetune_step(settings: Settings, setup: CycleSetup, clusters: Sequence[FailureCluster],
                          poll_timeout: float | None = None) -> FinetuneOutcome:
    """Fine-tuning for clusters prompts could not fix: a dataset version, its job (resumed, never
    submitted twice), and a model candidate once the job succeeds. Jobs started by earlier cycles
    are polled too, so a job longer than a cycle becomes a candidate in a later one."""
    from flywheel import finetuning

    out = FinetuneOutcome()
    with open_state(settings.ensure_home()) as state:
        open_jobs = state.finetune_jobs(open_only=True)
    if not clusters and not open_jobs:
        return out
    client = make_client(settings, purpose="fine-tuning")
    ids = sorted(c.cluster_id for c in clusters)
    if clusters:
        key = "finetune:" + ",".join(ids)
        with open_state(settings.home) as state:
            dataset = state.drafts(setup.cycle_id, key)
        if dataset is None:
            dataset = finetuning.build_dataset(settings)
            with open_state(settings.home) as state:
                state.save_drafts(setup.cycle_id, key, dataset)
        out.dataset = {k: dataset.get(k) for k in ("built", "version", "examples", "train", "validation",
                                                    "preference_pairs", "excluded", "path", "min_examples")}
        if not dataset["built"]:
            out.notes.append(f"fine-tuning for {', '.join(ids)} waits: {dataset['examples']} usable examples after "
                             f"curation, {dataset['min_examples']} needed")
        else:
            record = finetuning.start_job(settings, client, dataset, cluster_ids=ids, cycle_id=setup.cycle_id)
            if all(j["job_id"] != record["job_id"] for j in open_jobs):
                open_jobs.append(record)
    for record in open_jobs:
        if record["status"] not in JOB_DONE:
            record = finetuning.poll_job(settings, client, record, poll_timeout)
        out.jobs.append({k: record.get(k) for k in ("job_id", "status", "dataset_version", "base_model",
                                                    "fine_tuned_model", "error", "cluster_ids")})
        if record["status"] in ("failed", "cancelled"):
            reason = f"fine-tune job {record['job_id']} {record['status']}: {record.get('error') or 'no reason given'}"
            out.notes.append(reason + "; no candidate")
            with open_state(settings.home) as state:
                for cid in record.get("cluster_ids") or []:
                    state.record_attempt(cid, setup.cycle_id, "finetune", record["job_id"], "failed")
            continue
        if record["status"] != "succeeded":
            out.notes.append(f"fine-tune job {record['job_id']} is {record['status']}; a later cycle picks it up")
            continue
        version = record.get("model_version") or finetuning.register_job_model(settings, record)
        cand = _finetune_candidate(settings, setup, record, version, clusters)
        if cand is not None:
            out.candidates.append(cand)
    return out


def _finetune_candidate(settings: Settings, setup: CycleSetup, record: dict[str, Any], version: str,
                        clusters: Sequence[FailureCluster]) -> Candidate | None:
    """The model candidate of a succeeded job, once: a model already decided on is not proposed again."""
    candidate_id = f"finetune-{_short_hash(record['job_id'])}"
    with open_state(settings.home) as state:
        existing = state.candidate(candidate_id)
        if existing is not None:
            return existing if existing.decision is None and existing.cycle_id == setup.cycle_id else None
        by_id = {c.cluster_id: c for c in clusters}
        first_seen, by_cluster = _first_seen([by_id[c] for c in record.get("cluster_ids") or [] if c in by_id])
        dataset = {}
        card = Path(record.get("dataset_path") or "") / "card.json"
        if card.is_file():
            dataset = json.loads(card.read_text())
        cand = Candidate(
            candidate_id=candidate_id, cycle_id=setup.cycle_id, kind="finetune",
            cluster_ids=list(record.get("cluster_ids") or []),
            parent=setup.champion_model_version or "base", version=version, first_seen=first_seen,
            created_at=datetime.now(timezone.utc),
            payload={"model": record["fine_tuned_model"], "base_model": record["base_model"],
                     "job_id": record["job_id"], "dataset_version": record["dataset_version"],
                     "dataset_path": record.get("dataset_path"), "model_run_id": record.get("model_run_id"),
                     "champion_model": setup.champion_model, "cluster_first_seen": by_cluster,
                     **{k: dataset.get(k) for k in ("examples", "train", "validation", "preference_pairs", "excluded")}},
        )
        state.add_candidate(cand)
        return state.candidate(cand.candidate_id) or cand


# ------------------------------------------------------------------------------------------------
def answer_factory(settings: Settings,
                   queries: Sequence[str] = ()) -> Callable[[], tuple[Answer, Any, Callable[[], Any]]]:
    """Builds (answer, judge, close) inside the running event loop (AsyncOpenAI binds to it).
    ``queries``: what will be asked, embedded for retrieval in one batch rather than one by one."""

    retrievers = index_retrievers(settings, queries)

    def build() -> tuple[Answer, Any, Callable[[], Any]]:
        client = make_async_client(settings, purpose="evaluation")
        if settings.eval.pipeline:
            answer = load_user_pipeline(settings.eval.pipeline)
        else:
            answer = builtin_pipeline(client, settings.prompt_variables, retrievers,
                                      temperature=settings.eval.temperature, max_tokens=settings.eval.max_tokens,
                                      k=settings.knowledge.retrieval_k)
        return answer, judge_with(client, settings.judge_model), client.close

    return build


def index_retrievers(settings: Settings, queries: Sequence[str] = ()) -> Callable[[str | None], Any]:
    """Retrievers by index version, opened on first use and kept for the evaluation. The first one
    embeds ``queries`` in one batch: the cache then answers every retrieval's query embedding."""
    opened: dict[str, Any] = {}
    lock = threading.Lock()

    def get(version: str | None) -> Any:
        if version is None:
            return None
        with lock:
            if version not in opened:
                from flywheel.knowledge.index import open_index

                state = open_state(settings.home)  # kept open with the retriever for the evaluation
                opened[version] = open_index(settings, state).retriever(int(version))
                if len(opened) == 1 and queries and opened[version] is not None:
                    opened[version].index.embedder.embed(list(dict.fromkeys(queries)))
            return opened[version]

    return get


def active_index_version(settings: Settings) -> str | None:
    from flywheel.knowledge.index import ACTIVE

    with open_state(settings.ensure_home()) as state:
        return state.pointer(ACTIVE)


def variant_for(settings: Settings, setup: CycleSetup, cand: Candidate | None) -> Variant:
    model = setup.champion_model or settings.target_model
    pipeline = settings.eval.pipeline or "builtin"
    if cand is None:
        return Variant(label="champion", prompt_template=setup.champion_template,
                       prompt_version=setup.champion_version, model=model,
                       index_version=setup.index_version, pipeline=pipeline)
    if cand.kind == "rag":  # the champion's prompt over the candidate index version
        return Variant(label=cand.candidate_id, prompt_template=setup.champion_template,
                       prompt_version=setup.champion_version, model=model,
                       index_version=cand.version, pipeline=pipeline)
    if cand.kind == "finetune":  # the champion's prompt and index, the fine-tuned model
        return Variant(label=cand.candidate_id, prompt_template=setup.champion_template,
                       prompt_version=setup.champion_version, model=cand.payload["model"],
                       index_version=setup.index_version, pipeline=pipeline)
    return Variant(label=cand.candidate_id, prompt_template=cand.payload["template"], prompt_version=cand.version,
                   model=model, index_version=setup.index_version, pipeline=pipeline)


def evaluate_step(settings: Settings, variants: Sequence[Variant],
                  progress: Callable[[int], None] | None = None) -> list[EvalResult]:
    """One evaluation batch: the variants share a client and the concurrency limit; cached ones are free."""
    golden = load_golden(settings.golden)
    with open_state(settings.home) as state:
        return evaluate_many(variants, golden, answer_factory(settings, _queries(golden)),
                             default_scorer=settings.eval.default_scorer,
                             judge_model=settings.judge_model, concurrency=settings.eval.concurrency, state=state,
                             use_cache=settings.eval.cache, progress=progress)


class EvalPlan(BaseModel):
    """An evaluation cut into batches for a task runner; cached variants need none."""

    variants: list[Variant]
    cached: list[EvalResult | None]
    batches: list[EvalBatch]


def plan_evaluation(settings: Settings, variants: Sequence[Variant], slots: int) -> EvalPlan:
    """Batches for a runner that runs ``slots`` of them at once."""
    golden = load_golden(settings.golden)
    with open_state(settings.home) as state:
        cached, todo = from_cache(variants, golden, state=state, use_cache=settings.eval.cache,
                                  default_scorer=settings.eval.default_scorer, judge_model=settings.judge_model)
    batches = plan_batches(variants, todo, len(golden.items), batch_items=settings.runner.eval_batch_items,
                           concurrency=settings.eval.concurrency, slots=slots)
    return EvalPlan(variants=list(variants), cached=cached, batches=batches)


def evaluate_batch_step(settings: Settings, batch: EvalBatch) -> BatchRows:
    """One batch, wherever it runs: it needs the golden set, the endpoint and (for retrieval) the index."""
    golden = load_golden(settings.golden)
    return run_batch(batch, golden, answer_factory(settings, _queries(golden)),
                     default_scorer=settings.eval.default_scorer)


def _queries(golden: GoldenSet) -> list[str]:
    return [item.input for item in golden.items]


def assemble_evaluation(settings: Settings, plan: EvalPlan, parts: Sequence[BatchRows]) -> list[EvalResult]:
    with open_state(settings.home) as state:
        return assemble(plan.variants, load_golden(settings.golden), plan.cached, parts, state=state,
                        default_scorer=settings.eval.default_scorer, judge_model=settings.judge_model)


def texts_to_embed(settings: Settings) -> list[str]:
    """What this cycle's triage and index refresh will embed and the cache does not hold yet."""
    from flywheel.embeddings import not_cached, open_embedder
    from flywheel.knowledge.source import chunks_of
    from flywheel.triage import texts_to_embed as triage_texts

    with open_embedder(settings) as embedder, open_store(settings.resolved_store_url) as store:
        texts = triage_texts(list(store.events(polarity=-1)), embedder)
        if settings.knowledge_source is not None and settings.knowledge_source.exists():
            texts += [c.text for c in chunks_of(settings.knowledge_source, settings.knowledge.chunk_chars)]
        return not_cached(embedder, texts)


def embed_batch_step(settings: Settings, texts: Sequence[str]) -> Any:
    """Vectors for ``texts`` with the configured model, no cache (the caller stores them)."""
    from flywheel.embeddings import build_embedder

    return build_embedder(settings, cached=False).embed(list(texts))


def remember_embeddings(settings: Settings, texts: Sequence[str], vectors: Any) -> None:
    from flywheel.embeddings import open_embedder, remember

    with open_embedder(settings) as embedder:
        remember(embedder, texts, vectors)


# ------------------------------------------------------------------------------------------------
def evaluation_outage(champion: EvalResult, results: dict[str, EvalResult], max_error_rate: float) -> str | None:
    """Why this cycle's evaluation cannot decide anything, or None. Items that errored beyond the
    policy's bound mean the endpoint failed: that is an outage to report, never a verdict on a
    candidate (a fully errored candidate is not a 0.0 candidate)."""
    broken = [(label, res) for label, res in (("the champion", champion), *results.items())
              if res.rows and res.errors / len(res.rows) > max_error_rate]
    if not broken:
        return None
    label, worst = max(broken, key=lambda pair: pair[1].errors)
    return (f"the evaluation failed: {len(broken)} of {len(results) + 1} variants have errored golden items beyond "
            f"the policy's {max_error_rate:.0%} ({label}: {worst.errors} of {len(worst.rows)}; first: "
            f"{worst.first_error()}); nothing was scored or promoted")


def _decide(cand: Candidate, res: EvalResult, comparison: Any, policy: Any) -> None:
    """The policy's decision on a candidate whose evaluation is complete."""
    from evals.policy import judge_candidate

    verdict = judge_candidate(comparison, res.errors, len(res.rows), policy)
    retrieval = cand.payload.get("retrieval")
    if retrieval and not retrieval["passed"]:
        cand.decision, cand.reason = "rejected", retrieval["reason"] + "; " + verdict.text
    else:
        cand.decision = "pending_approval" if verdict.passed else "rejected"
        cand.reason = verdict.text + (f"; {retrieval['reason']}" if retrieval else "")


def _supersede_losers(evaluated: Sequence[Candidate]) -> list[Candidate]:
    """One champion of each kind: of those that passed, the best waits; the rest are superseded."""
    winners: list[Candidate] = []
    for kind in ("prompt", "rag", "finetune"):
        passed = sorted((c for c in evaluated if c.decision == "pending_approval" and c.kind == kind),
                        key=lambda c: (-(c.golden_score or 0), len(c.payload.get("template", ""))))
        winners += passed[:1]
        for loser in passed[1:]:
            loser.decision = "superseded"
            loser.reason = (f"superseded by {passed[0].candidate_id} (golden score {passed[0].golden_score:.3f} "
                            f"vs {loser.golden_score:.3f}); passed the policy: {loser.reason}")
    return winners


def gate_step(settings: Settings, setup: CycleSetup, champion: EvalResult, results: dict[str, EvalResult],
              auto_approve: bool) -> CycleReport:
    """Log every evaluation to MLflow, then decide; promotion (auto-approve) only after logging.
    An evaluation outage is logged too (decision ``error``, no score) and then ends the cycle."""
    from evals.stats import category_means, compare
    from evals.tracking import cycle_run, experiment_id, log_variant
    from flywheel.gate import promote, supersede_pending

    policy = settings.policy
    outage = evaluation_outage(champion, results, policy.max_error_rate)
    golden = load_golden(settings.golden)
    client = use_mlflow(settings)
    exp_id = experiment_id(client, settings.experiment)
    parent = cycle_run(client, exp_id, setup.cycle_id)
    champion_run = log_variant(
        client, exp_id, parent, cycle_id=setup.cycle_id, kind="champion", candidate_id=f"champion-{setup.cycle_id}",
        result=champion, golden=golden, decision="error" if outage else "champion", metrics={},
        params={"prompt_name": settings.prompt_name}, tags={"flywheel.prompt_version": setup.champion_version},
        artifacts={"prompt.txt": setup.champion_template}, scored=outage is None,
    )
    against = ChampionSet(prompt=setup.champion_version, index=setup.index_version,
                          model=setup.champion_model_version or "base")
    with open_state(settings.home) as state:
        evaluated: list[Candidate] = []
        for cid, res in results.items():
            cand = state.candidate(cid)
            assert cand is not None
            if cand.decision is None and outage is not None:
                cand.decision, cand.reason = "error", outage
            elif cand.decision is None:
                comparison = None
                if res.scores:
                    comparison = compare(res.scores, champion.scores, champion.categories,
                                         resamples=settings.eval.bootstrap_resamples)
                    cand.golden_score, cand.champion_score = comparison.golden_score, comparison.champion_score
                    cand.delta, cand.ci_low, cand.ci_high = comparison.delta, comparison.ci_low, comparison.ci_high
                    cand.per_category, cand.category_deltas = comparison.per_category, comparison.category_deltas
                _decide(cand, res, comparison, policy)
            cand.evaluated_against = cand.evaluated_against or against
            evaluated.append(cand)
        winners = _supersede_losers(evaluated)
        for cand in evaluated:
            res = results[cand.candidate_id]
            if cand.mlflow_run_id is None:
                cand.mlflow_run_id = log_variant(
                    client, exp_id, parent, cycle_id=setup.cycle_id, kind=cand.kind, candidate_id=cand.candidate_id,
                    result=res, golden=golden, decision=cand.decision,
                    metrics={**{k: v for k, v in {"delta": cand.delta, "ci_low": cand.ci_low, "ci_high": cand.ci_high,
                                                  "champion_score": cand.champion_score}.items() if v is not None},
                             **retrieval_metrics(cand)},
                    params={"parent_version": cand.parent, "cluster_ids": ",".join(cand.cluster_ids),
                            "prompt_name": settings.prompt_name,
                            **({k: cand.payload.get(k) for k in ("dataset_version", "job_id", "base_model")}
                               if cand.kind == "finetune" else {})},
                    tags={"flywheel.reason": cand.reason, f"flywheel.{cand.kind}_version": cand.version or ""},
                    artifacts=candidate_artifacts(cand), scored=cand.decision != "error",
                )
            state.save_candidate(cand)
            outcome = "pending" if cand.decision == "pending_approval" else (cand.decision or "rejected")
            for cid in cand.cluster_ids:
                state.record_attempt(cid, setup.cycle_id, cand.kind, cand.candidate_id, cand.outcome_for(cid, outcome))
        if outage is not None:
            raise EndpointFailed(outage)
        _crash_point("gate-logged")
        for winner in winners:
            supersede_pending(settings, state, winner)
            if auto_approve or policy.auto_approve:
                promote(settings, state, winner, by="policy (auto-approve)", note=winner.reason)
        evaluated = [state.candidate(c.candidate_id) or c for c in evaluated]
    return CycleReport(cycle_id=setup.cycle_id, golden_version=golden.version, champion_score=champion.mean,
                       candidates=evaluated, resumed=setup.resumed, champion_run_id=champion_run,
                       cycle_run_id=parent,
                       champion_per_category=category_means(champion.scores, champion.categories))


def retrieval_metrics(cand: Candidate) -> dict[str, float]:
    from evals.retrieval import RetrievalValidation

    retrieval = cand.payload.get("retrieval")
    return RetrievalValidation.model_validate(retrieval).flat() if retrieval else {}


def candidate_artifacts(cand: Candidate) -> dict[str, str]:
    """What an approver reads: the prompt and its diff, or the index change and its provenance."""
    if cand.kind == "finetune":
        return {"finetune.json": json.dumps({k: cand.payload.get(k) for k in
                                             ("model", "base_model", "job_id", "dataset_version", "dataset_path",
                                              "examples", "train", "validation", "preference_pairs", "excluded")},
                                            indent=2)}
    if cand.kind == "rag":
        return {"index.diff": cand.payload.get("diff", ""),
                "index_changes.json": json.dumps({k: cand.payload.get(k) for k in
                                                  ("changed_documents", "provenance", "retrieval")}, indent=2)}
    return {"prompt.txt": cand.payload.get("template", ""), "prompt.diff": cand.payload.get("diff", ""),
            "critique.txt": cand.payload.get("critique", "")}


def finish(settings: Settings, report: CycleReport, status: str = "done") -> None:
    from evals.tracking import set_tags

    with open_state(settings.home) as state:
        state.finish_cycle(report.cycle_id, status, report.golden_version, report.champion_score,
                           {"candidates": [c.candidate_id for c in report.candidates], "clusters": report.clusters,
                            "finetune": report.finetune})
    if report.cycle_run_id:
        client = use_mlflow(settings)
        set_tags(client, report.cycle_run_id, {"flywheel.status": status,
                                               "flywheel.candidates": str(len(report.candidates))})
        log_chart(settings, client, report)
        client.log_metric(report.cycle_run_id, "champion_score", report.champion_score or 0.0)
        client.set_terminated(report.cycle_run_id, "FINISHED")


def log_chart(settings: Settings, client: Any, report: CycleReport) -> None:
    """The cycle's chart as an artifact of its MLflow run; where it is and how an operator opens it
    go on the report."""
    import tempfile

    from evals.report import CHART_ARTIFACT, cycle_chart

    with open_state(settings.home) as state:
        history = [(c["cycle_id"], c["champion_score"]) for c in reversed(state.cycles(limit=30))
                   if c["champion_score"] is not None and c["status"] == "done"]
    png = cycle_chart(history, report.candidates, report.champion_per_category)
    folder, name = CHART_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(png)
        client.log_artifact(report.cycle_run_id, str(path), folder)
    run = client.get_run(report.cycle_run_id)
    report.chart_uri = f"{run.info.artifact_uri}/{CHART_ARTIFACT}"
    report.chart_png = png
    if settings.mlflow_ui_url:
        base = settings.mlflow_ui_url.rstrip("/")
        report.chart_link = f"{base}/get-artifact?path={CHART_ARTIFACT}&run_uuid={report.cycle_run_id}"
    else:
        report.chart_link = report.chart_uri


def reread_candidates(settings: Settings, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates as the state store has them now (after approvals)."""
    with open_state(settings.home) as state:
        return [state.candidate(c.candidate_id) or c for c in candidates]


def fail(settings: Settings, cycle_id: str, reason: str, status: str = "failed") -> None:
    """Record how a cycle ended without a report: ``failed`` (it will not be resumed) or
    ``interrupted`` (stopped by a signal; the next ``flywheel cycle`` resumes it). Its MLflow run,
    if one was opened, is closed with the same status."""
    with open_state(settings.home) as state:
        state.finish_cycle(cycle_id, status, None, None, {"error": reason})
    try:
        from evals.tracking import CYCLE, KIND, find_run, set_tags

        client = use_mlflow(settings)
        exp = client.get_experiment_by_name(settings.experiment)
        run_id = find_run(client, exp.experiment_id, {KIND: "cycle", CYCLE: cycle_id}) if exp else None
        if run_id:
            set_tags(client, run_id, {"flywheel.status": status, "flywheel.error": reason})
            client.set_terminated(run_id, "FAILED" if status == "failed" else "KILLED")
    except Exception:  # the state store has the record; never hide the cycle's own error behind this
        pass


def cluster_summaries(clusters: Sequence[FailureCluster], settings: Settings | None = None,
                      cycle_id: str | None = None) -> list[dict[str, Any]]:
    """Clusters as the cycle reports them: everything but the (long) list of event ids, and for
    those the prompt improver worked on, its rounds, rollouts, resolved shares and outcome."""
    out = []
    for c in clusters:
        doc = c.model_dump(mode="json", exclude={"event_ids"})
        if settings is not None and cycle_id is not None:
            doc["drafting"] = drafting_summary(settings, cycle_id, c.cluster_id)
        out.append(doc)
    return out


def protected_texts(settings: Settings) -> list[str]:
    """What a drafted prompt must never copy: the golden set's inputs and expected answers."""
    golden: GoldenSet = load_golden(settings.golden)
    return [t for item in golden.items for t in (item.input, item.expected)]


def run_cycle(settings: Settings, *, auto_approve: bool = False, progress: Progress | None = None) -> CycleReport:
    """The whole cycle in plain Python (no Prefect): same steps, same state, same results."""
    say = progress or (lambda _m: None)
    setup = begin(settings)
    say(f"cycle {setup.cycle_id}{' (resumed)' if setup.resumed else ''}: champion prompt v{setup.champion_version}")
    try:
        clusters = triage_step(settings)
        chosen = prompt_clusters(clusters, settings)
        say(f"triage: {len(clusters)} clusters; drafting prompt revisions for {len(chosen)}")
        protected = protected_texts(settings)
        cands: list[Candidate] = []
        for cluster in chosen:
            cands += improve_prompt_step(settings, setup, cluster, protected)
        cands = unique_candidates(settings, cands)
        merged = merge_step(settings, setup, cands, chosen, protected)
        if merged:
            cands.append(merged)
        rag_candidate = improve_rag_step(settings, setup, rag_clusters(clusters, settings))
        if rag_candidate:
            cands.append(rag_candidate)
        tuned = improve_finetune_step(settings, setup, finetune_clusters(clusters))
        cands += tuned.candidates
        for note in tuned.notes:
            say(note)
        _crash_point("improve")
        say(f"evaluating the champion and {len(cands)} candidates on the golden set")
        champion, *rest = evaluate_step(settings, [variant_for(settings, setup, c) for c in (None, *cands)])
        results = {c.candidate_id: r for c, r in zip(cands, rest, strict=True)}
        _crash_point("evaluate")
        report = gate_step(settings, setup, champion, results, auto_approve)
        report.clusters = cluster_summaries(clusters, settings, setup.cycle_id)
        report.finetune = tuned.model_dump(mode="json", exclude={"candidates"})
    except EndpointFailed as exc:
        fail(settings, setup.cycle_id, str(exc))
        raise
    except KeyboardInterrupt:
        fail(settings, setup.cycle_id, "interrupted by a signal; `flywheel cycle` resumes it", status="interrupted")
        raise
    finish(settings, report)
    return report
