"""Setup smells said out loud (issue 25): a champion scoring 0, candidates that all tie it and a
screening judge that says one thing to everything become plain sentences in the cycle's notes; and
`flywheel validate` asks a RAG product as the product runs, with the retrieved context. Every
answer and verdict comes from the simulator over real HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import seed_world_vectors
from flywheel.candidates import Candidate, PromptPayload
from flywheel.config import Settings, load_settings
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import EvalResult
from flywheel.improvers.prompt import DraftingResult, propose
from flywheel.improvers.screening import FailingExample
from flywheel.improvers.screening_notes import screening_judge_note, screening_verdicts
from flywheel.improvers.screening_step import answer_queries, judge_resolutions
from flywheel.llm import make_client
from flywheel.loop.checks import Check, Problem
from flywheel.loop.context import CycleContext
from flywheel.loop.evaluate import evaluate_step
from flywheel.loop.gate import gate_step
from flywheel.loop.setup_notes import all_tie_note, champion_zero_note
from flywheel.runtime import runtime_for
from flywheel.sim.server import Simulator
from flywheel.state import open_state

APOLOGY = "When a customer is frustrated, first apologize and acknowledge the frustration, then help."


def _on(sim: Simulator, **overrides: object) -> Settings:
    return load_settings(openai_base_url=sim.base_url, **overrides)


def _prompt(world: Path) -> str:
    return (world / "prompt.txt").read_text().strip()


def _evaluate(settings: Settings, label: str, template: str) -> EvalResult:
    (result,) = evaluate_step(
        runtime_for(settings), [Variant(label=label, prompt_template=template, model="gpt-4o-mini")]
    )
    return result


def test_a_champion_scoring_zero_on_an_endpoint_that_answers_empty_is_explained(
    broken_endpoint: Simulator, small_golden: Path, world: Path
) -> None:
    champion = _evaluate(_on(broken_endpoint), "champion", _prompt(world))
    note = champion_zero_note(champion, _prompt(world), {})
    assert champion.mean == 0.0 and note is not None
    assert f"{len(champion.rows)} of {len(champion.rows)} answers were empty" in note
    assert "another format" not in note and "prompt variable" not in note  # nothing points there
    with_variable = champion_zero_note(champion, _prompt(world) + " You work for {{company}}.", {})
    assert with_variable is not None and "{{company}} with no value under [prompt_variables]" in with_variable


def test_a_golden_set_in_another_format_than_the_answers_is_named(
    simulator: Simulator, small_golden: Path, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The team wrote expected answers as JSON records; the product answers in sentences."""
    rows = [json.loads(line) for line in small_golden.read_text().splitlines()]
    other = tmp_path / "as_json.jsonl"
    other.write_text(
        "".join(json.dumps({**r, "expected": json.dumps({"answer": r["id"]}), "scorer": "exact"}) + "\n" for r in rows)
    )
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(other))
    champion = _evaluate(_on(simulator), "champion", _prompt(world))
    note = champion_zero_note(champion, _prompt(world), {})
    assert champion.mean == 0.0 and note is not None
    assert "another format or wording" in note and f"exact ({len(rows)})" in note
    assert f"item {rows[0]['id']!r} expects" in note and "answers were empty" not in note


def test_candidates_that_all_tie_the_champion_are_noted(simulator: Simulator, small_golden: Path, world: Path) -> None:
    settings = _on(simulator)
    champion = _evaluate(settings, "champion", _prompt(world))
    tie = _evaluate(settings, "tie", _prompt(world) + " Keep answers short.")  # no behaviour depends on it
    better = _evaluate(settings, "better", _prompt(world) + " " + APOLOGY)
    assert tie.mean == champion.mean and better.mean != champion.mean
    assert champion_zero_note(champion, _prompt(world), {}) is None  # it scores: nothing to explain
    note = all_tie_note(champion, {"tie": tie})
    assert (
        note is not None
        and f"the only candidate scored exactly the champion's golden score ({champion.mean:.3f}" in note
        and "did not tell them apart" in note
    )
    assert all_tie_note(champion, {"tie": tie, "better": better}) is None
    assert all_tie_note(champion, {}) is None  # no candidate, nothing tied


def _sync_complaints(world: Path) -> list[FailingExample]:
    inputs = [
        json.loads(line)["input"] for line in (world / "golden.jsonl").read_text().splitlines() if "sync_angry" in line
    ][:8]
    return [
        FailingExample(
            query=q,
            output="Sign out of the desktop app, sign back in, and sync will restart.",
            signal="thumbs_down",
            reason="tone",
            comment="so rude",
        )
        for q in inputs
    ]


