"""The fine-tuning improver in the cycle: a dataset, its job (never submitted twice) and a model
candidate once the job succeeds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flywheel.candidates import Candidate, Outcome
from flywheel.improvers import finetuning
from flywheel.improvers.context import CycleContext, cluster_events, earliest_seen, endpoint_errors, short_hash
from flywheel.improvers.finetune import TERMINAL as JOB_DONE
from flywheel.llm import make_client
from flywheel.schemas import FailureCluster


class FinetuneReport(BaseModel):
    """The jobs and notes an operator reads (a job still running, a failed one with the provider's
    reason) and the dataset: the cycle report's ``finetune``."""

    jobs: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    dataset: dict[str, Any] | None = None


class FinetuneOutcome(FinetuneReport):
    """What the fine-tuning step did this cycle: candidates (succeeded jobs), and its report."""

    candidates: list[Candidate] = Field(default_factory=list)


@endpoint_errors("fine-tuning")
def improve_finetune_step(
    ctx: CycleContext, clusters: Sequence[FailureCluster], poll_timeout: float | None = None
) -> FinetuneOutcome:
    """Fine-tuning for clusters prompts could not fix: a dataset version, its job (resumed, never
    submitted twice), and a model candidate once the job succeeds. Jobs started by earlier cycles
    are polled too, so a job longer than a cycle becomes a candidate in a later one."""
    out = FinetuneOutcome()
    with ctx.state() as state:
        open_jobs = state.finetune_jobs(open_only=True)
    if not clusters and not open_jobs:
        return out
    client = make_client(ctx.settings, purpose="fine-tuning")
    ids = sorted(c.cluster_id for c in clusters)
    if clusters:
        key = "finetune:" + ",".join(ids)
        with ctx.state() as state:
            dataset = state.drafts(ctx.cycle_id, key)
        if dataset is None:
            dataset = finetuning.build_dataset(ctx.settings)
            with ctx.state() as state:
                state.save_drafts(ctx.cycle_id, key, dataset)
        out.dataset = {
            k: dataset.get(k)
            for k in (
                "built",
                "version",
                "examples",
                "train",
                "validation",
                "preference_pairs",
                "excluded",
                "path",
                "min_examples",
            )
        }
        if not dataset["built"]:
            out.notes.append(
                f"fine-tuning for {', '.join(ids)} waits: {dataset['examples']} usable examples after "
                f"curation, {dataset['min_examples']} needed"
            )
        else:
            record = finetuning.start_job(ctx.settings, client, dataset, cluster_ids=ids, cycle_id=ctx.cycle_id)
            if all(j["job_id"] != record["job_id"] for j in open_jobs):
                open_jobs.append(record)
    for record in open_jobs:
        if record["status"] not in JOB_DONE:
            record = finetuning.poll_job(ctx.settings, client, record, poll_timeout)
        out.jobs.append(
            {
                k: record.get(k)
                for k in (
                    "job_id",
                    "status",
                    "dataset_version",
                    "base_model",
                    "fine_tuned_model",
                    "error",
                    "cluster_ids",
                )
            }
        )
        if record["status"] in ("failed", "cancelled"):
            reason = f"fine-tune job {record['job_id']} {record['status']}: {record.get('error') or 'no reason given'}"
            out.notes.append(reason + "; no candidate")
            with ctx.state() as state:
                for cid in record.get("cluster_ids") or []:
                    state.record_attempt(cid, ctx.cycle_id, "finetune", record["job_id"], Outcome.failed)
            continue
        if record["status"] != "succeeded":
            out.notes.append(f"fine-tune job {record['job_id']} is {record['status']}; a later cycle picks it up")
            continue
        version = record.get("model_version") or finetuning.register_job_model(ctx.settings, record)
        cand = _finetune_candidate(ctx, record, version, clusters)
        if cand is not None:
            out.candidates.append(cand)
    return out


def _finetune_candidate(
    ctx: CycleContext, record: dict[str, Any], version: str, clusters: Sequence[FailureCluster]
) -> Candidate | None:
    """The model candidate of a succeeded job, once: a model already decided on is not proposed again."""
    candidate_id = f"finetune-{short_hash(record['job_id'])}"
    with ctx.state() as state:
        existing = state.candidate(candidate_id)
        if existing is not None:
            return existing if existing.decision is None and existing.cycle_id == ctx.cycle_id else None
        by_id = {c.cluster_id: c for c in clusters}
        mine = [by_id[c] for c in record.get("cluster_ids") or [] if c in by_id]
        first_seen, by_cluster = earliest_seen(mine)
        dataset = {}
        card = Path(record.get("dataset_path") or "") / "card.json"
        if card.is_file():
            dataset = json.loads(card.read_text())
        cand = Candidate(
            candidate_id=candidate_id,
            cycle_id=ctx.cycle_id,
            kind="finetune",
            cluster_ids=list(record.get("cluster_ids") or []),
            parent=ctx.champions.model,
            version=version,
            first_seen=first_seen,
            created_at=datetime.now(UTC),
            payload={
                "model": record["fine_tuned_model"],
                "base_model": record["base_model"],
                "job_id": record["job_id"],
                "dataset_version": record["dataset_version"],
                "dataset_path": record.get("dataset_path"),
                "model_run_id": record.get("model_run_id"),
                "champion_model": ctx.champion_model,
                "cluster_first_seen": by_cluster,
                "cluster_events": cluster_events(mine),
                **{k: dataset.get(k) for k in ("examples", "train", "validation", "preference_pairs", "excluded")},
            },
        )
        state.add_candidate(cand)
        return state.candidate(cand.candidate_id) or cand
