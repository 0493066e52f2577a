"""Fine-tuning, the last resort, as the CLI and the cycle use it: build a dataset version from
the store, record it in MLflow, start (or find again) its job, poll it, register the model.

The curation rules live in :mod:`improvers.dataset`, the provider calls in
:mod:`improvers.finetune`; this module ties them to the feedback store, the state store (jobs are
recorded before they are polled, so a restarted flow resumes the poll of the same job) and MLflow
(one run per dataset version with the dataset as input; one run per job, whose model becomes a
version of the registered model).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.improvers import finetune as jobs
from flywheel.improvers.dataset import EXCLUSIONS, BuiltDataset, curate, write_dataset
from flywheel.registry import production_prompt, register_model_version, use_mlflow
from flywheel.runtime import runtime_for

Say = Callable[[str], None]


def base_model(settings: Settings) -> str:
    return settings.finetune.base_model or settings.target_model


def golden_inputs(settings: Settings) -> list[str]:
    """The golden set's inputs (training must not overlap them); none when there is no golden set."""
    from flywheel.evals.golden import load_golden

    if not Path(settings.golden_file).exists():
        return []
    return [item.input for item in load_golden(settings.golden_file).items]


def build_dataset(settings: Settings, *, min_examples: int | None = None, log: bool = True) -> dict[str, Any]:
    """Curate usable feedback into a dataset version once ``min_examples`` examples survive curation.

    Returns SPEC's document: ``built`` false (with the count) below the threshold."""
    threshold = settings.triage.finetune_min_examples if min_examples is None else min_examples
    if threshold < 1:
        raise UsageError(f"--min-examples must be at least 1, not {threshold}")
    champion = production_prompt(settings)
    with runtime_for(settings).borrow_feedback() as store:
        curated = curate(store.events(), golden_inputs(settings), settings.finetune)
    if len(curated.examples) < threshold:
        return {
            "built": False,
            "examples": len(curated.examples),
            "min_examples": threshold,
            "missing": threshold - len(curated.examples),
            "train": 0,
            "validation": 0,
            "preference_pairs": len(curated.pairs),
            "version": None,
            "path": None,
            "jsonl": None,
            "excluded": {k: curated.excluded[k] for k in EXCLUSIONS},
            "candidates": curated.candidates,
            "excluded_rules": dict(sorted(curated.excluded_rules.items())),
        }
    built = write_dataset(
        curated,
        settings.ensure_home() / "datasets",
        champion.template if champion else None,
        settings.finetune,
        champion.version if champion else None,
    )
    doc = built.public()
    doc["excluded"] = {k: built.excluded.get(k, 0) for k in EXCLUSIONS}
    doc["min_examples"] = threshold
    if log:
        doc["mlflow_run_id"] = log_dataset(settings, built)
    return doc


def _dataset_input(built: BuiltDataset | dict[str, Any], context: str) -> Any:
    import datasets
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    version = built.version if isinstance(built, BuiltDataset) else built["version"]
    path = built.path if isinstance(built, BuiltDataset) else built["path"]
    train = datasets.load_from_disk(str(Path(path) / "sft"))["train"]
    ds = mlflow.data.from_huggingface(train, path=str(path), name=f"flywheel-finetune-{version}", digest=version)
    return DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


def log_dataset(settings: Settings, built: BuiltDataset) -> str:
    """One MLflow run per dataset version (found again by its tag), with the dataset as its input."""
    from flywheel.evals.tracking import KIND, experiment_id, find_run

    client = use_mlflow(settings)
    exp = experiment_id(client, settings.experiment)
    tags = {KIND: "dataset", "flywheel.dataset_version": built.version}
    found = find_run(client, exp, tags)
    if found:
        return found
    run = client.create_run(exp, run_name=f"dataset-{built.version}", tags=tags)
    run_id: str = run.info.run_id
    from mlflow.entities import Metric, Param

    counts = {
        "examples": built.examples,
        "train": built.train,
        "validation": built.validation,
        "preference_pairs": built.preference_pairs,
        "candidates": built.candidates,
        **{f"excluded.{k}": v for k, v in built.excluded.items()},
        **{f"excluded.{k}": v for k, v in built.excluded_rules.items() if "." in k},
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in counts.items()],
        params=[
            Param("dataset_version", built.version),
            Param("path", built.path),
            Param("system_prompt_version", str(built.system_prompt_version)),
        ],
    )
    client.log_inputs(run_id, datasets=[_dataset_input(built, "training")])
    client.log_artifact(run_id, str(Path(built.path) / "README.md"))
    client.log_artifact(run_id, str(Path(built.path) / "card.json"))
    client.set_terminated(run_id, "FINISHED")
    return run_id


