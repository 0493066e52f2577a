"""Running a variant on the golden set: concurrent, retried, cached, errors recorded not scored.

Concurrency is bounded by a semaphore over AsyncOpenAI calls (``eval.concurrency``); the SDK
retries 429, 5xx, connection errors and timeouts with exponential backoff (``llm_max_retries``).
An item that still fails is recorded with its error and left out of every score. Results are
cached by the variant and everything else the score depends on (:mod:`evals.fingerprint`:
endpoints, models, sampling, retrieval, prompt variables, golden version, scorers): an unchanged
champion is not re-run, and one on another endpoint is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvloop
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from flywheel.evals.fingerprint import EvalFingerprint
from flywheel.evals.golden import GoldenItem, GoldenSet
from flywheel.evals.pipeline import Answer, Variant
from flywheel.evals.scorers import CODE_SCORERS, JUDGE_SCHEMA, Score, judge_messages, parse_judgement
from flywheel.replies import achat_json


class EvalRow(BaseModel):
    id: str
    category: str
    input: str
    expected: str
    scorer: str
    output: str | None = None
    score: float | None = None
    rationale: str = ""
    error: str | None = None
    latency_ms: float | None = None


class EvalResult(BaseModel):
    variant: Variant
    golden_version: str
    rows: list[EvalRow]
    cached: bool = False
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return sum(1 for r in self.rows if r.error)

    @property
    def scores(self) -> dict[str, float]:
        return {r.id: r.score for r in self.rows if r.score is not None}

    @property
    def mean(self) -> float | None:
        s = self.scores
        return round(sum(s.values()) / len(s), 4) if s else None

    @property
    def categories(self) -> dict[str, str]:
        return {r.id: r.category for r in self.rows}

    def first_error(self) -> str | None:
        return next((f"{r.id}: {r.error}" for r in self.rows if r.error), None)


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"


async def _score(item: GoldenItem, scorer: str, output: str, judge: Callable[..., Any] | None) -> Score:
    if scorer == "judge":
        if judge is None:
            raise ValueError("scorer 'judge' needs an endpoint for the judge model")
        return await judge(item.input, output, item.expected)
    return CODE_SCORERS[scorer](output, item.expected)


JUDGE_ATTEMPTS = 3


def judge_with(client: Any, model: str) -> Callable[[str, str, str], Any]:
    """The golden-set judge. A reply that gives no usable grade (refused, cut off, no JSON, a score
    outside 0..1) is asked again, as sampling can answer differently; after ``JUDGE_ATTEMPTS`` the
    item errors with the last reason, never a guessed score. Endpoint errors keep the client's own
    retries and are not repeated here."""

    async def judge(query: str, output: str, expected: str) -> Score:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(ValueError), stop=stop_after_attempt(JUDGE_ATTEMPTS), reraise=True
        ):
            with attempt:
                reply = await achat_json(
                    client,
                    model,
                    judge_messages(query, output, expected),
                    name="judgement",
                    schema=JUDGE_SCHEMA,
                    temperature=0,
                )
                return parse_judgement(reply)
        raise AssertionError("unreachable: the last attempt returns or raises")

    return judge


async def run_items(
    items: list[GoldenItem],
    variant: Variant,
    answer: Answer,
    *,
    default_scorer: str,
    gate: asyncio.Semaphore,
    judge: Callable[..., Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[EvalRow]:
    async def one(item: GoldenItem) -> EvalRow:
        scorer = item.scorer or default_scorer
        row = EvalRow(id=item.id, category=item.category, input=item.input, expected=item.expected, scorer=scorer)
        start = time.perf_counter()
        try:
            async with gate:
                row.output = await answer(variant, item.input)
            row.latency_ms = round((time.perf_counter() - start) * 1000, 1)
            if scorer == "judge":  # an LLM call: it takes a slot like the product call did
                async with gate:
                    s = await _score(item, scorer, row.output, judge)
            else:
                s = await _score(item, scorer, row.output, judge)
            row.score, row.rationale = round(s.value, 4), s.rationale
        except Exception as exc:  # recorded per item; never silently scored
            row.error = _describe(exc)
        if progress:
            progress(1)
        return row

    return list(await asyncio.gather(*(one(i) for i in items)))


AnswerFactory = Callable[[], tuple[Answer, Callable[..., Any] | None, Callable[[], Any]]]


def from_cache(
    variants: Sequence[Variant], *, state: Any, use_cache: bool, fingerprint: EvalFingerprint | None
) -> tuple[list[EvalResult | None], list[int]]:
    """Cached results where a variant and everything its score depends on (``fingerprint``) are
    unchanged; the indexes still to run."""
    results: list[EvalResult | None] = [None] * len(variants)
    todo: list[int] = []
    for i, variant in enumerate(variants):
        if (
            use_cache
            and state is not None
            and fingerprint is not None
            and (hit := state.cached_eval(fingerprint.key(variant)))
        ):
            results[i] = EvalResult.model_validate(hit).model_copy(update={"variant": variant, "cached": True})
        else:
            todo.append(i)
    return results, todo


def _remember(result: EvalResult, state: Any, fingerprint: EvalFingerprint | None) -> None:
    if state is not None and fingerprint is not None and result.errors == 0:  # an errored item is retried, never cached
        state.cache_eval(fingerprint.key(result.variant), result.model_dump(mode="json"))


def _check_fingerprint(
    fingerprint: EvalFingerprint | None, state: Any, golden: GoldenSet, default_scorer: str | None = None
) -> None:
    """A cache is read and written only under the fingerprint of this very evaluation."""
    if state is None:
        return
    if fingerprint is None:
        raise ValueError("an evaluation with a cache needs the fingerprint of what its scores depend on")
    if fingerprint.golden_version != golden.version or default_scorer not in (None, fingerprint.default_scorer):
        raise ValueError("the evaluation's fingerprint is of another golden set or scorer setup")


def run_slices(
    slices: Sequence[tuple[Variant, Sequence[GoldenItem]]],
    answer_factory: AnswerFactory,
    *,
    default_scorer: str,
    concurrency: int,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[list[EvalRow], float]]:
    """Run each (variant, items) slice; all share one client and one concurrency limit. Returns rows
    and seconds per slice. ``answer_factory`` builds (answer, judge, close) inside the event loop
    (AsyncOpenAI binds to it)."""

    async def main() -> list[tuple[list[EvalRow], float]]:
        answer, judge, close = answer_factory()
        gate = asyncio.Semaphore(concurrency)

        async def one_slice(variant: Variant, items: Sequence[GoldenItem]) -> tuple[list[EvalRow], float]:
            start = time.perf_counter()
            rows = await run_items(
                list(items), variant, answer, default_scorer=default_scorer, gate=gate, judge=judge, progress=progress
            )
            return rows, round(time.perf_counter() - start, 3)

        try:
            return list(await asyncio.gather(*(one_slice(v, items) for v, items in slices)))
        finally:
            await close()

    return uvloop.run(main()) if slices else []


def evaluate_many(
    variants: Sequence[Variant],
    golden: GoldenSet,
    answer_factory: AnswerFactory,
    *,
    default_scorer: str,
    concurrency: int,
    state: Any = None,
    fingerprint: EvalFingerprint | None = None,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[EvalResult]:
    """Evaluate several variants as one batch: one client, one connection pool and one concurrency
    limit shared by all (the endpoint sees at most ``concurrency`` calls from this batch), and the
    cache (``state``, keyed by ``fingerprint``) consulted first, so an unchanged variant costs nothing."""
    _check_fingerprint(fingerprint, state, golden, default_scorer)
    results, todo = from_cache(variants, state=state, use_cache=use_cache, fingerprint=fingerprint)
    ran = run_slices(
        [(variants[i], golden.items) for i in todo],
        answer_factory,
        default_scorer=default_scorer,
        concurrency=concurrency,
        progress=progress,
    )
    for i, (rows, seconds) in zip(todo, ran, strict=True):
        result = EvalResult(variant=variants[i], golden_version=golden.version, rows=rows, seconds=seconds)
        results[i] = result
        _remember(result, state, fingerprint)
    return [r for r in results if r is not None]


# --- batches, for running one evaluation across several processes or machines (Dask) -------------
class EvalBatch(BaseModel):
    """One task's share of an evaluation: golden items [start, stop) of one variant."""

    variant_index: int
    variant: Variant
    start: int
    stop: int
    concurrency: int


