"""The Prefect flow ``improvement-cycle``: triage, every installed improver on the clusters it
selects, golden-set evaluation of the champion and every candidate, then the promotion gate.

The flow only orchestrates: each task calls one step of :mod:`loop`. Tasks are coarse
(a whole improver, a whole evaluation), those that call an LLM retry, and every result is
persisted and cached under the cycle id, so a cycle that was killed and started again resumes
the same cycle and reuses what finished (the state store and MLflow tags guard the same).
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import ExitStack
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.futures import wait
from pydantic import BaseModel, Field

import flywheel.flows  # noqa: F401 - run by file path (a deployment): the flow-run face first (masking, expected errors)
from flywheel import llm_guard
from flywheel.candidates import Decision
from flywheel.config import Settings, load_settings_for_flow
from flywheel.config_sections import ApprovalMode, AutoApprove
from flywheel.errors import Interrupted
from flywheel.evals.calibration import JudgeCalibration
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import EvalResult
from flywheel.flows.scaleout import cycle_runner, embed_ahead, evaluate_on
from flywheel.improvers.base import ImproverRun, Proposal
from flywheel.improvers.registry import improver, improvers, stages
from flywheel.loop.calibration import calibration_step
from flywheel.loop.checkpoints import checkpoint
from flywheel.loop.context import CycleContext, EndpointFailed, begin, record_candidates
from flywheel.loop.cycle_lock import cycle_lock
from flywheel.loop.diagnosis_step import diagnose_step
from flywheel.loop.evaluate import evaluate_step, evaluation_keys, variant_for
from flywheel.loop.gate import gate_step
from flywheel.loop.outcomes import cluster_outcomes, cluster_work
from flywheel.loop.report import CycleReport, cluster_summaries, fail, finish, reread_candidates
from flywheel.loop.triage_step import triage_step
from flywheel.runtime import runtime_for
from flywheel.schemas import FailureCluster

_MLFLOW_WRITES = threading.Lock()  # prompt registration from parallel improver tasks, one at a time


class CycleParameters(BaseModel):
    """What an operator can set when starting a cycle from the Prefect UI."""

    auto_approve: AutoApprove = Field(
        False,
        description="What becomes of the winners: false, as `policy.auto_approve` says (by default they "
        'wait for a person); true, promoted on the policy alone; "canary", started as a canary at '
        "`watch.canary_percent`, one at a time, which the watch promotes or rolls back: no person in the loop, "
        "and the run never waits for approval.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='Setting overrides (as in flywheel.toml), e.g. {"golden": "evals/golden/default.jsonl"}. '
        "Secrets are not accepted here: set OPENAI_API_KEY on the worker.",
    )
    wait_for_approval: bool | None = Field(
        None,
        description="Pause with an approval form when candidates wait. Default: when run by a deployment "
        "(approval.wait_in_deployments); `flywheel cycle` never waits.",
    )


def _settings(params: CycleParameters) -> Settings:
    """The run's settings: its ``config`` overrides, and ``auto_approve = "canary"`` as the policy
    (the gate reads the mode there; true stays the gate's own argument, as ``--auto-approve``)."""
    config = dict(params.config)
    if params.auto_approve == "canary":
        policy = config.get("policy")
        config["policy"] = {**(policy if isinstance(policy, dict) else {}), "auto_approve": "canary"}
    return load_settings_for_flow(config)


def _key(*parts: Any) -> str:
    """A task cache key. Prefect stores results in a file named after it: keep it short and path-safe."""
    return "flywheel-" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


@task(name="begin", persist_result=False, cache_policy=NO_CACHE)
def begin_task(settings: Settings) -> CycleContext:
    return begin(runtime_for(settings))


@task(
    name="triage",
    persist_result=True,
    cache_key_fn=lambda ctx, p: _key(p["ctx"].settings.home.resolve(), p["ctx"].cycle_id, "triage"),
)
def triage_task(ctx: CycleContext) -> list[FailureCluster]:
    return triage_step(ctx.runtime)


@task(name="diagnose", persist_result=False, cache_policy=NO_CACHE)
def diagnose_task(ctx: CycleContext, clusters: list[FailureCluster]) -> list[FailureCluster]:
    """Clusters triage left in `other` get a root cause and category from the drafting model
    (cached per cycle in the state store: a resumed cycle asks nothing again)."""
    rt = ctx.runtime
    return diagnose_step(ctx.settings, rt.state, rt.feedback, ctx.cycle_id, clusters)


@task(
    name="improve",
    persist_result=True,
    cache_key_fn=lambda ctx, p: _key(
        p["ctx"].settings.home.resolve(),
        p["ctx"].cycle_id,
        p["kind"],
        ",".join(sorted(c.cluster_id for c in p["clusters"])),
    ),
    task_run_name="improve-{kind}",
)
def improve_task(ctx: CycleContext, kind: str, clusters: list[FailureCluster], protected: list[str]) -> Proposal:
    """One unit of an improver's work (a prompt cluster's drafting, an index refresh, a fine-tune)."""
    with _MLFLOW_WRITES:
        return improver(kind).propose(ctx, clusters, protected)


@task(
    name="combine",
    persist_result=True,
    cache_key_fn=lambda ctx, p: _key(
        p["ctx"].settings.home.resolve(),
        p["ctx"].cycle_id,
        p["kind"],
        "combine",
        ",".join(sorted(c.candidate_id for u in p["proposals"] for c in u.candidates)),
    ),
    task_run_name="combine-{kind}",
)
def combine_task(
    ctx: CycleContext, kind: str, proposals: list[Proposal], clusters: list[FailureCluster], protected: list[str]
) -> Proposal:
    """An improver's units as one proposal (the prompt improver's merge of its winners)."""
    with _MLFLOW_WRITES:
        proposal = improver(kind).combine(ctx, proposals, clusters, protected)
    record_candidates(ctx, proposal.candidates)
    return proposal


def improve(ctx: CycleContext, clusters: list[FailureCluster], retrying: dict[str, Any]) -> list[ImproverRun]:
    """Every installed improver on the clusters it selects, stage by stage under each stage's deadline;
    an improver's units run as concurrent tasks."""
    logger = get_run_logger()
    protected = ctx.protected_texts()
    runs = []
    for stage in stages():
        with llm_guard.stage(stage, ctx.settings.deadlines.of(stage)):
            for imp in (i for i in improvers() if i.stage == stage):
                chosen = imp.select(ctx, clusters)
                logger.info("%d clusters; %s improver on %d", len(clusters), imp.name, len(chosen))
                futures = [
                    improve_task.with_options(**retrying).submit(ctx, imp.name, unit, protected)
                    for unit in imp.units(chosen)
                ]
                wait(futures)
                proposal = combine_task.with_options(**retrying)(
                    ctx, imp.name, [f.result() for f in futures], chosen, protected
                )
                for note in proposal.notes:
                    logger.info(note)
                runs.append(ImproverRun(kind=imp.name, chosen=chosen, proposal=proposal))
    return runs


@task(
    name="evaluate",
    persist_result=True,
    cache_key_fn=lambda ctx, p: _key(
        p["ctx"].settings.home.resolve(),
        p["ctx"].cycle_id,
        "eval",
        ",".join(evaluation_keys(p["ctx"].settings, p["ctx"].golden, p["variants"])),
    ),
)
def evaluate_task(ctx: CycleContext, variants: list[Variant]) -> list[EvalResult]:
    """One batch: the champion and every candidate share the endpoint's concurrency limit."""
    return evaluate_step(ctx.runtime, variants, golden=ctx.golden)


@task(name="calibrate-judge", persist_result=False, cache_policy=NO_CACHE)
def calibrate_task(ctx: CycleContext) -> JudgeCalibration | None:
    """The judge against expert reviews, when the golden set has judge-scored items or expert
    reviews exist (cached in the state store: a resumed cycle asks nothing again)."""
    return calibration_step(ctx)


@task(name="gate", persist_result=False, cache_policy=NO_CACHE)
def gate_task(
    ctx: CycleContext,
    champion: EvalResult,
    results: dict[str, EvalResult],
    auto_approve: bool,
    calibration: JudgeCalibration | None = None,
) -> CycleReport:
    return gate_step(ctx, champion, results, auto_approve, calibration)


def publish_report(report: CycleReport) -> None:
    """The cycle's report, candidate table and chart as Prefect artifacts under stable keys (the UI
    keeps every cycle's version of each)."""
    from flywheel.evals import report as r

    create_markdown_artifact(
        key=r.REPORT_KEY,
        description=f"Flywheel cycle {report.cycle_id}",
        markdown=r.report_markdown(
            cycle_id=report.cycle_id,
            golden_version=report.golden_version,
            champion_score=report.champion_score,
            clusters=report.clusters,
            candidates=report.candidates,
            improver_notes=report.improver_notes,
            chart_link=report.chart_link,
            outcomes=report.outcomes,
            judge=report.judge,
            notes=report.notes,
            champion_per_category=report.champion_per_category,
            champion_per_segment=report.champion_per_segment,
        ),
    )
    create_table_artifact(
        key=r.TABLE_KEY, table=r.candidate_rows(report.candidates), description=f"Candidates of cycle {report.cycle_id}"
    )
    if report.chart_png:
        create_markdown_artifact(
            key=r.CHART_KEY,
            markdown=r.chart_markdown(report.chart_png, report.cycle_id, report.chart_link),
            description=f"Golden score per cycle; candidates vs champion ({report.cycle_id})",
        )


def _improvement_cycle(params: CycleParameters = CycleParameters()) -> dict[str, Any]:  # noqa: B008
    """One turn of the flywheel: triage -> improvers -> golden-set evaluation -> gate."""
    logger = get_run_logger()
    settings = _settings(params)
    lock = ExitStack()  # the state directory's cycle lock: held while the cycle works, not while it waits
    lock.enter_context(cycle_lock(settings.ensure_home(), on_wait=logger.info))
    try:
        return _locked_cycle(params, settings, lock)
    finally:
        lock.close()


def _locked_cycle(params: CycleParameters, settings: Settings, lock: ExitStack) -> dict[str, Any]:
    """The cycle under its lock; the lock is let go (``lock.close()``) before waiting for a person."""
    logger = get_run_logger()
    ctx = begin_task(settings)
    logger.info(
        "cycle %s%s, champion prompt v%s", ctx.cycle_id, " (resumed)" if ctx.resumed else "", ctx.champion_version
    )
    with cycle_runner(settings) as dask:
        try:
            if dask is not None:
                embed_ahead(dask, settings)
            retrying = {
                "retries": settings.llm_task_retries,
                "retry_delay_seconds": settings.llm_task_retry_delay,
                "retry_condition_fn": _worth_retrying,
            }
            deadlines = settings.deadlines
            with llm_guard.stage("triage", deadlines.triage):
                clusters = diagnose_task.with_options(**retrying)(ctx, triage_task(ctx))
            runs = improve(ctx, clusters, retrying)
            candidates = [c for run in runs for c in run.proposal.candidates]
            checkpoint("improve")
            variants = [variant_for(ctx, None)] + [variant_for(ctx, c) for c in candidates]
            with llm_guard.stage("evaluation", deadlines.evaluation):
                if dask is None:  # one batch in this process: the variants share one client and one limit
                    champion, *rest = evaluate_task.with_options(**retrying)(ctx, variants)
                else:
                    champion, *rest = evaluate_on(dask, settings, variants)
            checkpoint("evaluate")
            results = {c.candidate_id: r for c, r in zip(candidates, rest, strict=True)}
            with llm_guard.stage("calibration", deadlines.calibration):
                calibration = calibrate_task(ctx)
            if calibration is not None and not calibration.trusted:
                logger.warning("judge not trusted alone: %s", calibration.why)
            report = gate_task(ctx, champion, results, params.auto_approve is True, calibration)
        except EndpointFailed as exc:
            fail(ctx, str(exc))
            raise
        except (KeyboardInterrupt, TerminationSignal):
            llm_guard.stop_requests()  # the task runner waits for its threads: let them end now
            fail(ctx, "interrupted by a signal; `flywheel cycle` resumes it", status="interrupted")
            raise
    work = cluster_work(ctx, clusters, runs)
    report.clusters = cluster_summaries(clusters, {cid: w.detail for cid, w in work.items() if w.detail is not None})
    report.outcomes = cluster_outcomes(ctx, clusters, work, candidates=report.candidates)
    report.sections = {run.kind: run.proposal.report.model_dump(mode="json") for run in runs if run.proposal.report}
    report.improver_notes = [
        f"{improver(run.kind).title or run.kind}: {note}" for run in runs for note in run.proposal.notes
    ]
    finish(ctx, report)
    publish_report(report)
    _resume_superseded(settings)
    lock.close()
    if _waits_for_approval(params, settings) and any(
        c.decision is Decision.pending_approval for c in report.candidates
    ):
        from prefect.runtime import flow_run

        from flywheel.evals.evidence import evidence_markdown
        from flywheel.flows.approval import mlflow_run_link, wait_for_approval

        waiting = [c for c in report.candidates if c.decision is Decision.pending_approval]
        evidence = evidence_markdown(
            waiting,
            champion,
            results,
            champion_score=report.champion_score,
            run_link=mlflow_run_link(settings),
            deferred=[c for c in report.candidates if c.decision is Decision.deferred],
        )
        wait_for_approval(
            settings, flow_run.id, report.cycle_id, report.champion_score, report.candidates, evidence=evidence
        )
        report.candidates = reread_candidates(ctx, report.candidates)
        publish_report(report)
    return report.model_dump(mode="json")


# Decorated under another name: Dask pickles the flow (in each task's context) by reference to its
# function, and `improvement_cycle` names the Flow object.
improvement_cycle = flow(_improvement_cycle, name="improvement-cycle", log_prints=False, validate_parameters=True)


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """A task that failed because the endpoint was given up on, its stage's deadline passed, or the
    process is stopping would only meet the same refusal again."""
    return not llm_guard.gave_up()


def _resume_superseded(settings: Settings) -> None:
    """Older runs still paused for candidates this cycle superseded have nothing left to decide."""
    from flywheel.flows.approval import resume_if_decided

    try:
        for run_id in resume_if_decided(settings):
            get_run_logger().info("resumed flow run %s: its candidates were decided or superseded", run_id)
    except Exception as exc:  # never fail a finished cycle over an older run's pause
        get_run_logger().warning("could not resume older runs waiting for approval: %s", exc)


def _waits_for_approval(params: CycleParameters, settings: Settings) -> bool:
    """Never when the policy decides (true or "canary": what is left pending then waits for a
    canary slot, not for this run); else as asked, by default only when run by a deployment."""
    if params.auto_approve or settings.policy.mode is not ApprovalMode.person:
        return False
    if params.wait_for_approval is not None:
        return params.wait_for_approval
    from prefect.runtime import deployment

    return settings.approval.wait_in_deployments and deployment.id is not None


def run_flow(*, auto_approve: bool | Literal["canary"] = False, overrides: dict[str, Any] | None = None) -> CycleReport:
    """Run the flow in this process (Prefect's ephemeral API unless PREFECT_API_URL is set). A signal
    ends it within seconds as ``Interrupted``: the cycle is recorded as interrupted and resumes."""
    from flywheel.flows.ephemeral import tie_ephemeral_server_to_this_process

    params = CycleParameters(
        auto_approve=auto_approve,
        config={k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in (overrides or {}).items()},
    )
    tie_ephemeral_server_to_this_process()
    try:
        return CycleReport.model_validate(improvement_cycle(params))
    except TerminationSignal as exc:  # Prefect's own SIGTERM bridge, when no handler of ours was installed
        raise Interrupted(
            "the cycle was stopped (SIGTERM); it is recorded as interrupted and the next `flywheel cycle` resumes it",
            exc.signal,
        ) from None
    finally:
        llm_guard.allow_requests()
