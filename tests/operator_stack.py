"""What an operator runs, started for a test: a real `prefect server` on 127.0.0.1, the work pool,
queue and deployments from `prefect.yaml`, and a process worker; and Debian's Chromium.

Every process gets its own session, so stopping one stops its children too (a worker's flow
runs; a paused flow ignores SIGTERM, so whatever is left gets SIGKILL).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
# Chromium on a machine with no internet: no background fetches, no first-run work, no sandbox (root).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_chromium(log: Path) -> str | None:
    """Debian's chromium, installed with apt-get when missing (about 30-50 s, 480 MB). Returns why it
    cannot be had, or None when /usr/bin/chromium is there."""
    if CHROMIUM.exists():
        return None
    apt = shutil.which("apt-get")
    if apt is None:
        return "Chromium is not installed and this machine has no apt-get to install Debian's chromium"
    sudo: list[str] = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    if os.geteuid() != 0 and not sudo:
        return "Chromium is not installed and installing it needs root (no sudo here)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("a") as out:
        for cmd in ([*sudo, apt, "update", "-qq"], [*sudo, apt, "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900, check=False)
            if done.returncode != 0:
                return f"`{' '.join(cmd)}` failed (exit {done.returncode}); see {log}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is missing; see {log}"


class Service:
    """A background process with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], logs: Path, cwd: Path | None = None) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- last {lines} lines of {self.log} ---\n" + "\n".join(text[-lines:])

    def stop(self, grace: float = 5) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # a worker stops on SIGINT, not SIGTERM
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # and whatever it left (a paused flow run)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._out.close()


class PrefectStack:
    """A Prefect server, with Flywheel's deployments and a worker once :meth:`deploy` ran."""

    POOL = "flywheel-process"

    def __init__(self, root: Path, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api"
        self.logs = logs
        # The UI reads where the API is from these, not from --host/--port.
        self.env = {
            "PREFECT_HOME": str(root / "prefect"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            # The scheduler queues a resumed schedule's runs on its next loop: every 60 s by default.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
            "PREFECT_CLI_PROMPT": "false",
        }
        self.services: list[Service] = []
        self.http = httpx.Client(base_url=self.api, timeout=30)

    def environ(self, **extra: str) -> dict[str, str]:
        """This process's environment as it is now, pointed at this server."""
        return {**os.environ, **self.env, **extra}

    def start(self, timeout: float = 180) -> None:
        self.services.append(
            Service(
                "prefect-server",
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                self.environ(),
                self.logs,
            )
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.services[0].proc.poll() is not None:
                raise RuntimeError("prefect server exited\n" + self.services[0].tail())
            try:
                if self.http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server not healthy within {timeout} s\n" + self.services[0].tail())

    def prefect(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), *args],
            env=self.environ(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def deploy(self, **worker_env: str) -> None:
        """As the README says: pool, queue with a limit of one, `deploy --all` from the project, a worker."""
        self.prefect("work-pool", "create", self.POOL, "--type", "process")
        self.prefect("work-queue", "create", "cycles", "--pool", self.POOL, "--limit", "1")
        self.prefect("--no-prompt", "deploy", "--all")
        self.services.append(
            Service(
                "prefect-worker",
                [str(BIN / "prefect"), "worker", "start", "--pool", self.POOL],
                self.environ(**worker_env),
                self.logs,
                cwd=REPO,
            )
        )

    def schedules(self, deployment: str) -> list[dict[str, Any]]:
        """The deployment's schedules and whether each is on, read from the API (what `prefect deployment
        schedule ls` prints, without a CLI start of a few seconds a call)."""
        response = self.http.get(f"/deployments/name/{deployment}")
        response.raise_for_status()
        return list(response.json()["schedules"])

    def resume_schedules(self, deployment: str) -> None:
        """What the README tells an operator to do for each schedule they want running."""
        for schedule in self.schedules(deployment):
            self.prefect("deployment", "schedule", "resume", deployment, str(schedule["id"]))

    def flow_runs(self, deployment: str) -> list[dict[str, Any]]:
        response = self.http.post(
            "/flow_runs/filter",
            json={"deployments": {"name": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC"},
        )
        response.raise_for_status()
        return list(response.json())

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return dict(response.json())

    def artifacts(self, flow_run_id: str) -> list[dict[str, Any]]:
        """The run's artifacts, newest first."""
        response = self.http.post(
            "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "CREATED_DESC"}
        )
        response.raise_for_status()
        return list(response.json())

    def diagnostics(self) -> str:
        return "\n".join(s.tail() for s in self.services)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.http.close()


@contextmanager
def prefect_stack(root: Path, logs: Path) -> Iterator[PrefectStack]:
    stack = PrefectStack(root, logs)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
