"""The promotion gate: every evaluation logged to MLflow first, then the policy's decisions, one
winner per champion slot, and promotion when auto-approved."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.candidates import Candidate, Decision, Outcome
from flywheel.evals.calibration import JudgeCalibration
from flywheel.evals.golden import GoldenSet
from flywheel.evals.policy import WithoutJudge
from flywheel.evals.runner import EvalResult
from flywheel.improvers.deferral import mark_carried
from flywheel.improvers.records import diff_markdown  # noqa: F401 - where the tests and tools find it
from flywheel.improvers.registry import improver, slots
from flywheel.loop.checkpoints import checkpoint
from flywheel.loop.context import CycleContext, EndpointFailed
from flywheel.loop.report import CycleReport
from flywheel.loop.setup_notes import setup_notes

# Whose golden answers become MLflow traces: what a person may approve or watch (the champion's too).
# The gate rejected the rest on its figures; their answers stay in each run's eval_results.json, and
# tracing them cost about 1.6 s per variant (7 ms an item, MLflow's ORM) for nobody to read.
SHOWN_ANSWERS = frozenset({Decision.pending_approval, Decision.promoted, Decision.canary, Decision.deferred})


def evaluation_outage(champion: EvalResult, results: dict[str, EvalResult], max_error_rate: float) -> str | None:
    """Why this cycle's evaluation cannot decide anything, or None. Items that errored beyond the
    policy's bound mean the endpoint failed: that is an outage to report, never a verdict on a
    candidate (a fully errored candidate is not a 0.0 candidate)."""
    broken = [
        (label, res)
        for label, res in (("the champion", champion), *results.items())
        if res.rows and res.errors / len(res.rows) > max_error_rate
    ]
    if not broken:
        return None
    label, worst = max(broken, key=lambda pair: pair[1].errors)
    return (
        f"the evaluation failed: {len(broken)} of {len(results) + 1} variants have errored golden items beyond "
        f"the policy's {max_error_rate:.0%} ({label}: {worst.errors} of {len(worst.rows)}; first: "
        f"{worst.first_error()}); nothing was scored or promoted"
    )


def _decide(cand: Candidate, res: EvalResult, comparison: Any, policy: Any, without_judge: Any = None) -> None:
    """The policy's decision on a candidate whose evaluation is complete."""
    from flywheel.evals.policy import judge_candidate

    verdict = judge_candidate(comparison, res.errors, len(res.rows), policy, without_judge=without_judge)
    check = improver(cand.kind).check(cand)  # the kind's own check (an index's retrieval)
    if check is not None and not check.passed:
        cand.decision, cand.reason = Decision.rejected, check.reason + "; " + verdict.text
    else:
        cand.decision = Decision.pending_approval if verdict.passed else Decision.rejected
        cand.reason = verdict.text + (f"; {check.reason}" if check else "")


def _supersede_losers(evaluated: Sequence[Candidate], category_gain: float) -> list[Candidate]:
    """One candidate per champion slot waits (production holds one of each; improvers sharing a slot
    compete for it): of those that passed, the one that fixes the most, the best golden score breaking
    ties. Another that passed is superseded only when the waiting one fixes at least what it fixes; one
    that fixes something else (another cluster, another golden category) could not be merged with it and
    is ``deferred``: its clusters are redrafted in the next cycle against the new champion, never
    silently dropped."""
    winners: list[Candidate] = []
    for slot in slots():
        passed = [c for c in evaluated if c.decision is Decision.pending_approval and c.slot is slot]
        if not passed:
            continue
        best = max(
            passed,
            key=lambda c: (len(c.gains(category_gain)), c.golden_score or 0.0, -len(c.template or ""), c.candidate_id),
        )
        winners.append(best)
        mine = best.gains(category_gain)
        for other in passed:
            if other is best:
                continue
            extra = sorted(other.gains(category_gain) - mine)
            if extra:
                other.decision = Decision.deferred
                left_out = next((why for c in (other, best) if (why := c.payload.why_not_merged())), None)
                other.reason = (
                    f"deferred: fixes {', '.join(extra)}, which {best.candidate_id} (waiting) does not"
                    + (f"; {left_out}" if left_out else "; not merged with it")
                    + f"; redrafted in the next cycle against the new champion; passed the policy: "
                    f"{other.reason}"
                )
            else:
                other.decision = Decision.superseded
                other.reason = (
                    f"superseded by {best.candidate_id} (golden score {best.golden_score:.3f} vs "
                    f"{other.golden_score:.3f}), which fixes everything it fixes; passed the policy: "
                    f"{other.reason}"
                )
    return winners


def distrusted_judge(
    golden: GoldenSet, default_scorer: str, calibration: JudgeCalibration | None
) -> tuple[set[str], str | None]:
    """The judge-scored item ids, and why the judge may not pass a candidate alone (None: it may,
    or it scores nothing). A judge not calibrated this cycle is not trusted."""
    judged = golden.judge_scored(default_scorer)
    if not judged or (calibration is not None and calibration.trusted):
        return judged, None
    return judged, ("judge not calibrated: " + calibration.why) if calibration else "judge not calibrated this cycle"


