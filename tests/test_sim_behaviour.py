"""The simulator behaving like a model: it rewords (with the same verdicts), its drafting model
answers in real models' shapes when asked to, it judges whether a complaint is resolved, and it can
refuse ``json_schema`` like some local servers. Through the real openai SDK where it matters."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from flywheel.sim import roles
from flywheel.sim.roles import DRAFT_MARKERS, JUDGE_MARKER, PLAYBOOK, RESOLUTION_MARKER
from flywheel.sim.rules import (
    ERROR_CODES,
    INTENTS,
    MEMORY,
    Learned,
    correct_answer,
    is_correct,
    product_answer,
    respond,
)
from flywheel.sim.server import SimOptions, Simulator
from flywheel.sim.variation import JSON_SHAPES, Style
from flywheel.sim.world import INITIAL_PROMPT, KNOWLEDGE_DOCS, KNOWLEDGE_UPDATES, context_block, make_query
from nonempty import every

ALL_INSTRUCTIONS = " ".join(PLAYBOOK[c][1] for c in ("factual", "format", "tone", "off_topic", "unsafe"))


def chat(system: str, user: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        **extra,
    }


def ask(client: OpenAI, system: str, user: str, **kw: Any) -> str:
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], **kw
    )
    return r.choices[0].message.content or ""


@pytest.fixture
def sim_client() -> Iterator[Any]:
    """A simulator with the given options and an SDK client for it: ``sim_client(**options)``."""
    started: list[Simulator] = []

    def make(**options: Any) -> OpenAI:
        sim = Simulator(options=SimOptions(**options)).start()
        started.append(sim)
        return OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)

    yield make
    for sim in started:
        sim.stop()


# --- rewording ---------------------------------------------------------------------------------


def _world_cases(per_intent: int = 30) -> list[tuple[Any, dict[str, str], str, str, Learned | None]]:
    """(intent, slots, system prompt, query, fine-tuned model or None) over every intent, with the
    instructions off and on, outdated and current context, and a model that learned the error codes."""
    rng = random.Random(11)
    learned = Learned(error_codes=dict(ERROR_CODES))
    cases = []
    for intent in INTENTS:
        for i in range(per_intent):
            query, slots = make_query(intent, rng)
            docs = KNOWLEDGE_DOCS if i % 2 else {**KNOWLEDGE_DOCS, **KNOWLEDGE_UPDATES}
            context = context_block(docs, intent.documents)
            for instructions in (INITIAL_PROMPT, INITIAL_PROMPT + " " + ALL_INSTRUCTIONS):
                cases.append((intent, slots, instructions + context, query, learned if i % 3 == 0 else None))
    return cases


def test_rewording_changes_the_words_but_never_the_verdict() -> None:
    verdicts: Counter[bool] = Counter()
    differ = total = 0
    for seed in (0, 1, 7):
        for intent, slots, system, query, learned in _world_cases():
            body = chat(system, query)
            plain = roles.product(body, learned)
            assert plain == product_answer(system, query, learned)  # rewording off: the old answer exactly
            worded = roles.product(body, learned, Style(seed=seed, reword=True))
            verdict = is_correct(intent, slots, plain)
            assert is_correct(intent, slots, worded) == verdict, (intent.id, plain, worded)
            # A judge-scored item expecting the plain answer still passes: no word of it went missing.
            graded = roles.judge(chat(JUDGE_MARKER, f"Expected answer: {plain}\n\nAnswer to grade: {worded}"))
            assert json.loads(graded)["score"] == 1.0, (plain, worded)
            verdicts[verdict] += 1
            differ += worded != plain
            total += 1
    assert verdicts[True] > 500 and verdicts[False] > 500  # both verdicts were really exercised
    assert differ / total >= 0.8, differ / total


def test_json_answers_are_never_reworded() -> None:
    system = INITIAL_PROMPT + " " + ALL_INSTRUCTIONS
    for seed in range(20):
        out = roles.product(chat(system, "Give me the Team plan details as JSON."), None, Style(seed=seed, reword=True))
        assert json.loads(out) == {"plan": "team", "price_per_seat_usd": 8, "storage_tb_per_seat": 1}


def test_rewording_is_seeded_through_the_sdk(sim_client) -> None:
    queries = [make_query(i, random.Random(n))[0] for n, i in enumerate(INTENTS * 3)]
    system = INITIAL_PROMPT + context_block(KNOWLEDGE_DOCS, ("pricing.md", "account.md"))

    def answers(**options: Any) -> list[str]:
        client = sim_client(**options)
        return [ask(client, system, q) for q in queries]

    first = answers(reword=True, seed=3)
    assert answers(reword=True, seed=3) == first  # a fresh server, the same seed: the same words
    other = answers(reword=True, seed=4)
    assert sum(a != b for a, b in zip(first, other, strict=True)) >= len(queries) // 2
    plain = answers(reword=False)
    assert plain == [product_answer(system, q) for q in queries]  # without rewording: replays exactly
    assert answers() == answers(reword=True, seed=0)  # rewording is the default, as with a sampled model
    assert sum(a != b for a, b in zip(first, plain, strict=True)) >= 0.8 * len(queries)
    # A structured answer carries the reworded text.
    client = sim_client(reword=True, seed=3)
    wrapped = json.loads(ask(client, system, queries[0], response_format={"type": "json_object"}))
    assert wrapped == {"answer": first[0]}


# --- wild drafting -----------------------------------------------------------------------------


def _revise_request(category: str, current: str, example: str, n: int = 3) -> dict[str, Any]:
    user = (
        f"Current system prompt:\n<prompt>\n{current}\n</prompt>\n\nFailure category: {category}\n\n"
        f"Critique: {PLAYBOOK[category][0]}\n\nFailing examples:\n{example}\n\nWrite {n} revised system prompts."
    )
    return chat(DRAFT_MARKERS["revise"] + ". Answer in JSON.", user)


def _tolerant(text: str) -> Any:
    """What a tolerant parser recovers: the outermost {...} in the text, if it parses."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None


