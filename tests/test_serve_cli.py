"""`flywheel serve --workers 2` as a product meets it: a child process, two uvicorn workers on one
socket. Metrics, asks per day and revocations hold across the workers; no key reaches the logs."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import event
from live_server import make_key, stored_ids

FLYWHEEL = Path(sys.executable).parent / "flywheel"


@pytest.fixture
def served(settings):
    proc = subprocess.Popen(
        [str(FLYWHEEL), "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    logs: list[str] = []
    threading.Thread(target=lambda: logs.extend(proc.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while lines.empty():
            assert proc.poll() is None and time.monotonic() < deadline, f"serve did not start: {''.join(logs)}"
            time.sleep(0.1)
        url = lines.get().strip()
        assert url.startswith("http://127.0.0.1:"), url
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "".join(logs)
                time.sleep(0.2)
        yield url, proc, logs
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def _value(metrics: str, name: str) -> float:
    return next(float(line.split()[1]) for line in metrics.splitlines() if line.startswith(name + " "))


def test_two_workers_share_metrics_asks_and_revocations(cli, settings, served) -> None:
    url, proc, logs = served
    admin = make_key(cli, "ops", "admin")
    product = make_key(cli, "product", "ingest")
    auth = {"Authorization": f"Bearer {admin}"}

    def post(i: int) -> int:
        return httpx.post(f"{url}/v1/feedback", json=event(f"w{i}"), headers=auth, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, range(40))) == {200}
        asks = list(
            pool.map(
                lambda _: httpx.post(
                    f"{url}/v1/ask", json={"user_id": "z", "confidence": 0.1}, headers=auth, timeout=30
                ).json(),
                range(20),
            )
        )
    assert [a.get("ask") for a in asks].count(True) == settings.ask.per_user_per_day, asks
    for _ in range(6):  # whichever worker answers, it counts both workers' events
        text = httpx.get(f"{url}/metrics", headers=auth).text
        assert _value(text, "flywheel_events_accepted_total") == 40
    assert len(stored_ids(settings)) == 40

    assert (
        httpx.post(f"{url}/v1/feedback", json=event("p1"), headers={"Authorization": f"Bearer {product}"}).status_code
        == 200
    )
    cli("keys", "revoke", "product")
    with ThreadPoolExecutor(4) as pool:
        refused = set(
            pool.map(
                lambda i: (
                    httpx.post(
                        f"{url}/v1/feedback", json=event(f"p{i}"), headers={"Authorization": f"Bearer {product}"}
                    ).status_code
                ),
                range(2, 22),
            )
        )
    assert refused == {401}
    httpx.get(f"{url}/v1/champion", headers={"Authorization": f"Bearer {product}x"})

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.2)
    log = "".join(logs)
    assert "POST /v1/feedback" in log  # the access log is on, on stderr
    for key in (admin, product):
        assert key not in log and key.split("_", 2)[2] not in log
    assert not any((settings.home / "metrics").iterdir())  # the run's metric files went with it
