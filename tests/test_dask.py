"""Scale-out: with `runner.kind = "dask"` a cycle's embedding and golden-set evaluation run as
Prefect tasks on a DaskTaskRunner (a local cluster of worker processes here), and give what the
in-process path gives."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import write_jsonl
from flywheel.config import load_settings
from flywheel.runtime import runtime_for

pytestmark = pytest.mark.slow


def _logs_of_latest_cycle() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["improvement-cycle"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    return [log.message for log in logs] + [f"task {t.name}" for t in tasks]


def test_a_cycle_on_dask_embeds_and_evaluates_in_worker_processes(
    cli, world: Path, sim_env, prefect_api: str, local_embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.embeddings import build_embedder, not_cached
    from flywheel.evals.golden import load_golden
    from flywheel.flows.cycle import run_flow
    from flywheel.loop import embedding, evaluate

    golden = write_jsonl(
        tmp_path / "golden.jsonl", (world / "golden.jsonl").read_text().splitlines()[::6]
    )  # 38 items, every category
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(golden))
    monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "0")
    monkeypatch.setenv("FLYWHEEL_USER", "tester")
    cli("prompt", "set", str(world / "prompt.txt"), "--json")
    format_complaints = [
        line for line in (world / "feedback.jsonl").read_text().splitlines() if '"reason": "format"' in line
    ]
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", format_complaints)), "--json")
    settings = load_settings()
    to_embed = embedding.texts_to_embed(settings, runtime_for(settings).feedback)
    assert len(to_embed) > 20  # the complaints' queries and the category descriptions, none cached yet

    runner = {"kind": "dask", "dask_workers": 2, "eval_batch_items": 15}
    report = run_flow(auto_approve=False, overrides={"runner": runner})

    # Embedding: everything triage needed was embedded by the workers and put in the cache, and the
    # vectors are the model's own.
    embedder = build_embedder(settings)
    assert not_cached(embedder, to_embed) == []
    sample = to_embed[:5]
    # Batched float math differs with the batch's make-up (padding, BLAS blocking): up to ~1e-3 per
    # component was seen between worker and in-process vectors. What retrieval uses is the direction.
    workers, here = np.asarray(embedder.embed(sample)), np.asarray(local_embedder.embed(sample))
    cosines = (workers * here).sum(axis=1) / (np.linalg.norm(workers, axis=1) * np.linalg.norm(here, axis=1))
    assert cosines.min() > 0.9999, cosines

    # Evaluation: batches of 15 items per variant, run by worker processes, put back together.
    logs = _logs_of_latest_cycle()
    text = "\n".join(logs)
    assert f"embedded {len(to_embed)} texts in 1 batches on Dask" in text, text
    variants = 1 + len(report.candidates)
    batches = variants * math.ceil(38 / 15)
    found = re.search(r"evaluated (\d+) batches on (\d+) Dask worker\(s\): (.+)", text)
    assert found and int(found.group(1)) == batches, text
    pids = {int(w.rsplit(":", 1)[1]) for w in found.group(3).split(", ")}
    assert os.getpid() not in pids  # not this process: Dask's worker processes
    assert sum(1 for line in logs if line.startswith("task evaluate-")) == batches

    # The same scores as one batch in this process (the champion, evaluated again without the cache).
    from flywheel.evals.pipeline import Variant
    from flywheel.evals.runner import evaluate_many
    from flywheel.registry import require_production_prompt

    prompt = require_production_prompt(settings)
    champion = Variant(
        label="champion", prompt_template=prompt.template, prompt_version=prompt.version, model=settings.target_model
    )
    (again,) = evaluate_many(
        [champion],
        load_golden(golden),
        evaluate.answer_factory(settings),
        default_scorer=settings.eval.default_scorer,
        concurrency=4,
        use_cache=False,
    )
    assert report.champion_score == again.mean
    assert report.candidates and all(c.golden_score is not None for c in report.candidates)
