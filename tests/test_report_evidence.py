"""The approval form's short description, the full evidence document, and the report's who/when,
fine-tune table, judge warning and chart error bars (issue 26, parts 2 and 4)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from markdown_it import MarkdownIt
from scipy.stats import norm

from flywheel.candidates import Candidate
from flywheel.evals.calibration import JudgeCalibration
from flywheel.evals.evidence import evidence_markdown, untested_combinations
from flywheel.evals.pipeline import Variant
from flywheel.evals.report import approval_markdown, cycle_chart, cycle_figure, report_markdown
from flywheel.evals.runner import EvalResult, EvalRow


def _candidate(cid: str, kind: str = "prompt", **extra: object) -> Candidate:
    payloads = {
        "prompt": {"template": "Apologize first.", "diff": "+Apologize first.", "fixes": ["tone-1"]},
        "rag": {"template": "t", "index_version": "4", "changed_documents": ["refunds.md"], "diff": "+30 days"},
        "finetune": {
            "model": "ft:gpt-x:acme",
            "base_model": "gpt-x",
            "job_id": "job-9",
            "dataset_version": "ds-3",
            "examples": 120,
            "train": 100,
            "validation": 20,
            "preference_pairs": 7,
            "excluded": {"pii": 3, "too_long": 2},
        },
    }
    doc: dict = {
        "candidate_id": cid,
        "cycle_id": "c1",
        "kind": kind,
        "cluster_ids": ["tone-1"],
        "version": "7",
        "golden_score": 0.8,
        "champion_score": 0.5,
        "delta": 0.3,
        "ci_low": 0.1,
        "ci_high": 0.45,
        "per_category": {"tone": 0.8},
        "category_deltas": {"tone": 0.5, "facts": -0.1},
        "mlflow_run_id": f"run-{cid}",
        "payload": payloads[kind],
        "decision": "pending_approval",
    }
    return Candidate.model_validate(doc | extra)


def _result(label: str, rows: list[tuple[str, str, float]], **text: str) -> EvalResult:
    """Rows of (id, category, score); the answers and rationales name the variant."""
    return EvalResult(
        variant=Variant(label=label, prompt_template="t", model="m"),
        golden_version="g",
        rows=[
            EvalRow(
                id=i,
                category=cat,
                input=text.get("input", f"question {i}"),
                expected="e",
                scorer="judge",
                score=s,
                output=text.get("output", f"{label} answer {i}"),
                rationale=text.get("rationale", f"{label} rationale {i}"),
            )
            for i, cat, s in rows
        ],
    )


def _wilson(p: float, n: int) -> tuple[float, float]:
    """The Wilson score interval by its formula (independent of the code under test)."""
    z = norm.ppf(0.975)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _table_rows(tokens: list) -> list[list[str]]:
    """The first table's rows, as the text of each cell."""
    rows: list[list[str]] = []
    for i, t in enumerate(tokens):
        if t.type == "tr_open":
            rows.append([])
        elif t.type in ("th_open", "td_open"):
            rows[-1].append(tokens[i + 1].content.replace("\\|", "|"))
        elif t.type == "table_close":
            break
    return rows


def _rendered_lines(markdown: str) -> int:
    return sum(1 for line in markdown.splitlines() if line.strip())


# --- the form -------------------------------------------------------------------------------------
def test_the_form_is_short_names_candidates_by_title_and_links_the_evidence() -> None:
    prompt, rag = _candidate("prompt-abc123"), _candidate("rag-def456", "rag", cluster_ids=["refund-2"])
    deferred = _candidate("prompt-zzz999", decision="deferred", reason="deferred: fixes cluster fmt-1")
    text = approval_markdown(
        [prompt, rag],
        0.5,
        evidence_link="http://prefect/artifacts/ev",
        timeout_s=60,
        run_link=lambda run: f"http://mlflow/{run}",
        deferred=[deferred],
    )
    assert _rendered_lines(text) <= 15, text
    assert "2 candidates passed the policy" in text and "60 s" in text
    assert prompt.title() in text and rag.title() in text and deferred.title() in text
    # "golden <score> vs champion <score>": as the browser test reads it in the form
    assert text.count("golden 0.8 vs champion 0.5, delta +0.300 [+0.100, +0.450] (95% CI)") == 2
    assert "lowers category facts -0.100" in text  # what should give pause, on the candidate's line
    assert "(http://prefect/artifacts/ev)" in text and "http://mlflow/run-prompt-abc123" in text
    assert "never evaluated together" in text and "fixes cluster fmt-1" in text


