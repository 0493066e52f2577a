"""A flow run's start in a cold process against the warm worker (`flywheel worker`).

On one Prefect test server, two deployments on a process work pool, as prefect.yaml has them: `watch`
(the 15-minute one, dry run) and `improvement-cycle` (no endpoint is configured, so its first task,
`begin`, fails at once: what is measured is the way to it). For each run, from the server's own
timestamps: seconds from the run's creation (scheduled for now) to its first task starting and to
its end.

- cold: what `prefect worker start` does per run, a fresh `python -m prefect.engine FLOW_RUN_ID` in
  the project directory (the run claimed Pending first): it imports Flywheel and the flow, opens the
  stores and, for the cycle, loads what `begin` needs.
- warm: `flywheel worker` already running (its Runtime warmed up, each flow's module imported by a
  first run), polling every 0.1 s, takes the run and executes it in its own process.

``--smoke`` measures the cycle's start once per mode: about a minute, most of it the Prefect test
server's start and the cold process (no smaller size shows a cold start).

Target: the warm worker starts a cycle's first task within a quarter of the cold process's time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._util import BIN, given_prefect_api, parse_args, report

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = {
    "watch": ("watch", "flows/watch.py:watch", {"params": {"dry_run": True}}),
    "cycle": ("improvement-cycle", "flows/cycle.py:improvement_cycle", {"params": {"auto_approve": False}}),
}


def _timings(client: Any, flow_run_id: uuid.UUID, timeout: float = 300.0) -> tuple[float, float, str]:
    """(seconds to the first task's start, seconds to the run's end, final state) once it is final."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {flow_run_id} did not end within {timeout:.0f} s")
        time.sleep(0.1)
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    starts: list[datetime] = [t.start_time for t in tasks if t.start_time is not None]
    created = run.created
    assert created is not None and run.end_time is not None
    first = (min(starts) - created).total_seconds() if starts else float("nan")
    return first, (run.end_time - created).total_seconds(), run.state.name


def _cold(client: Any, deployment_id: uuid.UUID, env: dict[str, str]) -> tuple[float, float, str]:
    """One run as Prefect's process worker starts it: claimed, then a fresh engine process."""
    from prefect.states import Pending
    from prefect.utilities.engine import propose_state_sync

    run = client.create_flow_run_from_deployment(deployment_id)
    propose_state_sync(client, Pending(), flow_run_id=run.id)
    subprocess.run(
        [sys.executable, "-m", "prefect.engine", str(run.id)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,  # the cycle's run fails on purpose (no endpoint)
    )
    return _timings(client, run.id)


def _warm(client: Any, deployment_id: uuid.UUID) -> tuple[float, float, str]:
    run = client.create_flow_run_from_deployment(deployment_id)
    return _timings(client, run.id)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per flow and mode")
    args = parse_args(parser, argv)  # --smoke: one run of the cycle's start per mode (about a minute)
    runs = 1 if args.smoke else args.runs
    chosen = {"cycle": DEPLOYMENTS["cycle"]} if args.smoke else DEPLOYMENTS

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    figures: dict[str, Any] = {"runs_per_mode": runs}
    server = given_prefect_api() or prefect_test_harness(server_startup_timeout=180)
    with tempfile.TemporaryDirectory() as tmp, server:
        api = str(PREFECT_API_URL.value())
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "FLYWHEEL_CONFIG")}
        env |= {"PREFECT_API_URL": api, "FLYWHEEL_HOME": str(Path(tmp) / "home"), "FLYWHEEL_EVAL__TRACE_ITEMS": "0"}
        with get_client(sync_client=True) as client:
            pool = f"bench-{uuid.uuid4().hex[:8]}"
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            ids = {
                key: client.create_deployment(
                    flow_id=client.create_flow_from_name(flow),
                    name=key,
                    entrypoint=entry,
                    work_pool_name=pool,
                    parameters=params,
                )
                for key, (flow, entry, params) in chosen.items()
            }
            cold = {key: [_cold(client, d, env) for _ in range(runs)] for key, d in ids.items()}

            err_path = Path(tmp) / "worker.err"
            with err_path.open("w") as err:
                started = time.perf_counter()
                worker = subprocess.Popen(
                    [str(BIN / "flywheel"), "worker", "--pool", pool, "--poll-seconds", "0.1", "--json"],
                    cwd=tmp,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
                try:
                    for d in ids.values():  # its first run of each flow imports the flow's module
                        _warm(client, d)
                    figures["worker_ready_seconds"] = round(time.perf_counter() - started, 2)
                    warm = {key: [_warm(client, d) for _ in range(runs)] for key, d in ids.items()}
                finally:
                    time.sleep(1.0)  # the last run is final on the server: let the worker write its record
                    worker.send_signal(signal.SIGTERM)
                    out, _ = worker.communicate(timeout=60)
            if worker.returncode != 0:
                raise SystemExit(f"flywheel worker exited {worker.returncode}:\n{err_path.read_text()[-3000:]}")

    import json

    executed = json.loads(out)["runs"]
    runtimes = {r["runtime_id"] for r in executed}
    for key in ids:
        figures[f"{key}_cold_to_first_task_s"] = _median([c[0] for c in cold[key]])
        figures[f"{key}_warm_to_first_task_s"] = _median([w[0] for w in warm[key]])
        figures[f"{key}_cold_to_end_s"] = _median([c[1] for c in cold[key]])
        figures[f"{key}_warm_to_end_s"] = _median([w[1] for w in warm[key]])
        figures[f"{key}_states"] = sorted({s for *_, s in cold[key] + warm[key]})
    figures["worker_runs"] = len(executed)
    figures["worker_runtimes"] = len(runtimes)
    figures["warm_runs_opened"] = sum(sum(r["opened"].values()) for r in executed[len(ids) :])
    targets = {
        "cycle's first task, warm <= 1/4 of cold": figures["cycle_warm_to_first_task_s"]
        <= figures["cycle_cold_to_first_task_s"] / 4,
        "the worker ran every run": len(executed) == len(ids) * (runs + 1),
        "one Runtime for every run of the worker": len(runtimes) == 1,
        "warm runs open nothing": figures["warm_runs_opened"] == 0,
    }
    return report("bench_worker", figures, targets)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