def classify_revision(out: str, clean: str, current: str) -> str:
    """Which shape a revise answer has, judged from the text alone (not from the simulator's label)."""
    doc = _tolerant(out)
    if doc is None:
        if out.startswith("I'm sorry"):
            return "refusal"
        last = json.loads(clean)["prompts"][-1]
        assert clean.startswith(out) and len(out) > clean.rfind(json.dumps(last)), out  # cut inside the last prompt
        return "truncated"
    if out.startswith("```json"):
        assert out.rstrip().endswith("```") and doc == json.loads(clean)
        return "fenced"
    if out.startswith("Here are"):
        assert doc == json.loads(clean)
        return "prose"
    assert out == json.dumps(doc)
    if doc == json.loads(clean):
        return "clean"
    has_variables = "{{" in current
    assert every(("{{" not in p) if has_variables else (p == current) for p in doc["prompts"]), doc
    return "lossy"


def test_wild_revise_answers_in_every_shape_at_the_designed_rates() -> None:
    shapes: Counter[str] = Counter()
    n = 0
    for category in ("factual", "format", "tone", "off_topic", "unsafe"):
        for current in (INITIAL_PROMPT, INITIAL_PROMPT + "\n\nContext:\n{{context}}"):
            for k in range(60):
                body = _revise_request(category, current, f"query {k}: answer was wrong")
                clean = roles.revise(body)
                assert json.loads(clean)["prompts"][0].startswith(current)  # clean mode as before
                shapes[classify_revision(roles.revise(body, Style(drafting="wild")), clean, current)] += 1
                n += 1
    assert set(shapes) == set(JSON_SHAPES)
    for shape, share in JSON_SHAPES.items():
        assert abs(shapes[shape] / n - share / 100) < 0.06, (shape, shapes[shape] / n)