def test_without_a_link_the_form_names_the_evidence_artifact() -> None:
    text = approval_markdown([_candidate("prompt-abc123")], 0.5)
    assert "`flywheel-approval-evidence` artifact" in text and "never evaluated together" not in text


def test_candidates_of_several_kinds_warn_of_a_combination_never_evaluated() -> None:
    prompt, tuned = _candidate("prompt-a"), _candidate("ft-b", "finetune")
    assert untested_combinations([prompt, _candidate("prompt-c")]) is None
    warning = untested_combinations([prompt, tuned])
    assert warning is not None and prompt.short_title() in warning and tuned.short_title() in warning
    assert "only against the current champions" in warning


# --- the evidence ---------------------------------------------------------------------------------
def test_the_evidence_has_per_category_counts_and_wilson_intervals() -> None:
    champion = _result(
        "champion",
        [(f"t{k}", "tone", 1.0 if k < 3 else 0.0) for k in range(10)] + [(f"f{k}", "facts", 0.5) for k in range(4)],
    )
    candidate = _result(
        "cand",
        [(f"t{k}", "tone", 1.0 if k < 8 else 0.0) for k in range(10)] + [(f"f{k}", "facts", 0.75) for k in range(4)],
    )
    md = evidence_markdown([_candidate("prompt-abc123")], champion, {"prompt-abc123": candidate}, champion_score=0.5)
    assert "Wilson" in md.split("| category | n |")[1].splitlines()[0]  # the method, in the table header
    lo, hi = _wilson(0.3, 10)
    lo2, hi2 = _wilson(0.8, 10)
    assert f"| tone | 10 | 0.300 [{lo:.3f}, {hi:.3f}] | 0.800 [{lo2:.3f}, {hi2:.3f}] | +0.500 |" in md
    lo, hi = _wilson(0.5, 4)
    lo2, hi2 = _wilson(0.75, 4)
    assert f"| facts | 4 | 0.500 [{lo:.3f}, {hi:.3f}] | 0.750 [{lo2:.3f}, {hi2:.3f}] | +0.250 |" in md


def test_changed_answers_come_fixed_first_then_broken_and_stop_at_the_cap() -> None:
    champion = _result(
        "champion",
        [(f"x{k:02d}", "tone", 0.0) for k in range(12)]
        + [(f"y{k}", "tone", 1.0) for k in range(3)]
        + [("z0", "tone", 0.6), ("same", "tone", 1.0)],
    )
    candidate = _result(
        "cand",
        [(f"x{k:02d}", "tone", 1.0) for k in range(12)]
        + [(f"y{k}", "tone", 0.0) for k in range(3)]
        + [("z0", "tone", 0.9), ("same", "tone", 1.0)],
    )
    cand = _candidate("prompt-abc123")
    md = evidence_markdown(
        [cand],
        champion,
        {cand.candidate_id: candidate},
        champion_score=0.5,
        max_changed=13,
        run_link=lambda run: f"http://mlflow/{run}",
    )
    assert "Answers that changed (16: 12 fixed, 3 broken)" in md
    shown = [line for line in md.splitlines() if line.startswith(("**fixed:", "**broken:", "**score changed:"))]
    assert [s.split(":")[0] for s in shown] == ["**fixed"] * 12 + ["**broken"]
    assert "`same`" not in md  # unchanged items are not listed
    assert "and 3 more: MLflow run [run-prompt-abc123](http://mlflow/run-prompt-abc123)" in md
    first = md.index("**fixed: `x00`**")
    assert "champion answer x00" in md[first:] and "cand answer x00" in md[first:]
    assert "champion rationale x00" in md[first:] and "cand rationale x00" in md[first:] and "`judge`" in md[first:]


