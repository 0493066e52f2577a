"""Judge calibration (issue 18 item 4): Cohen's kappa as defined (a hand-computed example, the
undefined case), `flywheel judge calibrate` against the simulator's judge with expert reviews in the
store (consent respected: a request log proves what reached the judge), the result cached, and the
gate refusing a gain seen only on judge-scored items while the judge is not trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Cli, event, write_jsonl
from flywheel.candidates import Candidate, Decision, PromptPayload
from flywheel.config import load_settings
from flywheel.evals.calibration import Agreement, agreement, assess
from flywheel.evals.golden import GoldenItem, load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import EvalResult, EvalRow
from flywheel.loop.context import CycleContext
from flywheel.loop.gate import gate_step
from flywheel.registry import use_mlflow
from flywheel.runtime import runtime_for
from flywheel.sim.server import SimOptions, Simulator
from flywheel.state import open_state

SECRET = "PANGOLIN-4471"  # only in text without consent: it must never reach the judge


# --- kappa ------------------------------------------------------------------------------------------
def test_kappa_matches_a_hand_computed_example() -> None:
    # 50 answers: experts pass 25; the judge passes 20 of those and 10 of the 25 the experts failed.
    expert = [True] * 25 + [False] * 25
    judge = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    got = agreement(expert, judge)
    # p_o = (20 + 15) / 50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    assert got.items == 50 and got.agreement == 0.7 and got.kappa == pytest.approx(0.4)
    assert got.confusion["expert_pass"].model_dump() == {"judge_pass": 20, "judge_fail": 5}
    assert got.confusion["expert_fail"].model_dump() == {"judge_pass": 10, "judge_fail": 15}
    # Perfect agreement is 1, systematic disagreement negative, a judge with one answer for everything 0.
    assert agreement(expert, expert).kappa == 1.0
    assert agreement(expert, [not v for v in expert]).kappa == -1.0
    assert agreement(expert, [True] * 50).kappa == 0.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=60))
def test_kappa_and_confusion_are_scikit_learns_whenever_the_experts_are_split(pairs: list[tuple[bool, bool]]) -> None:
    """Computed without scikit-learn (a second of CPU per cycle to import), held to it here."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    expert, judge = [e for e, _ in pairs], [j for _, j in pairs]
    got = agreement(expert, judge)
    (tp, fn), (fp, tn) = confusion_matrix(expert, judge, labels=[True, False]).tolist()
    assert got.confusion["expert_pass"].model_dump() == {"judge_pass": tp, "judge_fail": fn}
    assert got.confusion["expert_fail"].model_dump() == {"judge_pass": fp, "judge_fail": tn}
    if len(set(expert)) == 2:
        assert got.kappa == pytest.approx(cohen_kappa_score(expert, judge, labels=[True, False]), abs=1e-4)
    else:
        assert got.kappa is None


@pytest.mark.parametrize("side", [True, False])
def test_kappa_is_undefined_when_the_experts_give_one_verdict(side: bool) -> None:
    got = agreement([side] * 12, [True] * 6 + [False] * 6)
    assert got.kappa is None and got.agreement == 0.5
    assert f"every expert verdict is '{'pass' if side else 'fail'}'" in got.kappa_note
    verdict = assess(got, judge_model="j", min_kappa=0.6, min_items=10)
    assert not verdict.trusted and "undefined" in verdict.why
    empty = agreement([], [])
    assert empty.items == 0 and empty.kappa is None and empty.agreement is None and "no item" in empty.kappa_note


def test_trust_needs_enough_items_and_kappa() -> None:
    figures = agreement([True] * 5 + [False] * 5, [True] * 5 + [False] * 5)
    assert not assess(figures, judge_model="j", min_kappa=0.6, min_items=20).trusted  # kappa 1 on 10: too few
    assert "too few items to know" in assess(figures, judge_model="j", min_kappa=0.6, min_items=20).why
    assert assess(figures, judge_model="j", min_kappa=0.6, min_items=10).trusted
    low = agreement([True] * 10 + [False] * 10, [True] * 7 + [False] * 3 + [True] * 4 + [False] * 6)
    assert not assess(low, judge_model="j", min_kappa=0.6, min_items=10).trusted  # kappa 0.3