# ------------------------------------------------------------------------------------------------
def start_job(
    settings: Settings, client: Any, dataset: dict[str, Any], *, cluster_ids: list[str], cycle_id: str | None
) -> dict[str, Any]:
    """The job for this dataset version: the one already recorded, one found on the provider (a
    submission that crashed before it was recorded), or a new submission. Recorded at once."""
    model = base_model(settings)
    with runtime_for(settings).borrow_state() as state:
        known = state.finetune_job(dataset_version=dataset["version"], base_model=model)
        if known is not None and known["status"] not in ("failed", "cancelled"):
            return known
        found = jobs.find_job(client, dataset["version"], model)
        if found is None:
            found = jobs.submit(
                client,
                train_jsonl=Path(dataset["jsonl"]),
                validation_jsonl=Path(dataset["validation_jsonl"]) if dataset.get("validation_jsonl") else None,
                base_model=model,
                dataset_version=dataset["version"],
                suffix=settings.finetune.suffix,
                epochs=settings.finetune.epochs,
            )
        record = {
            **found.model_dump(),
            "cluster_ids": cluster_ids,
            "cycle_id": cycle_id,
            "dataset_path": dataset["path"],
            "examples": dataset["examples"],
            "dataset_run_id": dataset.get("mlflow_run_id"),
        }
        if known is not None:  # a failed job for the same dataset: the new one replaces its record
            record["replaces"] = known["job_id"]
        state.save_finetune_job(record)
        return record


def poll_job(settings: Settings, client: Any, record: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Poll with backoff up to ``timeout`` (config ``finetune.poll_timeout``), saving every change."""
    s = settings.finetune

    def save(update: jobs.JobState) -> None:
        if update.status != record.get("status") or update.fine_tuned_model != record.get("fine_tuned_model"):
            record.update(update.model_dump(exclude={"job_id", "dataset_version", "base_model"}))
            with runtime_for(settings).borrow_state() as state:
                state.save_finetune_job(record)

    jobs.poll(
        client,
        record["job_id"],
        record["dataset_version"],
        timeout=s.poll_timeout if timeout is None else timeout,
        initial=s.poll_initial,
        maximum=s.poll_max,
        on_update=save,
    )
    return record


def register_job_model(settings: Settings, record: dict[str, Any]) -> str:
    """The succeeded job's model as a version of the registered model (once), with its provenance."""
    from flywheel.evals.tracking import KIND, experiment_id, find_run

    assert record.get("fine_tuned_model"), record
    client = use_mlflow(settings)
    exp = experiment_id(client, settings.experiment)
    tags = {KIND: "finetune_job", "flywheel.job_id": record["job_id"]}
    run_id = find_run(client, exp, tags)
    if run_id is None:
        run = client.create_run(
            exp,
            run_name=f"finetune-{record['job_id']}",
            tags={**tags, "flywheel.dataset_version": record["dataset_version"]},
        )
        run_id = run.info.run_id
        for key in ("job_id", "dataset_version", "base_model", "fine_tuned_model", "trained_tokens", "examples"):
            if record.get(key) is not None:
                client.log_param(run_id, key, str(record[key]))
        try:
            client.log_inputs(
                run_id,
                datasets=[
                    _dataset_input({"version": record["dataset_version"], "path": record["dataset_path"]}, "training")
                ],
            )
        except FileNotFoundError:
            pass  # the dataset directory was removed since; the version and job id are still recorded
        card = {
            "provider_model": record["fine_tuned_model"],
            "base_model": record["base_model"],
            "job_id": record["job_id"],
            "dataset_version": record["dataset_version"],
            "endpoint": "the configured OpenAI-compatible endpoint (OPENAI_BASE_URL)",
        }
        client.log_text(run_id, json.dumps(card, indent=2), "model/model.json")
        client.set_terminated(run_id, "FINISHED")
    version = register_model_version(
        settings,
        record["fine_tuned_model"],
        run_id,
        {
            "flywheel.job_id": record["job_id"],
            "flywheel.dataset_version": record["dataset_version"],
            "flywheel.base_model": record["base_model"],
        },
    )
    record["model_version"], record["model_run_id"] = version, run_id
    with runtime_for(settings).borrow_state() as state:
        state.save_finetune_job(record)
    return version