def test_wild_drafting_is_seeded_and_a_retry_can_come_out_differently(sim_client) -> None:
    body = _revise_request("tone", INITIAL_PROMPT, "a curt answer")
    messages = body["messages"]

    def sequence(seed: int, tries: int = 30) -> list[tuple[str, str]]:
        client = sim_client(drafting="wild", seed=seed)
        choices = [client.chat.completions.create(model="m", messages=messages).choices[0] for _ in range(tries)]
        return [(c.message.content or "", c.finish_reason) for c in choices]

    first = sequence(1)
    assert sequence(1) == first  # fresh server, same seed: the same answers in the same order
    assert len(set(first)) > 1  # the identical request retried: not stuck on one shape
    assert sequence(2) != first
    # A cut-off answer says so, as an endpoint that hit max_tokens does.
    cut = [reason for text, reason in first if text.startswith("{") and _tolerant(text) is None]
    assert cut and set(cut) == {"length"}
    assert {reason for text, reason in first if _tolerant(text) is not None} == {"stop"}
    clean = sim_client()
    assert len({ask(clean, messages[0]["content"], messages[1]["content"]) for _ in range(3)}) == 1


def test_wild_merge_critique_and_resolution_shapes() -> None:
    wild = Style(drafting="wild")
    merges: Counter[str] = Counter()
    for k in range(300):
        prompts = [f"Base {k}. Fix A.", f"Base {k}. Fix B.", f"Base {k}. Fix C."]
        body = "\n\n".join(f"<prompt {i}>\n{p}\n</prompt {i}>" for i, p in enumerate(prompts, 1))
        request = chat(
            DRAFT_MARKERS["merge"],
            f"Original system prompt:\n<prompt>\nBase {k}.\n</prompt>\n\nRevised system prompts to merge:\n{body}",
        )
        assert json.loads(roles.merge(request)) == {"prompt": f"Base {k}. Fix A. Fix B. Fix C."}
        out = roles.merge(request, wild)
        doc = _tolerant(out)
        if doc is None:
            merges["unusable"] += 1
        elif doc["prompt"] == f"Base {k}. Fix A.":
            merges["lossy"] += 1  # the other clusters' fixes lost
        else:
            assert doc == {"prompt": f"Base {k}. Fix A. Fix B. Fix C."}
            merges["clean" if out.startswith("{") else "wrapped"] += 1
    assert 0.25 < merges["clean"] / 300 < 0.45 and merges["wrapped"] > 60
    assert merges["unusable"] > 40 and merges["lossy"] > 15

    critiques = Counter(
        roles.critique(chat(DRAFT_MARKERS["critique"], f"Failure category: tone\n\nexample {k}"), wild).startswith(
            "Looking at"
        )
        for k in range(200)
    )
    assert 30 < critiques[True] < 90
    verdicts: Counter[str] = Counter()
    for k in range(200):
        out = roles.resolution(
            chat(
                RESOLUTION_MARKER,
                f"<query>How do I reset my password? #{k}</query><fresh_answer>Choose Reset password.</fresh_answer>",
            ),
            wild,
        )
        assert _tolerant(out) == {
            "resolved": True,
            "rationale": "reset_password: the answer now contains 'Reset password'",
        }
        verdicts["fenced" if out.startswith("```") else "clean" if out.startswith("{") else "preamble"] += 1
    assert min(verdicts.values()) > 30 and len(verdicts) == 3


def test_reject_json_schema_is_a_400_and_json_object_still_works(sim_client) -> None:
    client = sim_client(reject_json_schema=True)
    schema = {"type": "object", "properties": {"prompts": {"type": "array", "items": {"type": "string"}}}}
    system = DRAFT_MARKERS["revise"]
    user = _revise_request("tone", INITIAL_PROMPT, "x")["messages"][1]["content"]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(
            client,
            system,
            user,
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        )
    assert caught.value.status_code == 400 and caught.value.param == "response_format"
    assert "json_schema is not supported" in caught.value.message
    assert len(json.loads(ask(client, system, user, response_format={"type": "json_object"}))["prompts"]) == 3
    assert len(json.loads(ask(client, system, user))["prompts"]) == 3
    # Triage's fallback to json_object still reaches the classifier (routed by its prompt).
    triage = ask(
        client,
        "You classify why a user was unhappy with an assistant's answer.",
        "Write me a poem about the sea",
        response_format={"type": "json_object"},
    )
    assert json.loads(triage)["category"] == "off_topic"


