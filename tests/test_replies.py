"""Reading real models' JSON replies, and merging winners' edits without a model."""

from __future__ import annotations

import pytest

from flywheel.improvers.prompt import combine_edits
from flywheel.improvers.screening import parse_verdict
from flywheel.replies import ReplyProblem, json_object

CLEAN = '{"prompts": ["You help. Apologize first.", "You help. Be kind."]}'


@pytest.mark.parametrize(
    "reply",
    [
        CLEAN,
        f"```json\n{CLEAN}\n```",
        f"Here are two revised prompts:\n\n{CLEAN}\n\nLet me know if you want more.",
        f"Sure!\n```\n{CLEAN}\n```",
        '{"prompts": ["Use \\"quotes\\" and {braces} inside strings."]}',
    ],
)
def test_the_json_object_is_found_wherever_the_model_put_it(reply: str) -> None:
    assert isinstance(json_object(reply)["prompts"], list)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ('{"prompts": ["You help. Apologize first.", "You help. Be ki', "cut off"),
        ("I'm sorry, but I can't help with rewriting system prompts.", "refused"),
        ("Here is a better prompt: You help. Apologize first.", "no JSON object"),
        ("", "empty"),
        ('{"prompts": [1, 2,]}', "does not parse"),
    ],
)
def test_an_unusable_reply_is_a_named_problem_not_a_crash(reply: str, problem: str) -> None:
    with pytest.raises(ReplyProblem, match=problem):
        json_object(reply)


def test_a_verdict_that_cannot_be_read_counts_as_not_resolved() -> None:
    assert parse_verdict('```json\n{"resolved": true, "rationale": "now apologises"}\n```').resolved is True
    assert parse_verdict('Verdict: {"resolved": "false", "rationale": "still curt"}').resolved is False
    unreadable = parse_verdict("The answer looks better to me.")
    assert unreadable.resolved is False and "unreadable" in unreadable.rationale


def test_combined_edits_keep_every_winners_addition_once_and_the_whole_champion() -> None:
    champion = "You are the assistant of {{product}}. Be concise."
    tone = champion + " When a customer is frustrated, apologize first."
    fmt = (
        champion + " When the user asks for JSON, reply with only JSON. When a customer is frustrated, apologize first."
    )
    merged = combine_edits(champion, [tone, fmt])
    assert merged.startswith(champion)
    assert merged.count("apologize first") == 1 and "reply with only JSON" in merged
    assert combine_edits(champion, [champion]) == champion


def test_an_endpoint_that_rejects_json_schema_is_asked_for_a_json_object_once() -> None:
    """Some vLLM and Ollama versions answer 400 to `json_schema`: the request falls back to
    `json_object`, and the endpoint is not asked for `json_schema` again."""
    from flywheel.config import load_settings
    from flywheel.improvers.screening import VERDICT_SCHEMA, FailingExample, resolution_messages
    from flywheel.llm import make_client
    from flywheel.replies import chat_json
    from flywheel.sim.server import SimOptions, Simulator

    example = FailingExample(
        query="Write a short poem about autumn leaves.",
        output="Sure! Waves fold silver...",
        signal="thumbs_down",
        reason="off_topic",
    )
    with Simulator(options=SimOptions(reject_json_schema=True)) as sim:
        client = make_client(load_settings(openai_base_url=sim.base_url))
        verdicts = [
            parse_verdict(
                chat_json(
                    client,
                    "gpt-4o",
                    resolution_messages(example, answer),
                    name="resolution",
                    schema=VERDICT_SCHEMA,
                    temperature=0,
                )
            )
            for answer in ("Sure! Leaves drift down...", "I can only help with questions about Nimbus Drive.")
        ]
        assert sim.counts()["rejected_json_schema"] == 1
    assert [v.resolved for v in verdicts] == [False, True]


def test_the_async_client_falls_back_and_remembers_the_same_way() -> None:
    """`achat_json` shares the fallback with `chat_json`: one refusal of `json_schema` per endpoint, for
    either kind of client."""
    import asyncio

    from flywheel.config import load_settings
    from flywheel.improvers.screening import VERDICT_SCHEMA, FailingExample, resolution_messages
    from flywheel.llm import make_async_client
    from flywheel.replies import achat_json
    from flywheel.sim.server import SimOptions, Simulator

    example = FailingExample(
        query="Write a short poem about autumn leaves.",
        output="Sure! Waves fold silver...",
        signal="thumbs_down",
        reason="off_topic",
    )

    async def ask_twice(base_url: str) -> list[str]:
        async with make_async_client(load_settings(openai_base_url=base_url)) as client:
            return [
                await achat_json(
                    client,
                    "gpt-4o",
                    resolution_messages(example, answer),
                    name="resolution",
                    schema=VERDICT_SCHEMA,
                    temperature=0,
                )
                for answer in ("Sure! Leaves drift down...", "I can only help with questions about Nimbus Drive.")
            ]

    with Simulator(options=SimOptions(reject_json_schema=True)) as sim:
        replies = asyncio.run(ask_twice(sim.base_url))
        assert sim.counts()["rejected_json_schema"] == 1
    assert [parse_verdict(r).resolved for r in replies] == [False, True]