def test_user_and_model_text_cannot_break_the_markdown() -> None:
    nasty = "a | b\n# Heading injected\n```\nclosed the fence? `x`"
    champion = _result("champion", [("q1", "to|ne", 0.0)], input=nasty, output=nasty, rationale="bad | worse\nnext")
    candidate = _result("cand", [("q1", "to|ne", 1.0)], input=nasty, output=nasty + " ````", rationale="ok")
    cand = _candidate("prompt-abc123")
    md = evidence_markdown([cand], champion, {cand.candidate_id: candidate}, champion_score=0.0)
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert "Heading injected" not in headings  # the user's text stayed text
    fences = [t.content for t in tokens if t.type == "fence"]
    assert sum(nasty in f for f in fences) == 3  # question, champion's and candidate's answers, each whole
    header, first = _table_rows(tokens)[:2]
    assert len(header) == len(first) == 5 and first[0] == "to|ne"  # the category's pipe stayed in its cell
    assert "bad \\| worse next" in md  # a rationale on one line, its pipe escaped


# --- the report -----------------------------------------------------------------------------------
def _judge(agreement: float, trusted: bool) -> JudgeCalibration:
    return JudgeCalibration(
        items=50,
        agreement=agreement,
        kappa=0.02,
        judge_model="judge-mini",
        min_kappa=0.4,
        min_items=20,
        trusted=trusted,
        why="kappa 0.02 is below judge.min_kappa 0.40",
    )


def test_the_report_names_who_decided_and_when_shows_a_finetune_table_and_a_weak_judge_up_top() -> None:
    when = datetime(2025, 3, 4, 13, 37, 59, tzinfo=UTC)
    promoted = _candidate("prompt-abc123", decision="promoted", decided_by="alice", decided_at=when)
    rejected = _candidate("rag-def456", "rag", decision="rejected", decided_by="bob", decided_at=when)
    tuned = _candidate("ft-ghi789", "finetune", decision="canary", decided_by="carol", decided_at=when)
    md = report_markdown(
        cycle_id="c1",
        golden_version="g",
        champion_score=0.5,
        clusters=[],
        candidates=[promoted, rejected, tuned],
        judge=_judge(0.06, trusted=False),
    )
    assert "- `prompt-abc123` promoted by alice, 2025-03-04 13:37 UTC" in md
    assert "- `rag-def456` rejected by bob, 2025-03-04 13:37 UTC" in md
    assert "- `ft-ghi789` canary by carol, 2025-03-04 13:37 UTC" in md
    assert "| excluded: pii | 3 |" in md and "| model | `ft:gpt-x:acme` |" in md and "{'pii'" not in md
    top = md[: md.index("## Triaged")]
    assert "agrees with expert reviews on 6% of 50 items" in top


def test_a_trusted_judge_agreeing_often_gets_no_warning_at_the_top() -> None:
    md = report_markdown(
        cycle_id="c1",
        golden_version="g",
        champion_score=0.5,
        clusters=[],
        candidates=[],
        judge=_judge(0.9, trusted=True),
    )
    assert "Judge warning" not in md[: md.index("## Triaged")] and "## Judge calibration" in md


# --- the chart ------------------------------------------------------------------------------------
def test_the_chart_draws_a_95_interval_on_each_bar_when_given_counts() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    cand = _candidate("prompt-abc123")
    per_category = {"tone": 0.3, "facts": 0.5}
    fig = cycle_figure([("c0", 0.4), ("c1", 0.5)], [cand], per_category, category_n={"tone": 10, "facts": 4})
    right = fig.axes[1]
    bars = [c for c in right.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # the champion's and the best candidate's
    low, high = _wilson(0.3, 10)
    (segments,) = bars[0].lines[2]  # the champion's bars: facts, then tone (categories in order)
    tone = segments.get_segments()[1]
    assert [round(y, 3) for _, y in tone] == [round(low, 3), round(high, 3)]
    plt.close(fig)
    without = cycle_figure([], [cand], per_category)
    assert not [c for c in without.axes[1].containers if isinstance(c, ErrorbarContainer)]
    plt.close(without)
    assert cycle_chart([], [cand], per_category, category_n={"tone": 10, "facts": 4}) != cycle_chart(
        [], [cand], per_category
    )


def test_an_interval_needs_items() -> None:
    from flywheel.evals.evidence import wilson

    with pytest.raises(ValueError, match="at least one scored item"):
        wilson(0.5, 0)
