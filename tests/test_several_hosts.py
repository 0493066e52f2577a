"""Several hosts (SPEC "Live service", last bullet): PostgreSQL, a Chroma server and an MLflow tracking
server shared by two `flywheel serve` processes, each with its own FLYWHEEL_HOME (stand-ins for two
hosts), and the CLI with a third home. Keys, revocations, promotions, canary arms and retrieval agree
on both replicas, because all of it lives behind the URLs they share and nothing in their homes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from flywheel.arms import arm_for
from flywheel.champions import champion
from flywheel.config import load_settings
from flywheel.sim.server import Simulator
from flywheel.state import open_state
from live_server import make_key
from pg_server import PostgresServer, free_port

pytestmark = pytest.mark.slow

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
TTL = 0.5  # serve.champion_ttl_seconds on both replicas
START_SECONDS = 60
USERS = [f"user-{i}" for i in range(120)]


class Child:
    """A server process in its own process group, its output in a file; stopped group and all."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=logs, start_new_session=True
            )

    def wait_healthy(self, url: str, deadline: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not healthy at {url} in time:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self) -> str:
        return "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-30:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


def _base_env() -> dict[str, str]:
    """The test's environment without Flywheel's, MLflow's or an LLM endpoint's settings."""
    drop = (
        "FLYWHEEL_HOME",
        "FLYWHEEL_STORE_URL",
        "FLYWHEEL_STATE_URL",
        "FLYWHEEL_CONFIG",
        "FLYWHEEL_KNOWLEDGE",
        "FLYWHEEL_SERVE",
        "MLFLOW_",
        "OPENAI_",
        "PREFECT_API_URL",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def _until(what: str, check: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``check()`` held (polled), failing after ``seconds``."""
    started_at = time.monotonic()
    while not check():
        assert time.monotonic() - started_at < seconds, f"{what}: not within {seconds:g} s"
        time.sleep(0.05)
    return time.monotonic() - started_at


def _knowledge(root: Path) -> Path:
    root.mkdir()
    (root / "pricing.md").write_text(
        "# Pricing\n\nThe Pro plan costs $20 per month.\n\nThe Team plan costs $99 per month for five seats.\n"
    )
    (root / "export.md").write_text("# Export\n\nYou can export your data as CSV from the settings page.\n")
    return root


def test_two_replicas_share_keys_arms_promotions_and_the_index(
    cli, postgres: PostgresServer, simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = postgres.url(postgres.create_database())
    logs = tmp_path / "logs"
    logs.mkdir()
    chroma_port, mlflow_port = free_port(), free_port()
    chroma_url, tracking = f"http://127.0.0.1:{chroma_port}", f"http://127.0.0.1:{mlflow_port}"
    shared = {
        "FLYWHEEL_STORE_URL": store_url,
        "MLFLOW_TRACKING_URI": tracking,
        "FLYWHEEL_KNOWLEDGE__CHROMA_URL": chroma_url,
        "FLYWHEEL_SERVE__CHAMPION_TTL_SECONDS": str(TTL),
        # embeddings from the simulator's endpoint: one model load (in this process), not one per replica
        "FLYWHEEL_EMBEDDINGS__BACKEND": "openai",
        "OPENAI_BASE_URL": simulator.base_url,
        "OPENAI_API_KEY": "test",
    }
    deadline = time.monotonic() + START_SECONDS
    ports = {name: free_port() for name in ("host-a", "host-b")}
    with ExitStack() as stack:
        base = {**_base_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env = {**base, **shared}
        children = {  # all started at once: a replica waits for nothing but PostgreSQL to answer /healthz
            "chroma": (
                [
                    str(BIN / "chroma"),
                    "run",
                    "--path",
                    str(tmp_path / "chroma"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(chroma_port),
                ],
                base,
                f"{chroma_url}/api/v2/heartbeat",
            ),
            "mlflow": (
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{tmp_path}/mlflow.db",
                    "--artifacts-destination",
                    str(tmp_path / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    "--workers",
                    "1",
                ],
                base,
                f"{tracking}/health",
            ),
            **{
                name: (
                    [str(BIN / "flywheel"), "serve", "--port", str(port), "--no-access-log"],
                    {**env, "FLYWHEEL_HOME": str(tmp_path / name)},
                    f"http://127.0.0.1:{port}/healthz",
                )
                for name, port in ports.items()
            },
        }
        running = []
        for name, (args, child_env, _) in children.items():
            running.append(Child(name, args, child_env, logs))
            stack.callback(running[-1].stop)
        for child, (_, _, health) in zip(running, children.values(), strict=True):
            child.wait_healthy(health, deadline)
        replicas = [f"http://127.0.0.1:{port}" for port in ports.values()]
        marks = {"servers up": time.monotonic() - deadline + START_SECONDS}

        # the CLI's host: a third home, the same URLs
        for name, value in shared.items():
            monkeypatch.setenv(name, value)
        (tmp_path / "v1.txt").write_text("You answer questions about Acme, briefly.")
        (tmp_path / "v2.txt").write_text("You answer questions about Acme, kindly and briefly.")
        v1 = cli("prompt", "set", str(tmp_path / "v1.txt"), "--json")["version"]
        keys = [make_key(cli, "product", "read")]
        marks["prompt set, key made"] = time.monotonic() - deadline + START_SECONDS
        clients = [stack.enter_context(httpx.Client(base_url=url, timeout=30)) for url in replicas]

        def ask(client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
            return client.request(method, path, headers={"Authorization": f"Bearer {keys[-1]}"}, **kw)

        def champion_of(client: httpx.Client, user: str = "u1") -> dict[str, Any]:
            answer = ask(client, "GET", "/v1/champion", params={"user_id": user})
            assert answer.status_code == 200, answer.text
            return answer.json()

        def version_of(client: httpx.Client) -> str | None:
            answer = ask(client, "GET", "/v1/champion", params={"user_id": "u1"})
            return answer.json()["prompt"]["version"] if answer.status_code == 200 else None

        # a key made by the CLI works on both (the first prompt, set after they started, reaches both)
        first = _until("v1 served by both replicas", lambda: all(version_of(c) == v1 for c in clients), 10 * TTL + 5)
        # revoked by the CLI, both refuse it on their next request
        cli("keys", "revoke", "product")
        assert [ask(c, "GET", "/v1/champion", params={"user_id": "u1"}).status_code for c in clients] == [401, 401]
        keys.append(make_key(cli, "product-2", "read"))
        assert [ask(c, "GET", "/v1/champion", params={"user_id": "u1"}).status_code for c in clients] == [200, 200]

        marks["keys checked"] = time.monotonic() - deadline + START_SECONDS
        # a promotion reaches both within the champion TTL
        v2 = cli("prompt", "set", str(tmp_path / "v2.txt"), "--json")["version"]
        seen = _until(
            "v2 served by both replicas",
            lambda: all(champion_of(c)["prompt"]["version"] == v2 for c in clients),
            10 * TTL + 5,
        )

        marks["promoted"] = time.monotonic() - deadline + START_SECONDS
        # a canary (v1 back for 30% of users): the same user gets the same arm and prompt from both
        settings = load_settings()
        with open_state(settings) as state:
            champion(settings, state, "prompt").start_canary(v1, 30.0, by="test")
        probe = next(u for u in USERS if arm_for(u, 30) == "canary")
        _until(
            "the canary served by both replicas",
            lambda: all(champion_of(c, probe)["arm"] == "canary" for c in clients),
            10 * TTL + 5,
        )
        served = [[(a["arm"], a["prompt"]["version"]) for a in (champion_of(c, u) for u in USERS)] for c in clients]
        assert served[0] == served[1]
        expected = [("canary", v1) if arm_for(u, 30) == "canary" else ("production", v2) for u in USERS]
        assert served[0] == expected and {arm for arm, _ in expected} == {"canary", "production"}

        marks["canary checked"] = time.monotonic() - deadline + START_SECONDS
        # retrieval on both from the Chroma server, after `kb sync` on the CLI's host
        monkeypatch.setenv("FLYWHEEL_KNOWLEDGE_SOURCE", str(_knowledge(tmp_path / "kb")))
        index = cli("kb", "sync", "--json")["version"]
        marks["kb synced"] = time.monotonic() - deadline + START_SECONDS
        _until(
            "the index served by both replicas",
            lambda: all(champion_of(c)["index"] == index for c in clients),
            10 * TTL + 5,
        )
        marks["index served"] = time.monotonic() - deadline + START_SECONDS
        with ThreadPoolExecutor(2) as pool:  # each replica's first retrieval opens its Chroma client: both at once
            answers = list(
                pool.map(
                    lambda c: ask(
                        c,
                        "POST",
                        "/v1/retrieve",
                        json={"user_id": "u1", "query": "How much is the Pro plan per month?", "k": 2},
                    ),
                    clients,
                )
            )
        for found in answers:
            assert found.status_code == 200, found.text
            body = found.json()
            assert body["index_version"] == index and len(body["chunks"]) == 2
            assert body["chunks"][0]["id"].startswith("pricing.md#") and "$20" in body["chunks"][0]["text"]
        assert not any((tmp_path / name / "keys.json").exists() for name in ("host-a", "host-b"))
        marks["done"] = time.monotonic() - deadline + START_SECONDS
        print(
            f"\n{marks}\nfirst prompt visible on both after {first:.2f} s, a promotion after {seen:.2f} s "
            f"(champion TTL {TTL} s)"
        )