def _without_judge(
    res: EvalResult, champion: EvalResult, judged: set[str], why: str, segments: dict[str, str], resamples: int
) -> WithoutJudge:
    from flywheel.evals.stats import compare

    rest = set(champion.scores) - judged
    try:
        comparison = compare(
            res.scores, champion.scores, champion.categories, resamples=resamples, segments=segments, only=rest
        )
    except ValueError:  # every item both scored is judge-scored
        comparison = None
    return WithoutJudge(comparison=comparison, why=why)


@dataclass
class _Judging:
    """What every candidate of this cycle is judged on besides its scores: the golden set's segments,
    the judge-scored items, and why the judge may not pass a candidate alone (None: it may)."""

    segments: dict[str, str]
    judged: set[str]
    distrust: str | None


@dataclass
class _Runs:
    """Where this cycle's evaluations are logged: the MLflow client, the experiment, the cycle's run,
    and what every variant's run shares (the golden set, how many answers become traces)."""

    client: Any
    exp_id: str
    parent: str
    golden: GoldenSet
    answers: dict[str, Any]


def gate_step(
    ctx: CycleContext,
    champion: EvalResult,
    results: dict[str, EvalResult],
    auto_approve: bool,
    calibration: JudgeCalibration | None = None,
) -> CycleReport:
    """Log every evaluation to MLflow, then decide; promotion (auto-approve) only after logging.
    An evaluation outage is logged too (decision ``error``, no score) and then ends the cycle.
    ``calibration`` is this cycle's judge calibration: logged on the cycle's run, and unless it
    vouches for the judge, judge-scored items alone cannot pass a candidate."""
    from flywheel.evals.tracking import log_judge_calibration
    from flywheel.loop.autonomy import release, run_mode
    from flywheel.loop.promotion import supersede_pending

    policy = ctx.settings.policy
    outage = evaluation_outage(champion, results, policy.max_error_rate)
    golden = ctx.golden_for(champion.golden_version, *(r.golden_version for r in results.values()))
    runs = _open_runs(ctx, golden)
    if calibration is not None:
        log_judge_calibration(runs.client, runs.parent, calibration)
    judging = _Judging(golden.segments(), *distrusted_judge(golden, ctx.settings.eval.default_scorer, calibration))
    champion_run = _log_champion(ctx, runs, champion, outage)
    against = ctx.champions
    with ctx.state() as state:
        evaluated: list[Candidate] = []
        for cid, res in results.items():
            cand = state.candidate(cid)
            assert cand is not None
            if cand.decision is None and outage is not None:
                cand.decision, cand.reason = Decision.error, outage
            elif cand.decision is None:
                _judge(ctx, cand, res, champion, judging)
            cand.evaluated_against = cand.evaluated_against or against
            evaluated.append(cand)
        winners = _supersede_losers(evaluated, policy.category_gain)
        for cand in evaluated:
            if cand.mlflow_run_id is None:
                cand.mlflow_run_id = _log_candidate(ctx, runs, cand, results[cand.candidate_id])
            state.save_candidate(cand)
            outcome = Outcome.of(cand.decision)
            for cid in cand.cluster_ids:
                state.record_attempt(cid, ctx.cycle_id, cand.kind, cand.candidate_id, cand.outcome_for(cid, outcome))
        if outage is not None:
            raise EndpointFailed(outage)
        checkpoint("gate-logged")
        mark_carried(state, ctx.cycle_id)
        for winner in winners:  # wait, promote, or start as a canary (policy.auto_approve)
            supersede_pending(ctx.settings, state, winner)
            release(ctx.settings, state, winner, run_mode(auto_approve, policy.mode))
        evaluated = [state.candidate(c.candidate_id) or c for c in evaluated]
    return _report(ctx, champion, results, evaluated, runs, champion_run, calibration, judging)


def _open_runs(ctx: CycleContext, golden: GoldenSet) -> _Runs:
    from flywheel.evals.tracking import cycle_run, experiment_id

    client = ctx.mlflow
    exp_id = experiment_id(client, ctx.settings.experiment)
    return _Runs(
        client=client,
        exp_id=exp_id,
        parent=cycle_run(client, exp_id, ctx.cycle_id),
        golden=golden,
        answers={"judge_model": ctx.settings.judge_model, "trace_items": ctx.settings.eval.trace_items},
    )


