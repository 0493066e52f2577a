"""How a cycle ends: its report, the MLflow run closed with a chart, or the failure recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flywheel.candidates import Candidate
from flywheel.evals.calibration import JudgeCalibration
from flywheel.loop.context import CycleContext
from flywheel.schemas import ClusterOutcome, FailureCluster


class CycleReport(BaseModel):
    cycle_id: str
    golden_version: str
    champion_score: float | None
    candidates: list[Candidate]
    resumed: bool = False
    clusters: list[dict[str, Any]] = Field(default_factory=list)
    outcomes: list[ClusterOutcome] = Field(default_factory=list, description="What the cycle did with each cluster.")
    champion_run_id: str | None = None
    cycle_run_id: str | None = None
    improver_notes: list[str] = Field(
        default_factory=list, description="What the improvers said, each as `<title>: <note>` (a job still running)."
    )
    sections: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Each improver's own section, under its name (the fine-tuning jobs)."
    )
    champion_per_category: dict[str, float] = Field(default_factory=dict)
    champion_per_segment: dict[str, float] = Field(default_factory=dict)
    category_n: dict[str, int] = Field(
        default_factory=dict, description="Golden items the champion scored per category (the chart's intervals)."
    )
    judge: JudgeCalibration | None = Field(None, description="This cycle's judge calibration, when it ran one.")
    notes: list[str] = Field(
        default_factory=list, description="What the operator should know (e.g. an untrusted judge)."
    )
    chart_uri: str | None = None  # the chart logged to the cycle's MLflow run
    chart_link: str | None = None  # where an operator opens it (the MLflow UI when configured)
    chart_png: bytes | None = Field(None, exclude=True)  # the chart itself, for the Prefect artifact
    loop_velocity: dict[str, float | None] = Field(
        default_factory=dict, description="Median hours to a promoted fix and to one verified by `flywheel watch`."
    )

    def public(self) -> dict[str, Any]:
        return {
            "cycle_id": self.cycle_id,
            "golden_version": self.golden_version,
            "champion_score": self.champion_score,
            "candidates": [c.public() for c in self.candidates],
            "resumed": self.resumed,
            "clusters": self.clusters,
            "outcomes": [o.model_dump(mode="json") for o in self.outcomes],
            **self.sections,
            "mlflow_run_id": self.cycle_run_id,
            "loop_velocity": self.loop_velocity,
            "champion_per_segment": self.champion_per_segment,
            "judge": self.judge.public() if self.judge else None,
            "notes": self.notes,
        }


def finish(ctx: CycleContext, report: CycleReport, status: str = "done") -> None:
    from flywheel.candidates import Decision
    from flywheel.evals.tracking import set_tags
    from flywheel.loop.promotion import loop_velocity_hours, verified_hours

    with ctx.state() as state:
        promoted = state.candidates(decision=Decision.promoted)
        report.loop_velocity = {
            "promoted_hours": loop_velocity_hours(promoted),
            "verified_hours": verified_hours(promoted),
        }
        state.finish_cycle(
            report.cycle_id,
            status,
            report.golden_version,
            report.champion_score,
            {"candidates": [c.candidate_id for c in report.candidates], "clusters": report.clusters, **report.sections},
        )
    if report.cycle_run_id:
        client = ctx.mlflow
        set_tags(
            client, report.cycle_run_id, {"flywheel.status": status, "flywheel.candidates": str(len(report.candidates))}
        )
        log_chart(ctx, client, report)
        client.log_dict(
            report.cycle_run_id, [o.model_dump(mode="json") for o in report.outcomes], "cluster_outcomes.json"
        )
        client.log_metric(report.cycle_run_id, "champion_score", report.champion_score or 0.0)
        for name, hours in report.loop_velocity.items():
            if hours is not None:
                client.log_metric(report.cycle_run_id, f"loop_velocity.{name}", hours)
        client.set_terminated(report.cycle_run_id, "FINISHED")


def log_chart(ctx: CycleContext, client: Any, report: CycleReport) -> None:
    """The cycle's chart as an artifact of its MLflow run; where it is and how an operator opens it
    go on the report."""
    import tempfile

    from flywheel.evals.report import CHART_ARTIFACT, cycle_chart

    with ctx.state() as state:
        history = [
            (c["cycle_id"], c["champion_score"])
            for c in reversed(state.cycles(limit=30))
            if c["champion_score"] is not None and c["status"] == "done"
        ]
    png = cycle_chart(history, report.candidates, report.champion_per_category, category_n=report.category_n)
    folder, name = CHART_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(png)
        client.log_artifact(report.cycle_run_id, str(path), folder)
    run = client.get_run(report.cycle_run_id)
    report.chart_uri = f"{run.info.artifact_uri}/{CHART_ARTIFACT}"
    report.chart_png = png
    if ctx.settings.mlflow_ui_url:
        base = ctx.settings.mlflow_ui_url.rstrip("/")
        report.chart_link = f"{base}/get-artifact?path={CHART_ARTIFACT}&run_uuid={report.cycle_run_id}"
    else:
        report.chart_link = report.chart_uri


def reread_candidates(ctx: CycleContext, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates as the state store has them now (after approvals)."""
    with ctx.state() as state:
        return [state.candidate(c.candidate_id) or c for c in candidates]


def fail(ctx: CycleContext, reason: str, status: str = "failed") -> None:
    """Record how a cycle ended without a report: ``failed`` (it will not be resumed) or
    ``interrupted`` (stopped by a signal; the next ``flywheel cycle`` resumes it). Its MLflow run,
    if one was opened, is closed with the same status."""
    with ctx.state() as state:
        state.finish_cycle(ctx.cycle_id, status, None, None, {"error": reason})
    try:
        from flywheel.evals.tracking import CYCLE, KIND, find_run, set_tags

        client = ctx.mlflow
        exp = client.get_experiment_by_name(ctx.settings.experiment)
        run_id = find_run(client, exp.experiment_id, {KIND: "cycle", CYCLE: ctx.cycle_id}) if exp else None
        if run_id:
            set_tags(client, run_id, {"flywheel.status": status, "flywheel.error": reason})
            client.set_terminated(run_id, "FAILED" if status == "failed" else "KILLED")
    except Exception:  # the state store has the record; never hide the cycle's own error behind this
        pass


def cluster_summaries(
    clusters: Sequence[FailureCluster], drafting: Mapping[str, BaseModel] | None = None
) -> list[dict[str, Any]]:
    """Clusters as the cycle reports them: everything but the (long) list of event ids, and for
    those an improver drafted for, its detail (the prompt improver's rounds, rollouts, resolved
    shares and outcome)."""
    out = []
    for c in clusters:
        doc = c.model_dump(mode="json", exclude={"event_ids"})
        if drafting is not None:
            summary = drafting.get(c.cluster_id)
            doc["drafting"] = summary.model_dump(mode="json") if summary else None
        out.append(doc)
    return out
