"""Running a variant on the golden set: concurrent, retried, cached, errors recorded not scored.

Concurrency is bounded by a semaphore over AsyncOpenAI calls (``eval.concurrency``); the SDK
retries 429, 5xx, connection errors and timeouts with exponential backoff (``llm_max_retries``).
An item that still fails is recorded with its error and left out of every score. Results are
cached by (variant, golden version, scorer setup): an unchanged champion is not re-run.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvloop
from pydantic import BaseModel

from evals.golden import GoldenItem, GoldenSet
from evals.pipeline import Answer, Variant
from evals.scorers import CODE_SCORERS, JUDGE_SCHEMA, Score, judge_messages, parse_judgement


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


def cache_key(variant: Variant, golden: GoldenSet, default_scorer: str, judge_model: str) -> str:
    return hashlib.sha256(f"{variant.key}|{golden.version}|{default_scorer}|{judge_model}".encode()).hexdigest()


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


def judge_with(client: Any, model: str) -> Callable[[str, str, str], Any]:
    async def judge(query: str, output: str, expected: str) -> Score:
        response = await client.chat.completions.create(
            model=model,
            messages=judge_messages(query, output, expected),
            temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "judgement", "schema": JUDGE_SCHEMA}},
        )
        return parse_judgement(response.choices[0].message.content or "")

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


def evaluate_many(
    variants: Sequence[Variant],
    golden: GoldenSet,
    answer_factory: Callable[[], tuple[Answer, Callable[..., Any] | None, Callable[[], Any]]],
    *,
    default_scorer: str,
    judge_model: str,
    concurrency: int,
    state: Any = None,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[EvalResult]:
    """Evaluate several variants as one batch: one client, one connection pool and one concurrency
    limit shared by all (the endpoint sees at most ``concurrency`` calls from this batch), and the
    cache consulted first, so an unchanged variant costs nothing.

    ``answer_factory`` builds (answer, judge, close) inside the event loop (AsyncOpenAI binds to it).
    """
    results: list[EvalResult | None] = [None] * len(variants)
    todo: list[int] = []
    for i, variant in enumerate(variants):
        key = cache_key(variant, golden, default_scorer, judge_model)
        if use_cache and state is not None and (hit := state.cached_eval(key)):
            results[i] = EvalResult.model_validate(hit).model_copy(update={"variant": variant, "cached": True})
        else:
            todo.append(i)

    async def main() -> list[tuple[list[EvalRow], float]]:
        answer, judge, close = answer_factory()
        gate = asyncio.Semaphore(concurrency)

        async def one_variant(variant: Variant) -> tuple[list[EvalRow], float]:
            start = time.perf_counter()
            rows = await run_items(list(golden.items), variant, answer, default_scorer=default_scorer,
                                   gate=gate, judge=judge, progress=progress)
            return rows, round(time.perf_counter() - start, 3)

        try:
            return list(await asyncio.gather(*(one_variant(variants[i]) for i in todo)))
        finally:
            await close()

    if todo:
        for i, (rows, seconds) in zip(todo, uvloop.run(main()), strict=True):
            result = EvalResult(variant=variants[i], golden_version=golden.version, rows=rows, seconds=seconds)
            if state is not None and result.errors == 0:
                state.cache_eval(cache_key(variants[i], golden, default_scorer, judge_model),
                                 result.model_dump(mode="json"))
            results[i] = result
    return [r for r in results if r is not None]


def evaluate(variant: Variant, golden: GoldenSet, answer_factory: Any, **kwargs: Any) -> EvalResult:
    """One variant (see :func:`evaluate_many`)."""
    return evaluate_many([variant], golden, answer_factory, **kwargs)[0]
