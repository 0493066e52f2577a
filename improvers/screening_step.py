"""Screening a drafted prompt on its cluster's failing examples: the product's fresh answers, and
the judge's verdict on whether each complaint is resolved."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import uvloop

from flywheel.config import Settings
from flywheel.evals.answering import answer_factory
from flywheel.evals.fingerprint import Endpoint
from flywheel.evals.pipeline import Variant
from flywheel.improvers.context import CycleContext, short_hash
from flywheel.improvers.screening import (
    VERDICT_SCHEMA,
    FailingExample,
    Screening,
    Verdict,
    parse_verdict,
    resolution_messages,
    screen,
)
from flywheel.llm import make_async_client
from flywheel.replies import achat_json
from flywheel.schemas import StoredEvent
from flywheel.state import StateStore


def failing_examples(events: Sequence[StoredEvent], limit: int, complaint: str | None = None) -> list[FailingExample]:
    """Consented events only (the privacy rule), the most informative first, deterministic order.
    ``complaint`` (a diagnosed cluster's root cause) stands in for the reason on events without one."""
    usable = [e for e in events if e.consent]
    usable.sort(
        key=lambda e: (-(bool(e.correction) or bool(e.final_text)), -bool(e.reason), -bool(e.comment), e.ts, e.event_id)
    )
    seen: set[str] = set()
    out = []
    for e in usable:
        if e.query in seen:
            continue
        seen.add(e.query)
        better = e.correction or (e.final_text if e.signal == "edit" else None)
        out.append(
            FailingExample(
                query=e.query,
                output=e.output,
                signal=e.signal,
                reason=e.reason,
                comment=e.comment,
                better=better,
                value=e.value,
                diagnosed=complaint if e.reason in (None, "other") else None,
            )
        )
        if len(out) == limit:
            break
    return out


def answer_queries(
    settings: Settings,
    template: str,
    queries: Sequence[str],
    index_version: str | None = None,
    model: str | None = None,
) -> list[str]:
    """Run the product pipeline with ``template`` (over ``index_version``) on a few queries, for
    screening; errors propagate."""

    async def main() -> list[str]:
        answer, _, close = answer_factory(settings)()
        try:
            variant = Variant(
                label="screening",
                prompt_template=template,
                model=model or settings.target_model,
                index_version=index_version,
            )
            gate = asyncio.Semaphore(settings.eval.concurrency)

            async def one(q: str) -> str:
                async with gate:
                    return await answer(variant, q)

            return list(await asyncio.gather(*(one(q) for q in queries)))
        finally:
            await close()

    return uvloop.run(main())


def judge_resolutions(
    settings: Settings, state: StateStore, examples: Sequence[FailingExample], outputs: Sequence[str]
) -> list[Verdict]:
    """The judge's verdict per (failing example, fresh answer): concurrent under the evaluation's
    limit, retried by the SDK, and cached in ``state`` (the same answer to the same complaint
    is judged once by the same judge, also across a resumed cycle; the judge is its endpoint and
    model, so another endpoint judges afresh)."""
    judge = Endpoint.judge(settings).digest
    keys = [
        short_hash("resolution", judge, e.query, e.output, e.feedback_text(), e.better or "", out)
        for e, out in zip(examples, outputs, strict=True)
    ]
    cached = {k: doc for k in keys if (doc := state.cached_eval("screen:" + k)) is not None}

    async def main() -> dict[str, Verdict]:
        client = make_async_client(settings, purpose="screening")
        gate = asyncio.Semaphore(settings.eval.concurrency)
        try:

            async def one(e: FailingExample, out: str) -> Verdict:
                async with gate:
                    reply = await achat_json(
                        client,
                        settings.judge_model,
                        resolution_messages(e, out),
                        name="resolution",
                        schema=VERDICT_SCHEMA,
                        temperature=0,
                    )
                return parse_verdict(reply)

            todo = [(k, e, out) for k, e, out in zip(keys, examples, outputs, strict=True) if k not in cached]
            verdicts = await asyncio.gather(*(one(e, out) for _, e, out in todo))
            return {k: v for (k, _, _), v in zip(todo, verdicts, strict=True)}
        finally:
            await client.close()

    fresh = uvloop.run(main()) if len(cached) < len(set(keys)) else {}
    for k, verdict in fresh.items():
        state.cache_eval("screen:" + k, verdict.model_dump())
    return [fresh[k] if k in fresh else Verdict.model_validate(cached[k]) for k in keys]


def screen_template(ctx: CycleContext, template: str, examples: Sequence[FailingExample]) -> Screening:
    """A prompt's judged answers on failing examples (the merge check uses it)."""
    outputs = answer_queries(ctx.settings, template, [e.query for e in examples], ctx.index_version, ctx.champion_model)
    return screen(outputs, examples, lambda exs, outs: judge_resolutions(ctx.settings, ctx.runtime.state, exs, outs))