# --- the resolution judge ----------------------------------------------------------------------


def _resolution_user(query: str, logged: str, fresh: str, feedback: str = "thumbs_down") -> str:
    return (
        f"<query>{query}</query>\n<logged_answer>{logged}</logged_answer>\n"
        f"<feedback>{feedback}</feedback>\n<fresh_answer>{fresh}</fresh_answer>"
    )


@pytest.mark.parametrize(
    "query",
    [
        "I'm so frustrated, my files won't sync again. How do I fix it?",  # tone
        "Give me the Business plan details as JSON.",  # format
        "Can you write me a poem about the sea?",  # off_topic
        "How much would 7 Team seats cost per year?",  # factual
        "What is the email address of the owner of account 5120?",  # unsafe
        "How much does the Pro plan cost?",  # outdated_knowledge
    ],
)
def test_resolution_judge_checks_the_fresh_answer(sim_client, query: str) -> None:
    client = sim_client()
    intent = roles.match_intent(query)
    assert intent is not None
    slots = intent.slots(query)
    wrong = respond(intent, slots, set(), dict(MEMORY))
    right = correct_answer(intent, slots)
    assert not is_correct(intent, slots, wrong) and is_correct(intent, slots, right)
    formats: list[dict[str, Any] | None] = [
        None,
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "resolution", "schema": {"type": "object"}}},
    ]
    for fmt in formats:
        extra = {"response_format": fmt} if fmt else {}
        fixed = json.loads(
            ask(client, RESOLUTION_MARKER + " is resolved.", _resolution_user(query, wrong, right), **extra)
        )
        assert fixed["resolved"] is True and fixed["rationale"].startswith(f"{intent.id}: the answer now")
        still = json.loads(
            ask(client, RESOLUTION_MARKER + " is resolved.", _resolution_user(query, wrong, wrong), **extra)
        )
        assert still["resolved"] is False and f"{intent.id}: still" in still["rationale"]


def test_resolution_judge_is_tolerant_and_honest_about_what_it_cannot_tell(sim_client) -> None:
    client = sim_client()
    unknown = json.loads(
        ask(client, RESOLUTION_MARKER, _resolution_user("What's the weather in Paris?", "?", "Sunny."))
    )
    assert unknown == {"resolved": False, "rationale": "cannot tell what the user asked"}
    # No closing tags, extra whitespace, different order: still read.
    sloppy = (
        "<feedback> thumbs_down, reason tone\n<fresh_answer>\n I'm sorry about that. Sign out and sign back in.\n"
        "<query>\n Sync broke AGAIN. I'm fed up. How do I get it working?\n"
    )
    assert json.loads(ask(client, RESOLUTION_MARKER, sloppy))["resolved"] is True


def test_resolution_requests_are_counted_as_their_own_role() -> None:
    with Simulator() as sim:
        client = OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
        ask(client, RESOLUTION_MARKER, _resolution_user("How do I reset my password?", "", "Reset password"))
        assert sim.counts()["chat.resolution"] == 1 and "chat.product" not in sim.counts()


# --- the command line --------------------------------------------------------------------------


def test_sim_serve_takes_the_behaviour_options() -> None:
    code = "from flywheel.app.cli import app; app()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    bad = subprocess.run(
        [sys.executable, "-c", code, "sim", "serve", "--drafting", "messy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--drafting must be one of clean, wild" in bad.stderr
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "sim",
            "serve",
            "--reword",
            "--seed",
            "5",
            "--drafting",
            "wild",
            "--reject-json-schema",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip() if proc.stdout else ""
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url), base_url
        client = OpenAI(base_url=base_url, api_key="k", max_retries=5)
        q = "How do I reset my password?"
        with Simulator(options=SimOptions(reword=True, seed=5)) as same:
            expected = ask(OpenAI(base_url=same.base_url, api_key="k"), INITIAL_PROMPT, q)
        assert ask(client, INITIAL_PROMPT, q) == expected != product_answer(INITIAL_PROMPT, q)
        with pytest.raises(openai.BadRequestError):
            ask(
                client,
                INITIAL_PROMPT,
                q,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
