"""`flywheel demo` and the installed console script, end to end in subprocesses."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nonempty import every

BIN = Path(sys.executable).parent


def run(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """A hang bound, not a speed target (about 100 s on 2 quiet cores; several times that on a loaded one)."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([str(BIN / "flywheel"), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_demo_closes_the_loop_on_the_simulator(tmp_path: Path) -> None:
    proc = run("demo", "--home", str(tmp_path / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document on stdout; the narrative went to stderr
    assert set(doc) >= {"home", "before", "after", "promoted", "mlflow_tracking_uri"}
    assert doc["home"] == str(tmp_path / "demo")
    assert doc["ingest"]["rejected"] == 3 and doc["ingest"]["accepted"] >= 4000
    first, second = doc["routes"]
    assert first["rag"] >= 1 and first["prompt"] >= 4 and "finetune" not in first
    assert second["finetune"] == 1  # the cluster no prompt could fix, with its history, in the second cycle
    # An approved prompt revision and index refresh (cycle 1), then an approved fine-tuned model
    # (cycle 2) measurably raised the golden score, measured again on the final champion.
    promoted = [c for c in doc["candidates"] if c["candidate_id"] in doc["promoted"]]
    assert sorted(c["kind"] for c in promoted) == ["finetune", "prompt", "rag"]
    assert every(c["ci_low"] > 0 for c in promoted)
    assert len(next(c for c in promoted if c["kind"] == "prompt")["cluster_ids"]) >= 4
    tuned = next(c for c in promoted if c["kind"] == "finetune")
    assert [c["kind"] for c in doc["candidates"] if c["cycle_id"] == doc["cycle_ids"][1]] == ["finetune"]
    (job,) = doc["finetune"]["jobs"]
    assert job["status"] == "succeeded" and doc["champions"]["model"] == job["fine_tuned_model"]
    assert tuned["category_deltas"]["factual"] > 0 and doc["finetune"]["dataset"]["examples"] >= 1000
    assert doc["after"] >= doc["before"] + 0.5 and doc["after"] == 1.0
    # Live traffic through `flywheel serve`: the fine-tuned model ran as a 20% canary and the watch
    # promoted it; a bad prompt set by hand was rolled back by the watch; the figures are in the JSON.
    live = doc["live"]
    canary, bad = live["canary"], live["bad_promotion"]
    assert (canary["candidate_id"], canary["percent"]) == (tuned["candidate_id"], 20.0)
    assert canary["verdict"] != "worse" and canary["action"] == "promoted"
    assert canary["watch"]["events"] >= 200 and canary["watch"]["baseline_events"] >= 200
    assert canary["traffic"]["by_arm"]["canary"]["events"] < canary["traffic"]["by_arm"]["production"]["events"]
    assert canary["negative_rate_after"] < canary["negative_rate_before"]
    assert (bad["against"], bad["verdict"], bad["action"]) == (doc["champions"]["prompt"], "worse", "rolled_back")
    assert bad["watch"]["ci_low"] > 0 and bad["golden_score"] < 0.8
    assert bad["negative_rate_after_rollback"] < bad["negative_rate"]
    # Off a terminal (a CI log) the narrative is not cut at 80 columns: a watch verdict reads on one line.
    watch_lines = [line for line in proc.stderr.splitlines() if "flywheel watch:" in line]
    assert any("-> worse, action: rolled_back" in line for line in watch_lines), watch_lines
    assert doc["mlflow_tracking_uri"] == f"sqlite:///{(tmp_path / 'demo').resolve()}/mlflow.db"
    assert "before" in proc.stderr and "mlflow ui" in proc.stderr
    # The printed command runs as printed: the MLflow CLI by its path (no venv need be activated).
    (ui,) = [line.removeprefix("MLflow UI:") for line in proc.stderr.splitlines() if line.startswith("MLflow UI:")]
    exe, *rest = shlex.split(ui)
    assert os.access(exe, os.X_OK) and rest == [
        "ui",
        "--backend-store-uri",
        doc["mlflow_tracking_uri"],
        "--workers",
        "1",
    ]


def test_unknown_command_is_a_usage_error() -> None:
    proc = run("frobnicate")
    assert proc.returncode == 2


def test_ingest_json_from_the_console_script(tmp_path: Path) -> None:
    src = tmp_path / "fb.jsonl"
    good = '{"event_id": "x", "ts": "2026-01-01T00:00:00Z", "signal": "thumbs_up", "query": "q", "output": "o"}'
    src.write_text(good + "\nnot json\n")
    proc = run("ingest", str(src), "--json", env_extra={"FLYWHEEL_HOME": str(tmp_path / "h")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) | {"quarantine": None} == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 1,
        "scrubbed": 0,
        "quarantine": None,
        "negative": 0,
        "prefect_events": 0,
        "errors_total": 1,
        "errors_truncated": False,
        "errors": [{"file": str(src), "line": 2, "error": json.loads(proc.stdout)["errors"][0]["error"]}],
    }
