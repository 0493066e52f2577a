"""The MLflow record of a cycle, exactly as SPEC.md names it.

One parent run per cycle (tag ``flywheel.kind=cycle``); nested runs for the champion baseline
(``flywheel.kind=champion``) and for every candidate, tagged ``flywheel.kind``,
``flywheel.candidate_id``, ``flywheel.cycle_id``, ``flywheel.decision``, with metric
``golden_score`` and ``golden.<category>``, param ``golden_version``, the per-example results as
a table, the golden set as the dataset input, the prompt diff as an artifact, and MLflow's link
to the registry version of the prompt it was evaluated with; each golden answer is also a trace
on the run (:mod:`evals.traces`), so MLflow's evaluation pages show and compare the answers.

Runs are found by their tags before one is created, so a resumed cycle never duplicates them.
Everything uses ``MlflowClient`` with explicit run ids: no global active run, safe in threads.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from typing import Any

from flywheel.evals.calibration import JudgeCalibration
from flywheel.evals.golden import GoldenSet
from flywheel.evals.runner import EvalResult
from flywheel.evals.traces import log_answers

KIND = "flywheel.kind"
CANDIDATE = "flywheel.candidate_id"
CYCLE = "flywheel.cycle_id"
DECISION = "flywheel.decision"
PARENT = "flywheel.parent_version"  # the version a candidate was drafted from: what to compare it with

log = logging.getLogger(__name__)


def _metric_key(category: str) -> str:
    return "golden." + re.sub(r"[^\w\-./ ]", "_", category)


def _segment_key(segment: str) -> str:
    return _metric_key("segment." + segment)


def experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


def find_run(client: Any, exp_id: str, tags: dict[str, str]) -> str | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([exp_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def cycle_run(client: Any, exp_id: str, cycle_id: str) -> str:
    found = find_run(client, exp_id, {KIND: "cycle", CYCLE: cycle_id})
    if found:
        return found
    run = client.create_run(exp_id, run_name=cycle_id, tags={KIND: "cycle", CYCLE: cycle_id})
    return run.info.run_id


def golden_dataset_input(golden: GoldenSet) -> Any:
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag

    df = pd.DataFrame([i.model_dump() for i in golden.items])
    with warnings.catch_warnings():  # a local path matches two equivalent source types; either is right
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(df, source=str(golden.path), name=golden.path.name, digest=golden.version[:16])
    return DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "golden")])


def log_variant(
    client: Any,
    exp_id: str,
    parent_run_id: str,
    *,
    cycle_id: str,
    kind: str,
    candidate_id: str,
    result: EvalResult,
    golden: GoldenSet,
    decision: str | None,
    metrics: dict[str, float],
    params: dict[str, Any],
    tags: dict[str, str],
    artifacts: dict[str, str],
    scored: bool = True,
    prompt_name: str | None = None,
    run_name: str | None = None,
    judge_model: str | None = None,
    trace_items: int | None = None,
) -> str:
    """Create (or find, when resuming) the nested run of one variant and log its evaluation.
    ``scored=False`` (an evaluation the endpoint broke off) logs the rows and error counts but no
    score: a missing metric, not a 0.0 that reads as a verdict. With ``prompt_name``, the run is
    linked to the registry version of that prompt the variant was evaluated with. Each golden
    answer also becomes a trace on the run (the first ``trace_items``; None: all), which MLflow's
    evaluation pages show and compare; a resumed run found by its tags is not logged again."""
    from mlflow.entities import Metric, Param, RunTag

    base_tags = {KIND: kind, CANDIDATE: candidate_id, CYCLE: cycle_id}
    run_id = find_run(client, exp_id, base_tags)
    if run_id is not None:
        return run_id
    run = client.create_run(
        exp_id, run_name=run_name or candidate_id, tags={**base_tags, "mlflow.parentRunId": parent_run_id}
    )
    run_id = run.info.run_id
    if prompt_name and result.variant.prompt_version:
        link_prompt_version(client, run_id, prompt_name, result.variant.prompt_version)
    now = int(time.time() * 1000)
    all_metrics: dict[str, float] = {
        "golden_errors": float(result.errors),
        "golden_items": float(len(result.rows)),
        "eval_seconds": result.seconds,
        **metrics,
    }
    if scored and result.mean is not None:
        all_metrics["golden_score"] = result.mean
    per_cat: dict[str, list[float]] = {}
    for r in result.rows:
        if scored and r.score is not None:
            per_cat.setdefault(r.category, []).append(r.score)
    for category, values in per_cat.items():
        all_metrics[_metric_key(category)] = sum(values) / len(values)
    segments = golden.segments()
    per_seg: dict[str, list[float]] = {}
    for r in result.rows:
        if scored and r.score is not None and r.id in segments:
            per_seg.setdefault(segments[r.id], []).append(r.score)
    for segment, values in per_seg.items():
        all_metrics[_segment_key(segment)] = sum(values) / len(values)
    all_params = {
        "golden_version": golden.version,
        "golden_path": str(golden.path),
        "model": result.variant.model,
        "prompt_version": result.variant.prompt_version,
        "index_version": result.variant.index_version,
        "eval_cached": result.cached,
        **params,
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in all_metrics.items() if v is not None],
        params=[Param(k, str(v)[:6000]) for k, v in all_params.items() if v is not None],
        tags=[RunTag(k, str(v)[:5000]) for k, v in {**tags, DECISION: decision or "evaluated"}.items()],
    )
    client.log_inputs(run_id, datasets=[golden_dataset_input(golden)])
    import mlflow

    mlflow.log_table(
        {k: [getattr(r, k) for r in result.rows] for k in result.rows[0].model_fields},
        artifact_file="eval_results.json",
        run_id=run_id,
    )
    for name, text in artifacts.items():
        client.log_text(run_id, text, name)
    log_answers(client, exp_id, run_id, result, tags=base_tags, judge_model=judge_model, limit=trace_items)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def run_label(kind: str, candidate_id: str, version: str | None) -> str:
    """A run name that reads in MLflow's narrow run column: what distinguishes it comes first
    (``v7 prompt cf2b43``, ``champion v6``); the full id stays in the ``flywheel.candidate_id`` tag."""
    if kind == "champion":
        return f"champion v{version}" if version else "champion"
    short = candidate_id.removeprefix(f"{kind}-")[:6]
    head = (f"v{version}" if len(version) <= 8 else version[:16]) if version else ""
    return " ".join(p for p in (head, kind, short) if p)


def link_prompt_version(client: Any, run_id: str, name: str, version: str) -> None:
    """MLflow's own prompt-run link (the run's ``mlflow.linkedPrompts`` tag, which the run page
    shows), so the registry version a variant was evaluated with is one click from its run; the
    ``prompt_version`` param says the same but links nothing. A version the registry no longer has
    (deleted by hand) is logged, not raised: the cycle's record is worth more than the link."""
    from mlflow.exceptions import MlflowException

    try:
        prompt = client.get_prompt_version(name, version)
        if prompt is None:
            raise MlflowException(f"prompt {name!r} has no version {version}")
        client.link_prompt_version_to_run(run_id, prompt)
    except MlflowException as exc:
        log.warning("run %s not linked to prompt %s version %s: %s", run_id, name, version, exc)


def log_judge_calibration(client: Any, run_id: str, calibration: JudgeCalibration) -> None:
    """The cycle's judge calibration on its run: metrics ``judge.items``, ``judge.agreement`` and
    ``judge.kappa`` (absent when undefined: a missing metric, not a 0 that reads as a verdict), the
    screening judge's as ``screening_judge.*``, tags
    saying whether the gate trusted the judge and why, and the whole result as JSON."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics = {
        "judge.items": calibration.items,
        "judge.agreement": calibration.agreement,
        "judge.kappa": calibration.kappa,
    }
    if (screening := calibration.screening) is not None:
        metrics |= {
            "screening_judge.items": screening.items,
            "screening_judge.agreement": screening.agreement,
            "screening_judge.kappa": screening.kappa,
        }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None],
        tags=[
            RunTag("flywheel.judge_trusted", str(calibration.trusted).lower()),
            RunTag("flywheel.judge_why", calibration.why[:5000]),
            RunTag("flywheel.judge_model", calibration.judge_model),
        ],
    )
    client.log_dict(run_id, calibration.public(), "judge_calibration.json")


def set_tags(client: Any, run_id: str, tags: dict[str, str]) -> None:
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v)[:5000])