def _draft(settings: Settings, world: Path) -> DraftingResult:
    return propose(
        cluster_id="tone-1",
        category="tone",
        champion=_prompt(world),
        examples=_sync_complaints(world),
        client=make_client(settings, purpose="drafting"),
        model=settings.draft_model,
        run_queries=lambda t, qs: answer_queries(settings, t, qs),
        judge=lambda exs, outs: judge_resolutions(settings, runtime_for(settings).state, exs, outs),
        protected=[],
        settings=settings.improve,
    )


def test_a_screening_judge_that_resolves_everything_is_noted(
    simulator: Simulator, broken_endpoint: Simulator, world: Path
) -> None:
    lenient = _draft(_on(broken_endpoint), world)
    verdicts = screening_verdicts([lenient])
    assert len(verdicts) >= 8 and all(verdicts)
    note = screening_judge_note(verdicts)
    assert note is not None and f"said 'resolved' to all {len(verdicts)} screening requests" in note
    honest = _draft(_on(simulator), world)  # the champion fails these complaints, the apology draft fixes them
    assert screening_judge_note(screening_verdicts([honest])) is None
    assert screening_judge_note([True] * 5) is None  # too few to say anything


def test_the_gate_puts_the_setup_notes_in_the_cycle_report(
    broken_endpoint: Simulator, small_golden: Path, world: Path
) -> None:
    """The wiring: on an endpoint that answers nothing and a judge that resolves everything, one
    gate says all three things."""
    settings = _on(broken_endpoint)
    champion = _evaluate(settings, "champion", _prompt(world))
    candidate = _evaluate(settings, "prompt-c1", _prompt(world) + " " + APOLOGY)
    ctx = CycleContext(
        settings=settings,
        cycle_id="cyc-notes",
        resumed=False,
        champion_version="1",
        champion_template=_prompt(world),
        golden_version=load_golden(small_golden).version,
    )
    with open_state(settings) as state:
        state.add_candidate(
            Candidate(
                candidate_id="prompt-c1",
                cycle_id=ctx.cycle_id,
                kind="prompt",
                cluster_ids=["tone-1"],
                payload=PromptPayload(template=candidate.variant.prompt_template),
            )
        )
        state.save_drafts(ctx.cycle_id, "tone-1", _draft(settings, world).model_dump(mode="json"))
    report = gate_step(ctx, champion, {"prompt-c1": candidate}, auto_approve=False)
    notes = " | ".join(report.notes)
    assert len(report.notes) == 3, notes
    assert "the champion scored 0" in notes and "answers were empty" in notes
    assert "the only candidate scored exactly the champion's golden score (0.000" in notes
    assert "the screening judge said 'resolved'" in notes
    assert report.public()["notes"] == report.notes


def test_validate_asks_a_rag_product_with_its_retrieved_context(
    cli, sim_env: Simulator, world: Path, world_vectors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model-fit check sent no context, so a RAG product (prices only its documents know) looked
    like the wrong model; it now retrieves from the active index as the product does."""
    rows = [
        line
        for line in (world / "golden.jsonl").read_text().splitlines()
        if any(f'"{t}"' in line for t in ("pro_price", "free_storage", "upload_limit"))
    ]
    golden = tmp_path / "prices.jsonl"
    golden.write_text("\n".join(rows) + "\n")
    knowledge = shutil.copytree(world / "knowledge", tmp_path / "knowledge")
    for doc in (world / "knowledge_updates").iterdir():
        shutil.copy(doc, knowledge / doc.name)  # the documents state today's prices; the model remembers old ones
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(golden))
    monkeypatch.setenv("FLYWHEEL_KNOWLEDGE_SOURCE", str(knowledge))
    (tmp_path / "prompt.txt").write_text(_prompt(world))
    seed_world_vectors(world_vectors, load_settings())  # its knowledge and queries are embedded already

    def model_fit() -> list[Problem]:
        doc = cli("validate", "--json", "--prompt", str(tmp_path / "prompt.txt"), expect=0)
        return [p for p in map(Problem.model_validate, doc["problems"]) if p.check is Check.MODEL_FIT]

    without_index = model_fit()  # no index yet: the model answers from memory, and that is worth a warning
    assert any("scored 0.00 on average" in p.message for p in without_index), without_index
    cli("kb", "sync", "--json")
    assert model_fit() == []
