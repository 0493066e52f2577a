"""The model-fit check: ask the product model some golden inputs with the prompt and look at what
comes back, before a cycle spends its budget on it.

Two signs that the endpoint's model is not the product's (the simulator, asked about cooking,
answers about its own cloud-storage world and nothing said so): one answer for most items whose
expected answers differ, and scores of about zero everywhere. Both are warnings: a cycle can run,
but nothing it measures would mean much."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

import openai
from pydantic import BaseModel
from rapidfuzz import fuzz

from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.evals.golden import GoldenItem
from flywheel.evals.pipeline import Answer, Variant, builtin_pipeline, load_user_pipeline
from flywheel.evals.scorers import CODE_SCORERS
from flywheel.llm import endpoint
from flywheel.loop.checks.golden_set import GoldenCheck
from flywheel.loop.checks.problems import Check, Problem, error, warning

FIT_ITEMS = 20  # golden inputs asked at most
SAME_ANSWER_SHARE = 0.6  # one answer (up to rewording) for this share of the items is suspicious
NEAR_SAME = 80  # rapidfuzz token-set similarity at which two answers count as one (openers, closers aside)
ZERO_SCORE = 0.05  # a mean code-scorer score at or below this is "about zero"
FIT_TIMEOUT = 30.0
_FIX = (
    "check that target_model names your product's model, that the endpoint is the one your product uses, and "
    "that the prompt describes your product (a simulator knows only its own product)"
)


class Asked(BaseModel):
    """One golden item as the model answered it (or the error it gave instead)."""

    item: GoldenItem
    answer: str | None = None
    error: str | None = None


def sample_items(items: Sequence[GoldenItem], n: int = FIT_ITEMS) -> list[GoldenItem]:
    """Up to ``n`` items taken in turn from each category, so no one category fills the sample."""
    by_category: dict[str, list[GoldenItem]] = defaultdict(list)
    for item in items:
        by_category[item.category].append(item)
    queues = list(by_category.values())
    picked: list[GoldenItem] = []
    while len(picked) < n and any(queues):
        picked += [q.pop(0) for q in queues if q][: n - len(picked)]
    return picked


def check_model_fit(settings: Settings, template: str, golden: GoldenCheck) -> list[Problem]:
    items = sample_items(golden.items)
    if not items:
        return []
    try:
        asked = asyncio.run(ask(settings, template, items))
    except UsageError as exc:  # eval.pipeline that cannot be loaded
        return [error(Check.MODEL_FIT, str(exc), "fix eval.pipeline in flywheel.toml: 'package.module:function'")]
    path = str(settings.golden_file)
    failed = [a for a in asked if a.error is not None]
    if len(failed) == len(asked):
        return [
            error(
                Check.MODEL_FIT,
                f"model {settings.target_model!r} answered none of {len(asked)} golden inputs: {failed[0].error}",
                "set target_model (FLYWHEEL_TARGET_MODEL) to a model the endpoint serves",
                path,
            )
        ]
    problems: list[Problem] = []
    if failed:
        problems.append(
            warning(
                Check.MODEL_FIT,
                f"{len(failed)} of {len(asked)} golden inputs got an error instead of "
                f"an answer, e.g. {failed[0].item.id!r}: {failed[0].error}",
                "check the endpoint's logs; a cycle counts such items as errors, never as scores",
                path,
            )
        )
    answered = [a for a in asked if a.answer is not None]
    scorer = settings.eval.default_scorer
    return problems + _same_answer(answered, golden, scorer, path) + _zero_scores(answered, golden, scorer, path)


def active_index(settings: Settings) -> str | None:
    """The index version production retrieves from, or None (no state yet: nothing is created)."""
    if not settings.state_path.exists():
        return None
    from flywheel.candidates import ChampionKind
    from flywheel.champions import champion
    from flywheel.runtime import runtime_for

    with runtime_for(settings).borrow_state() as state:  # it exists: the process's store
        return champion(settings, state, ChampionKind.rag).current()


async def ask(settings: Settings, template: str, items: Sequence[GoldenItem]) -> list[Asked]:
    """The product pipeline (built-in or the team's own) on each item's input, a few at a time, as
    the product runs it: the system prompt carries the passages the active index retrieves (a RAG
    product asked without them answers "I don't know" and looks like the wrong model)."""
    from flywheel.loop.evaluate import index_retrievers

    url, key = endpoint(settings, purpose="the model-fit check")
    client = openai.AsyncOpenAI(
        base_url=url, api_key=key, timeout=min(settings.llm_timeout, FIT_TIMEOUT), max_retries=1
    )
    index_version = active_index(settings)
    answer: Answer = (
        load_user_pipeline(settings.eval.pipeline)
        if settings.eval.pipeline
        else builtin_pipeline(
            client,
            settings.prompt_variables,
            index_retrievers(settings, [i.input for i in items]),
            temperature=settings.eval.temperature,
            max_tokens=settings.eval.max_tokens,
            k=settings.knowledge.retrieval_k,
        )
    )
    variant = Variant(
        label="validate",
        prompt_template=template,
        model=settings.target_model,
        index_version=index_version,
        pipeline=settings.eval.pipeline or "builtin",
    )
    gate = asyncio.Semaphore(min(settings.eval.concurrency, 8))

    async def one(item: GoldenItem) -> Asked:
        async with gate:
            try:
                return Asked(item=item, answer=await answer(variant, item.input))
            except Exception as exc:  # an endpoint error is a finding here, not a crash
                return Asked(item=item, error=f"{type(exc).__name__}: {str(exc)[:160]}")

    try:
        return list(await asyncio.gather(*(one(i) for i in items)))
    finally:
        await client.close()


def _same_answer(answered: list[Asked], golden: GoldenCheck, default_scorer: str, path: str) -> list[Problem]:
    group = _largest_group([a.answer or "" for a in answered])
    members = [answered[i] for i in group]
    if len(members) < max(3, SAME_ANSWER_SHARE * len(answered)):
        return []
    if len({m.item.expected for m in members}) == 1 or _mean_score(members, default_scorer) >= 0.5:
        return []  # the items expect that one answer, or it is right: nothing wrong
    first = members[0]
    return [
        warning(
            Check.MODEL_FIT,
            f"the model gave nearly the same answer to {len(members)} of {len(answered)} golden "
            f"inputs that expect different answers: {_clip(first.answer)}",
            _FIX,
            path,
            golden.lines.get(first.item.id),
        )
    ]


def _zero_scores(answered: list[Asked], golden: GoldenCheck, default_scorer: str, path: str) -> list[Problem]:
    scored = [a for a in answered if (a.item.scorer or default_scorer) in CODE_SCORERS]
    mean = _mean_score(scored, default_scorer)
    if len(scored) < 3 or mean > ZERO_SCORE:
        return []
    example = scored[0]
    return [
        warning(
            Check.MODEL_FIT,
            f"{len(scored)} golden items scored {mean:.2f} on average: the model seems to "
            f"answer about something else (item {example.item.id!r} expects {_clip(example.item.expected)}, "
            f"the model answered {_clip(example.answer)})",
            _FIX + "; or the expected answers do not match how a right answer is worded",
            path,
            golden.lines.get(example.item.id),
        )
    ]


def _largest_group(answers: list[str]) -> list[int]:
    """Indices of the biggest set of answers that are one answer up to openers, closers and small edits."""
    normal = [" ".join(a.lower().split()) for a in answers]
    groups: list[list[int]] = []
    for i, text in enumerate(normal):
        home = next((g for g in groups if fuzz.token_set_ratio(normal[g[0]], text) >= NEAR_SAME), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return max(groups, key=len, default=[])


def _mean_score(asked: list[Asked], default_scorer: str) -> float:
    scores = [
        CODE_SCORERS[a.item.scorer or default_scorer](a.answer or "", a.item.expected).value
        for a in asked
        if (a.item.scorer or default_scorer) in CODE_SCORERS
    ]
    return sum(scores) / len(scores) if scores else 0.0


def _clip(text: str | None, limit: int = 100) -> str:
    text = " ".join((text or "").split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