# --- `flywheel judge calibrate` against the simulator's judge ---------------------------------------
PRICE = "The Pro plan costs 12 dollars per month"
SYNC = "Sign out of the desktop app and sign back in to restart sync"
SHARE = "Open the folder menu and choose Share to invite people by email"


def _reviews() -> list[dict[str, Any]]:
    """Expert reviews the simulator's judge (word recall of the reference) agrees with 5 times of 7
    among the asked ones, and reviews that must be skipped."""
    q_price, q_sync, q_share = "How much is Pro?", "Sync is stuck, what do I do?", "How do I share a folder?"
    return [
        # references from the golden set (by input): the judge passes answers holding the reference's words
        event("r1", signal="expert_review", value=0.9, query=q_price, output=PRICE + ", billed monthly."),
        event("r2", signal="expert_review", value=0.1, query=q_price, output="Pro is free."),
        event("r3", signal="expert_review", value=0.2, query=q_price, output=PRICE + " and it includes phone support."),
        # the expert's own correction is the reference
        event(
            "r4",
            signal="expert_review",
            value=0.0,
            query="Can I pay yearly?",
            output="No.",
            correction="Yes, yearly billing saves two months.",
        ),
        # another consented event's correction is the reference
        event("c1", signal="correction", query=q_sync, output="Reinstall.", correction=SYNC),
        event("r5", signal="expert_review", value=1.0, query=q_sync, output=SYNC + "."),
        event("r6", signal="expert_review", value=0.9, query=q_sync, output="Log off the app, log on again."),
        event("r7", signal="expert_review", value=0.1, query=q_sync, output="Buy a new laptop."),
        # skipped: no consent (its text never read), no reference, its answer is the reference
        event(
            "x1",
            signal="expert_review",
            value=0.1,
            consent=False,
            query=f"{SECRET} how much is Pro?",
            output=f"{SECRET} costs 5.",
        ),
        event("x2", signal="correction", consent=False, query=q_share, output="Email it.", correction=f"{SECRET} menu"),
        event("x3", signal="expert_review", value=0.9, query=q_share, output="Email it to them."),
        event("x4", signal="expert_review", value=0.9, query="What is Nimbus?", output="A file sync service."),
        event("x5", signal="expert_review", value=0.95, query="Refund policy?", output="Refunds within 30 days."),
    ]


def _golden_file(path: Path) -> Path:
    items = [
        GoldenItem(id="g-price", input="how much is pro?", expected=PRICE, category="factual", scorer="judge"),
        GoldenItem(id="g-refund", input="Refund policy?", expected="Refunds within 30 days.", category="factual"),
    ]
    return write_jsonl(path, [i.model_dump(exclude_defaults=True) for i in items])


def _judged(sim: Simulator) -> list[dict[str, Any]]:
    """The requests to the judge scorer (screening's resolution judge has its own instructions)."""
    from flywheel.evals.scorers import JUDGE_SYSTEM

    return [b for b in sim.state.requests if b["messages"][0]["content"] == JUDGE_SYSTEM]


@pytest.fixture
def recording_sim(monkeypatch: pytest.MonkeyPatch) -> Any:
    with Simulator(options=SimOptions(record=True)) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        yield sim