class BatchRows(BaseModel):
    variant_index: int
    start: int
    rows: list[EvalRow]
    seconds: float
    worker: str = ""  # host:pid that ran it, for the operator and the tests


def plan_batches(
    variants: Sequence[Variant], todo: Sequence[int], n_items: int, *, batch_items: int, concurrency: int, slots: int
) -> list[EvalBatch]:
    """Cut each variant still to run into batches of ``batch_items`` golden items. At most ``slots``
    batches run at once (the cluster's worker threads), so each may have ``concurrency / slots``
    calls in flight (at least one): together they stay within the endpoint's limit."""
    spans = [(i, start, min(start + batch_items, n_items)) for i in todo for start in range(0, n_items, batch_items)]
    per_batch = max(1, concurrency // max(1, min(len(spans), slots)))
    return [
        EvalBatch(variant_index=i, variant=variants[i], start=a, stop=b, concurrency=per_batch) for i, a, b in spans
    ]


def run_batch(batch: EvalBatch, golden: GoldenSet, answer_factory: AnswerFactory, *, default_scorer: str) -> BatchRows:
    import os
    import socket

    ((rows, seconds),) = run_slices(
        [(batch.variant, golden.items[batch.start : batch.stop])],
        answer_factory,
        default_scorer=default_scorer,
        concurrency=batch.concurrency,
    )
    return BatchRows(
        variant_index=batch.variant_index,
        start=batch.start,
        rows=rows,
        seconds=seconds,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def assemble(
    variants: Sequence[Variant],
    golden: GoldenSet,
    cached: Sequence[EvalResult | None],
    parts: Sequence[BatchRows],
    *,
    state: Any = None,
    fingerprint: EvalFingerprint | None = None,
) -> list[EvalResult]:
    """Put batches back together in golden-set order, one result per variant (cached ones as they
    were); new results go into the cache (``state``) under ``fingerprint``."""
    _check_fingerprint(fingerprint, state, golden)
    by_variant: dict[int, list[BatchRows]] = {}
    for part in parts:
        by_variant.setdefault(part.variant_index, []).append(part)
    results = list(cached)
    for i, pieces in by_variant.items():
        pieces.sort(key=lambda p: p.start)
        rows = [row for p in pieces for row in p.rows]
        if [r.id for r in rows] != [item.id for item in golden.items]:
            raise ValueError(f"evaluation batches of {variants[i].label} do not cover the golden set exactly")
        result = EvalResult(
            variant=variants[i],
            golden_version=golden.version,
            rows=rows,
            seconds=round(max(p.seconds for p in pieces), 3),
        )
        results[i] = result
        _remember(result, state, fingerprint)
    missing = [variants[i].label for i, r in enumerate(results) if r is None]
    if missing:
        raise ValueError(f"no evaluation result for {', '.join(missing)}")
    return [r for r in results if r is not None]


def evaluate(variant: Variant, golden: GoldenSet, answer_factory: Any, **kwargs: Any) -> EvalResult:
    """One variant (see :func:`evaluate_many`)."""
    return evaluate_many([variant], golden, answer_factory, **kwargs)[0]
