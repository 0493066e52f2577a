"""MLflow shows the answers (issue 26, part 3), against a real MLflow on a temporary SQLite store:
each variant run carries one trace per golden item (the question in, the answer out, the score and
rationale as feedback, the expected answer as expectation), which a resumed cycle does not log
again; diffs are previewable; run names read in a narrow column; a prompt candidate names the
version to compare it with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import write_jsonl
from flywheel.candidates import Candidate, PromptPayload
from flywheel.config import Settings, load_settings
from flywheel.evals.golden import GoldenItem, GoldenSet, canonical_version, load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.report import report_markdown
from flywheel.evals.runner import EvalResult, EvalRow
from flywheel.evals.tracking import cycle_run, experiment_id, log_variant, run_label
from flywheel.improvers.prompt_step import prompt_diff, register_draft
from flywheel.loop.context import CycleContext
from flywheel.loop.gate import diff_markdown, gate_step
from flywheel.registry import register_prompt, use_mlflow
from flywheel.state import open_state
from nonempty import every


def _rows() -> list[EvalRow]:
    return [
        EvalRow(
            id="free",
            category="factual",
            input="Is it free?",
            expected="no",
            scorer="word",
            output="No, $5.",
            score=1.0,
            rationale="has the words 'no'",
        ),
        EvalRow(
            id="tone",
            category="tone",
            input="Say hi politely",
            expected="a polite greeting",
            scorer="judge",
            output="Hello there!",
            score=0.5,
            rationale="polite but curt",
        ),
        EvalRow(
            id="down",
            category="factual",
            input="Who wrote it?",
            expected="Ana",
            scorer="word",
            error="APIConnectionError: refused",
        ),
    ]


def _golden(tmp_path: Path, rows: list[EvalRow]) -> GoldenSet:
    items = [
        GoldenItem(id=r.id, input=r.input, expected=r.expected, category=r.category, scorer=r.scorer) for r in rows
    ]
    path = write_jsonl(tmp_path / "golden.jsonl", [i.model_dump(exclude_defaults=True) for i in items])
    return GoldenSet(path=path, items=tuple(items), version=canonical_version(items))


def _log(settings: Settings, golden: GoldenSet, rows: list[EvalRow], **kw: Any) -> str:
    client = use_mlflow(settings)
    exp = experiment_id(client, settings.experiment)
    result = EvalResult(
        variant=Variant(label="prompt-x", prompt_template="t", model="m"), golden_version=golden.version, rows=rows
    )
    return log_variant(
        client,
        exp,
        cycle_run(client, exp, "c-1"),
        cycle_id="c-1",
        kind="prompt",
        candidate_id="prompt-x",
        result=result,
        golden=golden,
        decision="evaluated",
        metrics={},
        params={},
        tags={},
        artifacts={},
        judge_model="judge-4",
        **kw,
    )


@pytest.fixture(autouse=True)
def every_answer_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (conftest bounds the traces of other tests to save time)."""
    monkeypatch.delenv("FLYWHEEL_EVAL__TRACE_ITEMS")


def _traces(run_id: str) -> dict[str, Any]:
    import mlflow

    found = mlflow.search_traces(run_id=run_id, return_type="list", max_results=500)
    return {t.info.tags["flywheel.golden_id"]: t for t in found}


def _by_name(trace: Any) -> dict[str, Any]:
    return {a.name: a for a in trace.info.assessments}


def test_each_golden_answer_is_a_trace_with_its_score_once(settings: Settings, tmp_path: Path) -> None:
    rows = _rows()
    golden = _golden(tmp_path, rows)
    run_id = _log(settings, golden, rows)
    traces = _traces(run_id)
    assert set(traces) == {"free", "tone", "down"}
    free, tone, down = traces["free"], traces["tone"], traces["down"]
    assert "Is it free?" in free.info.request_preview and "No, $5." in free.info.response_preview
    assert free.data.spans[0].inputs == {"question": "Is it free?"}
    assert free.data.spans[0].outputs == {"answer": "No, $5."}
    score = _by_name(free)["golden_score"]
    assert (score.value, score.rationale) == (1.0, "has the words 'no'")
    assert (score.source.source_type, score.source.source_id) == ("CODE", "word")
    assert _by_name(free)["expected_response"].value == "no"
    judged = _by_name(tone)["golden_score"]
    assert (judged.value, judged.rationale, judged.source.source_type, judged.source.source_id) == (
        0.5,
        "polite but curt",
        "LLM_JUDGE",
        "judge-4",
    )
    # An item the endpoint failed carries its error, and no score.
    failed = _by_name(down)["golden_score"]
    assert failed.value is None and "refused" in failed.error.error_message
    assert down.info.state.value == "ERROR" and "refused" in down.info.response_preview
    # A resumed cycle finds the run by its tags and logs nothing again.
    assert _log(settings, golden, rows) == run_id
    assert len(_traces(run_id)) == 3
    assert every(len(t.info.assessments) == 2 for t in _traces(run_id).values())


def test_trace_items_bounds_the_traces_not_the_run(settings: Settings, tmp_path: Path) -> None:
    rows = _rows()
    run_id = _log(settings, _golden(tmp_path, rows), rows, trace_items=1)
    assert list(_traces(run_id)) == ["free"]
    assert use_mlflow(settings).get_run(run_id).data.metrics["golden_items"] == 3


