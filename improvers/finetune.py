"""Fine-tune jobs through the openai SDK: upload the dataset, start a job, poll it with backoff.

Plain functions over an ``OpenAI`` client (no Prefect, no MLflow). A job carries the dataset
version in its metadata, so a submission that crashed before its id was recorded is found again
on the provider (``find_job``) instead of being submitted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

TERMINAL = ("succeeded", "failed", "cancelled")
METADATA_KEY = "flywheel_dataset_version"


class JobState(BaseModel):
    """What Flywheel keeps of a provider's fine-tuning job."""

    job_id: str
    status: str
    base_model: str
    dataset_version: str
    fine_tuned_model: str | None = None
    error: str | None = None
    trained_tokens: int | None = None
    training_file: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


def _state(job: Any, dataset_version: str) -> JobState:
    error = None
    if getattr(job, "error", None) is not None and (job.error.message or job.error.code):
        error = f"{job.error.code or 'error'}: {job.error.message or ''}".strip()
    return JobState(
        job_id=job.id,
        status=job.status,
        base_model=job.model,
        dataset_version=dataset_version,
        fine_tuned_model=job.fine_tuned_model,
        error=error,
        trained_tokens=job.trained_tokens,
        training_file=job.training_file,
    )


def find_job(client: Any, dataset_version: str, base_model: str) -> JobState | None:
    """A live or succeeded job already started for this dataset version and base model, if any."""
    for job in client.fine_tuning.jobs.list(limit=100):
        meta = getattr(job, "metadata", None) or {}
        if (
            meta.get(METADATA_KEY) == dataset_version
            and job.model == base_model
            and job.status not in ("failed", "cancelled")
        ):
            return _state(job, dataset_version)
    return None


def submit(
    client: Any,
    *,
    train_jsonl: Path,
    validation_jsonl: Path | None,
    base_model: str,
    dataset_version: str,
    suffix: str,
    epochs: int | None = None,
) -> JobState:
    """Upload the training (and validation) file and start a supervised fine-tuning job."""
    with train_jsonl.open("rb") as fh:
        training = client.files.create(file=(f"flywheel-{dataset_version}-train.jsonl", fh), purpose="fine-tune")
    validation_id = None
    if validation_jsonl is not None and validation_jsonl.exists() and validation_jsonl.stat().st_size > 0:
        with validation_jsonl.open("rb") as fh:
            validation_id = client.files.create(
                file=(f"flywheel-{dataset_version}-validation.jsonl", fh), purpose="fine-tune"
            ).id
    extra: dict[str, Any] = {}
    if epochs:
        extra["method"] = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}}
    job = client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training.id,
        validation_file=validation_id,
        suffix=suffix,
        metadata={METADATA_KEY: dataset_version},
        **extra,
    )
    return _state(job, dataset_version)


def retrieve(client: Any, job_id: str, dataset_version: str) -> JobState:
    return _state(client.fine_tuning.jobs.retrieve(job_id), dataset_version)


def poll(
    client: Any,
    job_id: str,
    dataset_version: str,
    *,
    timeout: float,
    initial: float,
    maximum: float,
    on_update: Callable[[JobState], None] | None = None,
) -> JobState:
    """Poll until the job is done or ``timeout`` seconds passed (then the last state, not done);
    waits double from ``initial`` up to ``maximum``."""
    last = retrieve(client, job_id, dataset_version)
    if on_update:
        on_update(last)
    if last.done or timeout <= 0:
        return last

    def check() -> JobState:
        nonlocal last
        last = retrieve(client, job_id, dataset_version)
        if on_update:
            on_update(last)
        return last

    try:
        for attempt in Retrying(
            retry=retry_if_result(lambda s: not s.done),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=initial, min=initial, max=maximum),
            sleep=time.sleep,
        ):
            with attempt:
                state = check()
            if not attempt.retry_state.outcome.failed:  # type: ignore[union-attr]
                attempt.retry_state.set_result(state)
    except RetryError:
        pass
    return last
