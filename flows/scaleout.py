"""Scale-out on Dask: a cycle's evaluation batches and embedding as Prefect tasks on a DaskTaskRunner.

``runner.kind = "dask"`` opens one task runner for the cycle: a local cluster of
``runner.dask_workers`` processes, or the scheduler at ``runner.dask_address``. Before triage, the
texts the cycle will embed and the cache lacks go out in batches (``embed-batch`` tasks) and their
vectors come back into the cache, so triage and the index refresh find them there. The golden-set
evaluation is cut into batches of ``runner.eval_batch_items`` items per variant (``evaluate-batch``
tasks) and put back together in the flow run's process, which alone writes the state store.

Parameters go to the workers with the task, never through the Prefect API: settings (which may
hold an API key) are not stored as flow or task parameters, and results are not persisted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner

from flywheel import llm_guard
from flywheel.config import Settings
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import BatchRows, EvalBatch, EvalResult
from flywheel.loop import embedding, evaluate
from flywheel.runtime import runtime_for


def dask_task_runner(settings: Settings) -> TaskRunner:  # type: ignore[type-arg]
    from prefect_dask import DaskTaskRunner

    cfg = settings.runner
    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    # A local cluster listens on loopback only, its status page on a free port (8787 may be taken).
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.dask_workers,
            "threads_per_worker": cfg.dask_threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }
    )


@contextmanager
def cycle_runner(settings: Settings) -> Iterator[TaskRunner | None]:  # type: ignore[type-arg]
    """The cycle's Dask task runner while the cycle runs, or None with the default `threads`."""
    if settings.runner.kind != "dask":
        yield None
        return
    runner = dask_task_runner(settings)
    with runner:
        where = settings.runner.dask_address or f"a local cluster of {settings.runner.dask_workers} workers"
        get_run_logger().info("evaluation and embedding run on Dask (%s)", where)
        yield runner


# The tasks wrap module functions of other names: Dask pickles a task's function by reference, and
# a decorated name would resolve to the Task, not the function.
def _embed_batch(settings: Settings, texts: list[str], index: int) -> Any:
    return embedding.embed_batch_step(settings, texts)


def _evaluate_batch(settings: Settings, batch: EvalBatch) -> BatchRows:
    return evaluate.evaluate_batch_step(settings, batch)


embed_batch_task = task(
    _embed_batch, name="embed-batch", persist_result=False, cache_policy=NO_CACHE, task_run_name="embed-batch-{index}"
)
evaluate_batch_task = task(
    _evaluate_batch,
    name="evaluate-batch",
    persist_result=False,
    cache_policy=NO_CACHE,
    task_run_name="evaluate-{batch.variant.label}-{batch.start}",
)


def embed_ahead(runner: TaskRunner, settings: Settings) -> int:  # type: ignore[type-arg]
    """Embed, on the runner, what the cycle will need and the cache lacks; returns how many texts."""
    rt = runtime_for(settings)
    texts = embedding.texts_to_embed(settings, rt.feedback, rt.state)
    size = settings.runner.embed_batch_texts
    batches = [texts[i : i + size] for i in range(0, len(texts), size)]
    futures = [
        runner.submit(embed_batch_task, {"settings": settings, "texts": b, "index": n}) for n, b in enumerate(batches)
    ]
    for batch, future in zip(batches, futures, strict=True):
        embedding.remember_embeddings(settings, batch, future.result())
    if texts:
        get_run_logger().info("embedded %d texts in %d batches on Dask", len(texts), len(batches))
    return len(texts)


def _slots(runner: TaskRunner, settings: Settings) -> int:  # type: ignore[type-arg]
    """Batches the cluster runs at once: its worker threads."""
    client = getattr(runner, "client", None)
    try:
        return max(1, sum(client.nthreads().values())) if client is not None else 1
    except Exception:  # noqa: BLE001 - a scheduler that cannot say: assume the configured local cluster
        return settings.runner.dask_workers * settings.runner.dask_threads_per_worker


def evaluate_on(runner: TaskRunner, settings: Settings, variants: list[Variant]) -> list[EvalResult]:  # type: ignore[type-arg]
    """The golden-set evaluation as batches on the runner; cached variants are not run."""
    state = runtime_for(settings).state  # the flow's process writes the rows
    plan = evaluate.plan_evaluation(settings, state, variants, slots=_slots(runner, settings))
    # A batch only returns rows (the flow's process writes them), so a failed one is simply run again.
    batch_task = evaluate_batch_task.with_options(
        retries=settings.llm_task_retries,
        retry_delay_seconds=settings.llm_task_retry_delay,
        retry_condition_fn=lambda *_: not llm_guard.gave_up(),
    )
    futures = [runner.submit(batch_task, {"settings": settings, "batch": b}) for b in plan.batches]
    parts = [f.result() for f in futures]
    workers = sorted({p.worker for p in parts})
    if parts:
        get_run_logger().info(
            "evaluated %d batches on %d Dask worker(s): %s", len(parts), len(workers), ", ".join(workers)
        )
    return evaluate.assemble_evaluation(settings, state, plan, parts)