def test_run_names_start_with_what_distinguishes_them() -> None:
    assert run_label("champion", "champion-c1", "6") == "champion v6"
    assert run_label("prompt", "prompt-cf2b43227b", "7") == "v7 prompt cf2b43"
    assert run_label("rag", "rag-91ab22ffee", "3") == "v3 rag 91ab22"
    assert run_label("finetune", "finetune-77aa00", None) == "finetune 77aa00"


def test_a_diff_is_markdown_whose_fence_survives_the_prompts_own_fences() -> None:
    diff = prompt_diff("Answer.", "Answer. Use ```json``` blocks.", "6")
    md = diff_markdown("prompt v7 against its parent, prompt v6", diff)
    assert md.startswith("# prompt v7 against its parent, prompt v6\n\n````diff\n--- prompt v6 (champion)")
    assert md.rstrip().endswith("\n````")


def _gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Settings]:
    items = [GoldenItem(id=f"q{k}", input=f"question {k}?", expected="x", category="factual") for k in range(4)]
    path = write_jsonl(tmp_path / "golden.jsonl", [i.model_dump(exclude_defaults=True) for i in items])
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    monkeypatch.setenv("FLYWHEEL_POLICY__MIN_GOLDEN_SIZE", "4")  # it passes and waits: its answers are traced
    settings = load_settings()
    version = load_golden(path).version
    ctx = CycleContext(
        settings=settings,
        cycle_id="cyc-ans",
        resumed=False,
        champion_version="6",
        champion_template="Be brief.",
        golden_version=version,
    )

    def result(label: str, answer: str, score: float) -> EvalResult:
        rows = [
            EvalRow(
                id=i.id,
                category=i.category,
                input=i.input,
                expected=i.expected,
                scorer="contains",
                output=f"{answer} {i.id}",
                score=score,
                rationale=f"{label} rationale",
            )
            for i in items
        ]
        return EvalResult(
            variant=Variant(label=label, prompt_template="t", model="m"), golden_version=version, rows=rows
        )

    template = "Be brief and kind."
    with open_state(settings) as state:
        state.add_candidate(
            Candidate(
                candidate_id="prompt-cf2b43227b",
                cycle_id="cyc-ans",
                kind="prompt",
                cluster_ids=["tone-1"],
                parent="6",
                version="7",
                payload=PromptPayload(template=template, diff=prompt_diff("Be brief.", template, "6")),
            )
        )
    report = gate_step(
        ctx,
        result("champion", "old", 0.0),
        {"prompt-cf2b43227b": result("prompt-cf2b43227b", "new", 1.0)},
        auto_approve=False,
    )
    return report, settings


def test_the_gate_logs_both_answers_side_by_side_and_names_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, settings = _gate(tmp_path, monkeypatch)
    (cand,) = report.candidates
    assert cand.decision == "pending_approval", cand.reason
    client = use_mlflow(settings)
    champion_run, cand_run = client.get_run(report.champion_run_id), client.get_run(cand.mlflow_run_id)
    assert champion_run.info.run_name == "champion v6" and cand_run.info.run_name == "v7 prompt cf2b43"
    assert cand_run.data.tags["flywheel.candidate_id"] == "prompt-cf2b43227b"
    assert cand_run.data.tags["flywheel.parent_version"] == "6" and cand_run.data.params["parent_version"] == "6"
    artifacts = {a.path for a in client.list_artifacts(cand.mlflow_run_id)}
    assert "prompt.diff.md" in artifacts and "prompt.diff" not in artifacts
    diff = Path(client.download_artifacts(cand.mlflow_run_id, "prompt.diff.md")).read_text()
    assert "```diff\n--- prompt v6 (champion)" in diff and "+Be brief and kind." in diff
    # MLflow pairs two runs' traces by their request: the same question, each run's own answer.
    old, new = _traces(report.champion_run_id), _traces(cand.mlflow_run_id)
    assert set(old) == set(new) == {"q0", "q1", "q2", "q3"}
    for item in old:
        assert old[item].info.request_preview == new[item].info.request_preview
        assert f"old {item}" in old[item].info.response_preview and f"new {item}" in new[item].info.response_preview
        assert _by_name(new[item])["golden_score"].value == 1.0
    # The report names the version to compare the candidate with.
    md = report_markdown(
        cycle_id="cyc-ans", golden_version="v", champion_score=0.0, clusters=[], candidates=report.candidates
    )
    assert "| `prompt-cf2b43227b` (v7: compare with v6) | prompt |" in md


def test_a_draft_version_is_tagged_with_its_parent(settings: Settings) -> None:
    register_prompt(settings, "You answer briefly.", "set", {})
    ctx = CycleContext(
        settings=settings,
        cycle_id="c-1",
        resumed=False,
        champion_version="4",
        champion_template="You answer briefly.",
        golden_version="g",
    )
    version = register_draft(ctx, "You answer briefly and never guess.", "a draft", {})
    tags = use_mlflow(settings).get_prompt_version(settings.prompt_name, version).tags
    assert tags["flywheel.parent_version"] == "4"
