"""A cycle stopped by a signal ends within seconds, says so once, is recorded as interrupted and
resumable, and never leaves Prefect's ephemeral API server running behind it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flywheel.config import load_settings
from flywheel.sim.server import SimOptions, Simulator

BIN = Path(sys.executable).parent


def _start_cycle(tmp_path: Path, base_url: str) -> subprocess.Popen[str]:
    """`flywheel cycle --json` as a user starts it: its own process, Prefect's ephemeral API (in a
    Prefect home of its own), default retries."""
    env = {
        **os.environ,
        "OPENAI_BASE_URL": base_url,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "FLYWHEEL_LLM_MAX_RETRIES": "4",
        "FLYWHEEL_LLM_TASK_RETRIES": "2",
    }
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [str(BIN / "flywheel"), "cycle", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


def _ephemeral_servers(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "prefect.server.api.server" in " ".join(c.cmdline())]


def test_sigterm_ends_a_cycle_within_seconds_as_interrupted_and_resumable(loop: dict, tmp_path: Path) -> None:
    from flywheel.state import open_state

    with Simulator(options=SimOptions(fail_status=500)) as dead:
        proc = _start_cycle(tmp_path, dead.base_url)
        # Mid-work: the endpoint has failed a few times and the SDK is backing off between retries.
        _wait_for(lambda: dead.counts().get("failed_500", 0) >= 5 or proc.poll() is not None, "the first failures")
        servers = _ephemeral_servers(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # a hang guard, not a target: it ends in a few seconds
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    doc = json.loads(out)  # exactly one JSON document
    assert "interrupted" in doc["error"] and doc["exit_code"] == 143
    assert "Traceback" not in err, err[-3000:]
    settings = load_settings()
    with open_state(settings) as state:
        (cycle,) = state.cycles(limit=1)
        assert cycle["status"] == "interrupted"
        assert state.unfinished_cycle() == cycle["cycle_id"]  # the next `flywheel cycle` resumes it
    assert servers, "the cycle ran on Prefect's ephemeral API"
    _wait_for(lambda: not any(s.is_running() for s in servers), "the ephemeral server to stop", timeout=30)


def test_a_killed_cycle_leaves_no_prefect_server_behind(loop: dict, tmp_path: Path) -> None:
    with Simulator(options=SimOptions(latency=0.2)) as slow:
        proc = _start_cycle(tmp_path, slow.base_url)
        _wait_for(lambda: _ephemeral_servers(proc.pid) or proc.poll() is not None, "the ephemeral server")
        servers = _ephemeral_servers(proc.pid)
        assert servers, proc.communicate()[1][-3000:]
        killed = time.monotonic()
        proc.kill()  # SIGKILL: no atexit, no signal handler, no finally
        proc.communicate(timeout=30)
    _wait_for(
        lambda: not any(s.is_running() and s.status() != psutil.STATUS_ZOMBIE for s in servers),
        "the orphaned server to be stopped",
        timeout=30,
    )
    took = time.monotonic() - killed
    assert took < 10, f"the orphaned server ran {took:.1f} s after the kill"  # the watchdog, within seconds


@pytest.fixture(autouse=True)
def _no_stray_servers(tmp_path: Path):
    """A server this test's cycle started and the product failed to stop is stopped here, so one
    failure does not leak a server into the rest of the suite (found by its PREFECT_HOME, never
    another test's)."""
    yield
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "prefect.server.api.server" in " ".join(p.info["cmdline"] or []) and p.environ().get(
                "PREFECT_HOME", ""
            ).startswith(str(tmp_path)):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
