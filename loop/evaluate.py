"""Golden-set evaluation in the cycle: the product pipeline per variant (champion or candidate),
in one batch here or cut into batches for a task runner."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from evals.fingerprint import EvalFingerprint
from evals.golden import GoldenSet, load_golden
from evals.pipeline import Answer, builtin_pipeline, load_user_pipeline, Variant
from evals.runner import assemble, BatchRows, EvalBatch, EvalResult, evaluate_many, from_cache, judge_with, plan_batches, run_batch
from flywheel.config import Settings
from flywheel.llm import make_async_client
from flywheel.candidates import Candidate, FinetunePayload, RagPayload
from flywheel.state import open_state
from loop.context import CycleContext


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


def variant_for(ctx: CycleContext, cand: Candidate | None) -> Variant:
    model = ctx.champion_model or ctx.settings.target_model
    pipeline = ctx.settings.eval.pipeline or "builtin"
    if cand is None:
        return Variant(label="champion", prompt_template=ctx.champion_template,
                       prompt_version=ctx.champion_version, model=model,
                       index_version=ctx.index_version, pipeline=pipeline)
    p = cand.payload
    if isinstance(p, RagPayload):  # the champion's prompt over the candidate index version
        return Variant(label=cand.candidate_id, prompt_template=ctx.champion_template,
                       prompt_version=ctx.champion_version, model=model,
                       index_version=cand.version, pipeline=pipeline)
    if isinstance(p, FinetunePayload):  # the champion's prompt and index, the fine-tuned model
        return Variant(label=cand.candidate_id, prompt_template=ctx.champion_template,
                       prompt_version=ctx.champion_version, model=p.model,
                       index_version=ctx.index_version, pipeline=pipeline)
    return Variant(label=cand.candidate_id, prompt_template=p.template, prompt_version=cand.version,
                   model=model, index_version=ctx.index_version, pipeline=pipeline)


def fingerprint(settings: Settings, golden: GoldenSet) -> EvalFingerprint:
    """What the scores depend on besides the variants: the key of every read and write of the
    evaluation cache, here and on Dask."""
    return EvalFingerprint.of(settings, golden)


def evaluation_keys(settings: Settings, golden: GoldenSet, variants: Sequence[Variant]) -> list[str]:
    """The evaluation cache's keys of ``variants`` (a task cache keyed by them goes stale no sooner)."""
    fp = fingerprint(settings, golden)
    return [fp.key(v) for v in variants]


def evaluate_step(settings: Settings, variants: Sequence[Variant], progress: Callable[[int], None] | None = None,
                  golden: GoldenSet | None = None) -> list[EvalResult]:
    """One evaluation batch: the variants share a client and the concurrency limit; cached ones are free.
    A cycle gives the golden set it began with; otherwise the configured one is read."""
    golden = golden or load_golden(settings.golden_file)
    with open_state(settings.home) as state:
        return evaluate_many(variants, golden, answer_factory(settings, _queries(golden)),
                             default_scorer=settings.eval.default_scorer, concurrency=settings.eval.concurrency,
                             state=state, fingerprint=fingerprint(settings, golden), use_cache=settings.eval.cache,
                             progress=progress)


class EvalPlan(BaseModel):
    """An evaluation cut into batches for a task runner; cached variants need none."""

    variants: list[Variant]
    cached: list[EvalResult | None]
    batches: list[EvalBatch]


def plan_evaluation(settings: Settings, variants: Sequence[Variant], slots: int) -> EvalPlan:
    """Batches for a runner that runs ``slots`` of them at once."""
    golden = load_golden(settings.golden_file)
    with open_state(settings.home) as state:
        cached, todo = from_cache(variants, state=state, use_cache=settings.eval.cache,
                                  fingerprint=fingerprint(settings, golden))
    batches = plan_batches(variants, todo, len(golden.items), batch_items=settings.runner.eval_batch_items,
                           concurrency=settings.eval.concurrency, slots=slots)
    return EvalPlan(variants=list(variants), cached=cached, batches=batches)


def evaluate_batch_step(settings: Settings, batch: EvalBatch) -> BatchRows:
    """One batch, wherever it runs: it needs the golden set, the endpoint and (for retrieval) the index."""
    golden = load_golden(settings.golden_file)
    return run_batch(batch, golden, answer_factory(settings, _queries(golden)),
                     default_scorer=settings.eval.default_scorer)


def _queries(golden: GoldenSet) -> list[str]:
    return [item.input for item in golden.items]


def assemble_evaluation(settings: Settings, plan: EvalPlan, parts: Sequence[BatchRows]) -> list[EvalResult]:
    golden = load_golden(settings.golden_file)
    with open_state(settings.home) as state:
        return assemble(plan.variants, golden, plan.cached, parts, state=state,
                        fingerprint=fingerprint(settings, golden))
