"""Golden-set evaluation in the cycle: the product pipeline per variant (champion or candidate),
in one batch here or cut into batches for a task runner."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel

from flywheel.candidates import Candidate
from flywheel.config import Settings
from flywheel.evals.answering import answer_factory, index_retrievers  # noqa: F401 - as callers import them
from flywheel.evals.fingerprint import EvalFingerprint
from flywheel.evals.golden import GoldenSet, load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import (
    BatchRows,
    EvalBatch,
    EvalResult,
    assemble,
    evaluate_many,
    from_cache,
    plan_batches,
    run_batch,
)
from flywheel.improvers.registry import improver
from flywheel.loop.context import CycleContext
from flywheel.runtime import Runtime
from flywheel.state import StateStore


def variant_for(ctx: CycleContext, cand: Candidate | None) -> Variant:
    """What the product runs on the golden set: the champion, or a candidate as its improver says."""
    if cand is None:
        return Variant(
            label="champion",
            prompt_template=ctx.champion_template,
            prompt_version=ctx.champion_version,
            model=ctx.champion_model or ctx.settings.target_model,
            index_version=ctx.index_version,
            pipeline=ctx.settings.eval.pipeline or "builtin",
        )
    return improver(cand.kind).variant(ctx, cand)


def fingerprint(settings: Settings, golden: GoldenSet) -> EvalFingerprint:
    """What the scores depend on besides the variants: the key of every read and write of the
    evaluation cache, here and on Dask."""
    return EvalFingerprint.of(settings, golden)


def evaluation_keys(settings: Settings, golden: GoldenSet, variants: Sequence[Variant]) -> list[str]:
    """The evaluation cache's keys of ``variants`` (a task cache keyed by them goes stale no sooner)."""
    fp = fingerprint(settings, golden)
    return [fp.key(v) for v in variants]


def evaluate_step(
    rt: Runtime,
    variants: Sequence[Variant],
    progress: Callable[[int], None] | None = None,
    golden: GoldenSet | None = None,
) -> list[EvalResult]:
    """One evaluation batch: the variants share a client and the concurrency limit; cached ones are free
    (the cache is the state store of the process's Runtime ``rt``). A cycle gives the golden set it
    began with; otherwise the configured one is read."""
    settings = rt.settings
    golden = golden or load_golden(settings.golden_file)
    with rt.borrow_state() as state:
        return evaluate_many(
            variants,
            golden,
            answer_factory(settings, _queries(golden)),
            default_scorer=settings.eval.default_scorer,
            concurrency=settings.eval.concurrency,
            state=state,
            fingerprint=fingerprint(settings, golden),
            use_cache=settings.eval.cache,
            progress=progress,
        )


class EvalPlan(BaseModel):
    """An evaluation cut into batches for a task runner; cached variants need none."""

    variants: list[Variant]
    cached: list[EvalResult | None]
    batches: list[EvalBatch]


def plan_evaluation(settings: Settings, state: StateStore, variants: Sequence[Variant], slots: int) -> EvalPlan:
    """Batches for a runner that runs ``slots`` of them at once (cached variants, from ``state``, need none)."""
    golden = load_golden(settings.golden_file)
    cached, todo = from_cache(
        variants, state=state, use_cache=settings.eval.cache, fingerprint=fingerprint(settings, golden)
    )
    batches = plan_batches(
        variants,
        todo,
        len(golden.items),
        batch_items=settings.runner.eval_batch_items,
        concurrency=settings.eval.concurrency,
        slots=slots,
    )
    return EvalPlan(variants=list(variants), cached=cached, batches=batches)


def evaluate_batch_step(settings: Settings, batch: EvalBatch) -> BatchRows:
    """One batch, wherever it runs: it needs the golden set, the endpoint and (for retrieval) the index."""
    golden = load_golden(settings.golden_file)
    return run_batch(
        batch, golden, answer_factory(settings, _queries(golden)), default_scorer=settings.eval.default_scorer
    )


def _queries(golden: GoldenSet) -> list[str]:
    return [item.input for item in golden.items]


def assemble_evaluation(
    settings: Settings, state: StateStore, plan: EvalPlan, parts: Sequence[BatchRows]
) -> list[EvalResult]:
    """The batches' rows as results, cached in ``state`` by the flow's process."""
    golden = load_golden(settings.golden_file)
    return assemble(plan.variants, golden, plan.cached, parts, state=state, fingerprint=fingerprint(settings, golden))
