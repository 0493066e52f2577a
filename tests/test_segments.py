"""Bias safeguards in the gate (issue 18 item 5): golden items name a user segment (the `segment`
field or a `segment:<name>` tag), champion and candidates are scored per segment (MLflow metrics
`golden.segment.<name>`, the report beside per-category), a segment regressing beyond
`policy.max_segment_regression` blocks a candidate whose mean improves, and `flywheel validate`
warns about a segment too small to mean anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import write_jsonl
from flywheel.candidates import Candidate, Decision, PromptPayload
from flywheel.config import load_settings
from flywheel.evals.golden import GoldenItem, canonical_version, load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.report import report_markdown
from flywheel.evals.runner import EvalResult, EvalRow
from flywheel.loop.checks import Severity
from flywheel.loop.checks.golden_set import check_golden
from flywheel.loop.context import CycleContext
from flywheel.loop.gate import gate_step
from flywheel.registry import use_mlflow
from flywheel.state import open_state


def test_a_segment_is_a_field_or_a_tag_and_unsegmented_sets_keep_their_version() -> None:
    field = GoldenItem(id="a", input="q", expected="x", category="factual", segment="power")
    tagged = GoldenItem(id="b", input="q", expected="x", category="factual", tags=["pricing", "segment:new"])
    both = GoldenItem(id="c", input="q", expected="x", category="factual", segment="de-DE", tags=["segment:new"])
    plain = GoldenItem(id="d", input="q", expected="x", category="factual", tags=["segment:"])
    assert [i.segment_name for i in (field, tagged, both, plain)] == ["power", "new", "de-DE", None]
    # A set written before segments existed has the same version as before (the field is left out).
    before = '{"category":"factual","expected":"x","id":"d","input":"q","tags":["segment:"]}'
    import hashlib

    assert canonical_version([plain]) == hashlib.sha256(before.encode()).hexdigest()


N = 30  # items per segment


def _items() -> list[GoldenItem]:
    new = [
        GoldenItem(id=f"n{k}", input=f"new user question {k}", expected="x", category="factual", segment="new")
        for k in range(N)
    ]
    power = [
        GoldenItem(
            id=f"p{k}", input=f"power user question {k}", expected="x", category="factual", tags=["segment:power"]
        )
        for k in range(N)
    ]
    return new + power


def _result(items: list[GoldenItem], version: str, label: str, score: dict[str, float]) -> EvalResult:
    rows = [
        EvalRow(
            id=i.id,
            category=i.category,
            input=i.input,
            expected=i.expected,
            scorer="contains",
            output="o",
            score=score[i.id],
        )
        for i in items
    ]
    return EvalResult(variant=Variant(label=label, prompt_template="t", model="m"), golden_version=version, rows=rows)


def _gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, candidate: dict[str, float]) -> Any:
    items = _items()
    path = write_jsonl(tmp_path / "golden.jsonl", [i.model_dump(exclude_defaults=True) for i in items])
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    settings = load_settings()
    version = load_golden(path).version
    ctx = CycleContext(
        settings=settings,
        cycle_id="cyc-seg",
        resumed=False,
        champion_version="1",
        champion_template="Be brief.",
        golden_version=version,
    )
    champion = {f"n{k}": float(k % 2) for k in range(N)} | {f"p{k}": float(k % 3 == 0) for k in range(N)}
    with open_state(settings) as state:
        state.add_candidate(
            Candidate(
                candidate_id="prompt-seg",
                cycle_id="cyc-seg",
                kind="prompt",
                cluster_ids=["tone-1"],
                payload=PromptPayload(template="Be brief and kind."),
            )
        )
    report = gate_step(
        ctx,
        _result(items, version, "champion", champion),
        {"prompt-seg": _result(items, version, "prompt-seg", champion | candidate)},
        auto_approve=False,
    )
    return report, settings


def test_a_segment_regression_blocks_a_candidate_whose_mean_improves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Power users gain a lot (0.333 -> 1.0); new users lose 3 of their 15 right answers (0.5 -> 0.4).
    lost = {f"n{k}": 0.0 for k in (1, 3, 5)}
    report, settings = _gate(tmp_path, monkeypatch, {f"p{k}": 1.0 for k in range(N)} | lost)
    (cand,) = report.candidates
    assert cand.delta > 0.25 and cand.ci_low > 0  # the mean improves, clearly
    assert cand.decision is Decision.rejected
    assert cand.reason == "segment 'new' regresses by 0.100 (allowed 0.050)"
    assert cand.per_segment == {"new": 0.4, "power": 1.0}
    assert cand.segment_deltas == {"new": -0.1, "power": 0.6667}
    assert report.champion_per_segment == {"new": 0.5, "power": 0.3333}
    assert cand.public()["per_segment"] == {"new": 0.4, "power": 1.0}

    # MLflow: per-segment metrics on the champion's and the candidate's runs.
    client = use_mlflow(settings)
    cand_metrics = client.get_run(cand.mlflow_run_id).data.metrics
    champ_metrics = client.get_run(report.champion_run_id).data.metrics
    assert cand_metrics["golden.segment.new"] == pytest.approx(0.4)
    assert cand_metrics["golden.segment.power"] == pytest.approx(1.0)
    assert champ_metrics["golden.segment.new"] == pytest.approx(0.5)
    assert cand_metrics["golden.factual"] == pytest.approx(0.7)  # per category as before

    # The cycle report shows segments beside categories.
    md = report_markdown(
        cycle_id="cyc-seg",
        golden_version="v",
        champion_score=0.4,
        clusters=[],
        candidates=report.candidates,
        champion_per_category=report.champion_per_category,
        champion_per_segment=report.champion_per_segment,
    )
    assert "## Per category" in md and "## Per segment" in md
    assert "| new | 0.500 | 0.400 (-0.100) |" in md


def test_within_the_segment_bound_the_candidate_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_POLICY__MAX_SEGMENT_REGRESSION", "0.15")
    lost = {f"n{k}": 0.0 for k in (1, 3, 5)}
    report, _ = _gate(tmp_path, monkeypatch, {f"p{k}": 1.0 for k in range(N)} | lost)
    (cand,) = report.candidates
    assert cand.decision is Decision.pending_approval, cand.reason
    assert "no segment more than 0.150" in cand.reason


def test_validate_warns_about_a_segment_too_small_to_mean_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _items() + [
        GoldenItem(id=f"de{k}", input=f"Frage {k}", expected="x", category="factual", tags=["segment:de-DE"])
        for k in range(3)
    ]
    path = write_jsonl(tmp_path / "golden.jsonl", [i.model_dump(exclude_defaults=True) for i in items])
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    problems = [p for p in check_golden(load_settings()).problems if "segment" in p.message]
    assert len(problems) == 1
    (p,) = problems
    assert p.severity is Severity.WARNING and "segment 'de-DE' has only 3 golden items" in p.message
    assert "add 7 items" in p.fix
    monkeypatch.setenv("FLYWHEEL_GOLDEN_SET__MIN_PER_SEGMENT", "3")
    assert not [p for p in check_golden(load_settings()).problems if "segment" in p.message]