def _log_champion(ctx: CycleContext, runs: _Runs, champion: EvalResult, outage: str | None) -> str:
    """The champion's run (decision ``error`` and unscored in an outage); its id."""
    from flywheel.evals.tracking import log_variant, run_label

    return log_variant(
        runs.client,
        runs.exp_id,
        runs.parent,
        cycle_id=ctx.cycle_id,
        kind="champion",
        candidate_id=f"champion-{ctx.cycle_id}",
        result=champion,
        golden=runs.golden,
        decision="error" if outage else "champion",
        metrics={},
        params={"prompt_name": ctx.settings.prompt_name},
        tags={"flywheel.prompt_version": ctx.champion_version},
        artifacts={"prompt.txt": ctx.champion_template},
        scored=outage is None,
        prompt_name=ctx.settings.prompt_name,
        run_name=run_label("champion", "", ctx.champion_version),
        **runs.answers,
    )


def _judge(ctx: CycleContext, cand: Candidate, res: EvalResult, champion: EvalResult, judging: _Judging) -> None:
    """Compare a candidate with the champion on the golden items, keep the figures on it, decide."""
    from flywheel.evals.stats import compare

    resamples = ctx.settings.eval.bootstrap_resamples
    comparison = None
    if res.scores:
        comparison = compare(
            res.scores, champion.scores, champion.categories, resamples=resamples, segments=judging.segments
        )
        cand.golden_score, cand.champion_score = comparison.golden_score, comparison.champion_score
        cand.delta, cand.ci_low, cand.ci_high = comparison.delta, comparison.ci_low, comparison.ci_high
        cand.per_category, cand.category_deltas = comparison.per_category, comparison.category_deltas
        cand.per_segment, cand.segment_deltas = comparison.per_segment, comparison.segment_deltas
    without = (
        _without_judge(res, champion, judging.judged, judging.distrust, judging.segments, resamples)
        if judging.distrust and comparison is not None
        else None
    )
    _decide(cand, res, comparison, ctx.settings.policy, without)


def _log_candidate(ctx: CycleContext, runs: _Runs, cand: Candidate, res: EvalResult) -> str:
    """A candidate's run with its figures, its kind's params and artifacts, and its answers as traces
    when someone may read them (:data:`SHOWN_ANSWERS`); its id."""
    from flywheel.evals.tracking import PARENT, log_variant, run_label

    kind = improver(cand.kind)
    figures = {
        "delta": cand.delta,
        "ci_low": cand.ci_low,
        "ci_high": cand.ci_high,
        "champion_score": cand.champion_score,
    }
    return log_variant(
        runs.client,
        runs.exp_id,
        runs.parent,
        cycle_id=ctx.cycle_id,
        kind=cand.kind,
        candidate_id=cand.candidate_id,
        result=res,
        golden=runs.golden,
        decision=cand.decision,
        metrics={**{k: v for k, v in figures.items() if v is not None}, **kind.mlflow_metrics(cand)},
        params={
            "parent_version": cand.parent,
            "cluster_ids": ",".join(cand.cluster_ids),
            "prompt_name": ctx.settings.prompt_name,
            **kind.mlflow_params(cand),
        },
        tags={
            "flywheel.reason": cand.reason,
            f"flywheel.{cand.kind}_version": cand.version or "",
            **({PARENT: cand.parent} if cand.parent else {}),
        },
        artifacts=kind.artifacts(cand),
        scored=cand.decision is not Decision.error,
        prompt_name=ctx.settings.prompt_name,
        run_name=run_label(cand.kind, cand.candidate_id, cand.version),
        **{**runs.answers, "trace_items": runs.answers["trace_items"] if cand.decision in SHOWN_ANSWERS else 0},
    )


def _report(
    ctx: CycleContext,
    champion: EvalResult,
    results: dict[str, EvalResult],
    evaluated: list[Candidate],
    runs: _Runs,
    champion_run: str,
    calibration: JudgeCalibration | None,
    judging: _Judging,
) -> CycleReport:
    from flywheel.evals.stats import category_means

    segments = judging.segments
    return CycleReport(
        cycle_id=ctx.cycle_id,
        golden_version=runs.golden.version,
        champion_score=champion.mean,
        candidates=evaluated,
        resumed=ctx.resumed,
        champion_run_id=champion_run,
        cycle_run_id=runs.parent,
        champion_per_category=category_means(champion.scores, champion.categories),
        category_n=dict(Counter(champion.categories[i] for i in champion.scores)),
        champion_per_segment=category_means({i: v for i, v in champion.scores.items() if i in segments}, segments),
        judge=calibration,
        notes=judge_notes(judging.judged, judging.distrust, calibration) + setup_notes(ctx, champion, results),
    )


def judge_notes(judged: set[str], distrust: str | None, calibration: JudgeCalibration | None) -> list[str]:
    """What the cycle says about its judge when the judge cannot be trusted alone."""
    if distrust:
        return [
            (
                f"{len(judged)} golden items are scored by the LLM judge, which is not trusted alone ({distrust}): "
                "a candidate also had to pass the policy on the other items. Calibrate it with expert reviews "
                "(`flywheel judge calibrate`)"
            )
        ]
    if calibration is not None and not calibration.trusted:
        return [
            (
                f"the LLM judge is not calibrated ({calibration.why}); no golden item is judge-scored, so the gate "
                "did not depend on it"
            )
        ]
    return []
