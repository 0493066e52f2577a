"""The built-in fine-tuning improver as a plugin: a dataset of 1000+ curated examples, a job on
the endpoint, a model candidate once it succeeds (entry point ``flywheel.improvers: finetune``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from flywheel.candidates import BasePayload, Candidate, ChampionKind, FinetunePayload
from flywheel.config import Settings
from flywheel.evals.pipeline import Variant
from flywheel.improvers.base import BaseImprover, Proposal
from flywheel.improvers.context import CycleContext
from flywheel.schemas import FailureCluster
from flywheel.state import StateStore
from flywheel.wording import plural


class FinetuneImprover(BaseImprover):
    name: ClassVar[str] = "finetune"
    slot: ClassVar[ChampionKind] = ChampionKind.model
    payload_model: ClassVar[type[BasePayload]] = FinetunePayload
    title: ClassVar[str] = "fine-tuning"
    built_on: ClassVar[str] = "evaluated against"
    stage: ClassVar[str] = "finetune"

    def select(self, ctx: CycleContext, clusters: Sequence[FailureCluster]) -> list[FailureCluster]:
        """Triage routes here only clusters prompts failed on that have 1000+ usable examples."""
        return [c for c in clusters if c.route == self.name]

    def units(self, clusters: Sequence[FailureCluster]) -> list[list[FailureCluster]]:
        return [list(clusters)]  # always one: jobs started by earlier cycles are polled even with no cluster

    def propose(self, ctx: CycleContext, clusters: Sequence[FailureCluster], protected: Sequence[str]) -> Proposal:
        from flywheel.improvers.finetune_step import FinetuneReport, improve_finetune_step

        outcome = improve_finetune_step(ctx, clusters)
        return Proposal(
            candidates=outcome.candidates,
            notes=outcome.notes,
            report=FinetuneReport.model_validate(outcome.model_dump(exclude={"candidates"})),
        )

    def variant(self, ctx: CycleContext, cand: Candidate) -> Variant:
        """The champion's prompt and index, the fine-tuned model."""
        p = cand.payload
        assert isinstance(p, FinetunePayload)
        return Variant(
            label=cand.candidate_id,
            prompt_template=ctx.champion_template,
            prompt_version=ctx.champion_version,
            model=p.model,
            index_version=ctx.index_version,
            pipeline=ctx.settings.eval.pipeline or "builtin",
        )

    def mlflow_params(self, cand: Candidate) -> dict[str, str]:
        return {
            k: str(v) for k, v in cand.payload.model_dump(include={"dataset_version", "job_id", "base_model"}).items()
        }

    def status(self, settings: Settings, state: StateStore) -> dict[str, Any] | None:
        """How far each persistent cluster (prompts could not fix it) is from fine-tuning, as of the
        last cycle's triage, and the fine-tune jobs with their state."""
        threshold = settings.triage.finetune_min_examples
        failed = state.prompt_failed_clusters()
        persistent = [
            {
                "cluster_id": c["cluster_id"],
                "category": c["category"],
                "route": c["route"],
                "usable_examples": c.get("usable_examples", 0),
                "missing": max(0, threshold - c.get("usable_examples", 0)),
            }
            for c in state.last_cycle_clusters()
            if c["cluster_id"] in failed
        ]
        return {
            "threshold": threshold,
            "persistent_clusters": persistent,
            "jobs": [
                {
                    k: j.get(k)
                    for k in ("job_id", "status", "dataset_version", "fine_tuned_model", "model_version", "error")
                }
                for j in state.finetune_jobs()
            ],
        }

    def status_rows(self, section: dict[str, Any]) -> list[tuple[str, str]]:
        """Only when there is something to say: clusters prompts could not fix, and fine-tune jobs."""
        rows = []
        persistent = section.get("persistent_clusters") or []
        if persistent:
            closest = min(persistent, key=lambda c: c["missing"])
            rows.append(
                (
                    "fine-tune",
                    (
                        f"{plural(len(persistent), 'cluster')} prompts could not fix; closest "
                        f"{closest['cluster_id']}: {closest['usable_examples']} of "
                        f"{section['threshold']} usable examples"
                    ),
                )
            )
        for job in section.get("jobs") or []:
            rows.append(
                (
                    "fine-tune job",
                    f"{job['job_id']}: {job['status']}"
                    + (f" -> {job['fine_tuned_model']}" if job.get("fine_tuned_model") else ""),
                )
            )
        return rows

    def report_lines(self, section: dict[str, Any]) -> list[str]:
        """The dataset built this cycle and each job's state."""
        from flywheel.improvers.finetune_step import FinetuneReport

        report = FinetuneReport.model_validate(section)
        lines = []
        dataset = report.dataset
        if dataset and dataset.get("built"):
            lines.append(
                f"fine-tune dataset {dataset['version']}: {dataset['examples']} examples (train "
                f"{dataset['train']}, validation {dataset['validation']}), {dataset['preference_pairs']} "
                f"preference pairs; excluded {dataset['excluded']}"
            )
        lines += [f"fine-tune job {job['job_id']}: {job['status']} -> {job['fine_tuned_model']}" for job in report.jobs]
        return lines

    def artifacts(self, cand: Candidate) -> dict[str, str]:
        return {
            "finetune.json": cand.payload.model_dump_json(
                indent=2,
                include={
                    "model",
                    "base_model",
                    "job_id",
                    "dataset_version",
                    "dataset_path",
                    "examples",
                    "train",
                    "validation",
                    "preference_pairs",
                    "excluded",
                },
            )
        }


IMPROVER = FinetuneImprover()