def test_calibrate_compares_the_judge_with_consented_expert_reviews(
    cli: Cli, recording_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(_golden_file(Path("golden.jsonl"))))
    monkeypatch.setenv("FLYWHEEL_JUDGE__MIN_ITEMS", "5")
    cli("ingest", str(write_jsonl(Path("reviews.jsonl"), _reviews())), "--json")

    out = cli("judge", "calibrate", "--json")
    assert list(out)[:4] == ["items", "agreement", "kappa", "confusion"]
    # Asked: r1-r7. Judge (recall >= 0.8 of the reference's words passes): r1 pass, r2 fail, r3 pass,
    # r4 fail, r5 pass, r6 fail, r7 fail. Experts: pass r1 r5 r6; fail r2 r3 r4 r7.
    assert out["items"] == 7 and out["errors"] == 0
    assert out["confusion"] == {
        "expert_pass": {"judge_pass": 2, "judge_fail": 1},
        "expert_fail": {"judge_pass": 1, "judge_fail": 3},
    }
    # p_o = 5/7; p_e = 3/7 * 3/7 + 4/7 * 4/7 = 25/49; kappa = (35/49 - 25/49) / (24/49) = 10/24
    assert out["agreement"] == round(5 / 7, 4) and out["kappa"] == pytest.approx(10 / 24, abs=1e-4)
    assert out["references"] == {"expert_correction": 1, "feedback": 3, "golden": 3}
    assert out["skipped"] == {"answer_is_reference": 1, "no_consent": 1, "no_reference": 2}
    assert out["trusted"] is False and "below judge.min_kappa 0.60" in out["why"]

    sent = json.dumps(recording_sim.state.requests)
    assert len(_judged(recording_sim)) == 7
    assert "Buy a new laptop" in sent and "two months" in sent  # consented reviews and references went
    assert SECRET not in sent  # neither the review nor the correction without consent did

    # The screening judge, on expert-reviewed answers to queries other consented complaints were about
    # (r1, r3 / r2 on the price, r5, r6, r7 / c1 on sync): reported the same way, never enforced.
    screening = out["screening"]
    assert screening["items"] == 6 and screening["skipped"]["no_consent"] == 1
    assert sum(screening["confusion"]["expert_pass"].values()) == 3
    assert "Reinstall." in sent  # c1's logged answer, the complaint screening shows the judge
    asked = len(recording_sim.state.requests)
    # Nothing new: the cached result, the judge not asked again; a lower bar re-assesses the same figures.
    monkeypatch.setenv("FLYWHEEL_JUDGE__MIN_KAPPA", "0.4")
    again = cli("judge", "calibrate", "--json")
    assert again["cached"] is True and len(recording_sim.state.requests) == asked
    assert again["kappa"] == out["kappa"] and again["trusted"] is True
    text = cli("judge", "calibrate")
    assert "kappa 0.417" in text.stdout and "trusted" in text.stderr


def test_the_sample_is_capped_and_deterministic(
    cli: Cli, recording_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        event(
            f"e{k}",
            signal="expert_review",
            value=k % 2,
            query=f"Question {k}?",
            output=f"Answer {k}",
            correction=f"Reference {k}",
        )
        for k in range(12)
    ]
    cli("ingest", str(write_jsonl(Path("reviews.jsonl"), rows)), "--json")
    monkeypatch.setenv("FLYWHEEL_JUDGE__MAX_ITEMS", "5")
    from flywheel.loop.calibration import calibration_items

    first, skipped = calibration_items(runtime_for(load_settings()), None)
    assert len(first) == 5 and skipped["over_max_items"] == 7
    assert [i.event_id for i in calibration_items(runtime_for(load_settings()), None)[0]] == [i.event_id for i in first]
    out = cli("judge", "calibrate", "--json")
    assert out["items"] == 5 and len(_judged(recording_sim)) == 5
    assert out["trusted"] is False and "too few items to know" in out["why"]


# --- the gate: judge-scored items alone cannot pass a candidate while the judge is not trusted ------
N = 40  # items of each kind


def _gate_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CycleContext, Any]:
    items = [
        GoldenItem(id=f"c{k}", input=f"code question {k}", expected="x", category="factual", scorer="contains")
        for k in range(N)
    ]
    items += [
        GoldenItem(id=f"j{k}", input=f"judged question {k}", expected="x", category="factual", scorer="judge")
        for k in range(N)
    ]
    path = write_jsonl(tmp_path / "golden.jsonl", [i.model_dump(exclude_defaults=True) for i in items])
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    settings = load_settings()
    golden = load_golden(path)
    ctx = CycleContext(
        settings=settings,
        cycle_id="cyc-gate",
        resumed=False,
        champion_version="1",
        champion_template="Be brief.",
        golden_version=golden.version,
    )
    return ctx, golden


def _result(golden: Any, label: str, score: dict[str, float]) -> EvalResult:
    rows = [
        EvalRow(
            id=i.id,
            category=i.category,
            input=i.input,
            expected=i.expected,
            scorer=i.scorer or "contains",
            output="o",
            score=score[i.id],
        )
        for i in golden.items
    ]
    return EvalResult(
        variant=Variant(label=label, prompt_template="t", model="m"), golden_version=golden.version, rows=rows
    )


def _decide(ctx: CycleContext, golden: Any, gain_on_code: bool, kappa: float | None) -> Candidate:
    champion = {f"c{k}": float(k % 2) for k in range(N)} | {f"j{k}": 0.0 for k in range(N)}
    candidate = dict(champion) | {f"j{k}": 1.0 for k in range(N)}  # the judge sees a large gain
    if gain_on_code:
        candidate |= {f"c{k}": 1.0 for k in range(N)}
    cid = f"prompt-{'both' if gain_on_code else 'judged'}-{kappa}"
    with open_state(ctx.settings) as state:
        state.add_candidate(
            Candidate(
                candidate_id=cid,
                cycle_id=ctx.cycle_id,
                kind="prompt",
                cluster_ids=["tone-1"],
                payload=PromptPayload(template=f"Be brief. {cid}"),
            )
        )
    expert = [True] * 20 + [False] * 20
    judge = expert if kappa == 1.0 else [True] * 12 + [False] * 8 + [True] * 8 + [False] * 12  # kappa 0.2
    figures = agreement(expert, judge) if kappa is not None else Agreement(items=0)
    calibration = assess(figures, judge_model="gpt-4o", min_kappa=0.6, min_items=20)
    report = gate_step(
        ctx,
        _result(golden, "champion", champion),
        {cid: _result(golden, cid, candidate)},
        auto_approve=False,
        calibration=calibration,
    )
    (cand,) = report.candidates
    return cand, report


def test_a_gain_only_on_judge_scored_items_passes_only_a_trusted_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, golden = _gate_world(tmp_path, monkeypatch)
    low, report = _decide(ctx, golden, gain_on_code=False, kappa=0.2)
    assert low.delta == 0.5  # the mean improves a lot...
    assert low.decision is Decision.rejected  # ...but only where an untrusted judge scores
    assert (
        "without the judge-scored items (judge not calibrated: kappa 0.20 is below judge.min_kappa 0.60" in low.reason
    )
    assert "delta +0.000 is below the minimum" in low.reason
    assert report.judge.kappa == pytest.approx(0.2) and any("not trusted alone" in n for n in report.notes)
    assert report.public()["judge"]["kappa"] == pytest.approx(0.2)

    high, report = _decide(ctx, golden, gain_on_code=False, kappa=1.0)
    assert high.decision is Decision.pending_approval, high.reason
    assert report.notes == []

    # Undefined kappa (no expert review to calibrate on) is not trust either.
    undefined, _ = _decide(ctx, golden, gain_on_code=False, kappa=None)
    assert undefined.decision is Decision.rejected and "too few items to know" in undefined.reason

    # With the gain on the other items too, an untrusted judge does not stand in the way.
    both, _ = _decide(ctx, golden, gain_on_code=True, kappa=0.2)
    assert both.decision is Decision.pending_approval, both.reason
    assert "also without the judge-scored items" in both.reason

    # The cycle's MLflow run carries the calibration.
    client = use_mlflow(ctx.settings)
    run = client.get_run(report.cycle_run_id)
    assert run.data.metrics["judge.kappa"] == pytest.approx(0.2)
    assert run.data.metrics["judge.items"] == 40 and run.data.metrics["judge.agreement"] == 0.6
    assert run.data.tags["flywheel.judge_trusted"] == "false"


def test_calibrating_with_no_expert_review_says_what_to_send(cli: Cli) -> None:
    shown = cli("judge", "calibrate")
    assert "0 items" in shown.stdout and "confusion" not in shown.stdout  # no table of zeros
    assert "no expert review to calibrate on: send `expert_review` events" in shown.stderr
    assert "NOT trusted alone by the gate" in shown.stderr
