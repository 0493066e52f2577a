"""`flywheel serve` against hostile input (issue 27): huge bodies streamed without a key, or over the
limit with one, are refused as soon as that is known and cost the worker no memory to speak of; the
access log holds no query strings; metric directories of dead runs do not pile up.

One real `flywheel serve` child process for the module (its RSS is what is measured), with keys made
by the key store itself and bodies sent chunked from a raw socket, so the server cannot know the size
in advance and the test sees how much had been sent when the answer came."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from flywheel.keys import open_keys

FLYWHEEL = Path(sys.executable).parent / "flywheel"
MB = 1024 * 1024
FLOOD_BYTES = 400 * MB
EARLY_BYTES = 64 * MB  # kernel buffers on loopback hold a few MB: an answer before this came early
RSS_BUDGET = 50 * MB
BODY_ROUTES = ("/v1/feedback", "/v1/ask", "/v1/opt-out")


@dataclass
class Serve:
    url: str
    port: int
    proc: subprocess.Popen
    home: Path
    keys: dict[str, str]
    logs: list[str] = field(default_factory=list)
    stale: Path | None = None
    alive: Path | None = None


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    home = tmp_path_factory.mktemp("hostile") / "home"
    store = open_keys(home)
    keys = {scope: store.create(scope, scope) for scope in ("ingest", "read")}
    stale, alive = home / "metrics" / str(_dead_pid()), home / "metrics" / str(os.getpid())
    for directory in (stale, alive):
        directory.mkdir(parents=True)
        (directory / "counter_1.db").write_bytes(b"x")
    env = {
        k: v
        for k, v in os.environ.items()  # FLYWHEEL_CHECKOUT: the code under test, in a worktree
        if not k.startswith(("FLYWHEEL_", "PROMETHEUS_")) or k == "FLYWHEEL_CHECKOUT"
    }
    proc = subprocess.Popen(
        [str(FLYWHEEL), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "FLYWHEEL_HOME": str(home)},
        cwd=home.parent,
    )
    url = proc.stdout.readline().strip()
    running = Serve(url, int(url.rsplit(":", 1)[1]), proc, home, keys, stale=stale, alive=alive)
    threading.Thread(target=lambda: running.logs.extend(proc.stderr), daemon=True).start()
    try:
        _wait_healthy(running)
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _wait_healthy(serve: Serve) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{serve.url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and serve.proc.poll() is None, "".join(serve.logs)
        time.sleep(0.1)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


class PeakRss:
    """The largest RSS of a process while the block runs, sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@dataclass
class Answer:
    status: int
    sent_before: int  # body bytes sent when the answer was there to read
    sent: int  # body bytes sent in all (the server may close the connection instead of reading on)


def _status(sock: socket.socket) -> int:
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 "), head[:200]
    return int(head.split(b" ", 2)[1])


def flood(port: int, path: str, key: str | None, total: int = FLOOD_BYTES) -> Answer:
    """POST ``total`` bytes of JSON whitespace, chunked, 1 MB a chunk, reading the answer as soon as
    one is there; the rest is still sent, as a hostile client would."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    chunk = b"%x\r\n%s\r\n" % (MB, b" " * MB)
    status, sent_before, sent = 0, 0, 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{auth}"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += MB
                if not status and select.select([sock], [], [], 0)[0]:
                    status, sent_before = _status(sock), sent
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not status:
            status, sent_before = _status(sock), sent
    return Answer(status, sent_before, sent)


def _idle_rss(serve: Serve) -> int:
    """RSS once every route has run (imports and first-use caches are in; the champion read at start
    loads MLflow, 100 MB or more) and it stopped moving."""
    read = {"Authorization": f"Bearer {serve.keys['read']}"}
    httpx.get(f"{serve.url}/v1/champion", headers=read, timeout=120)
    for name, path in zip(("ingest", "read", "read"), BODY_ROUTES, strict=True):
        httpx.post(
            f"{serve.url}{path}",
            json={"user_id": "u-warm"},
            timeout=30,
            headers={"Authorization": f"Bearer {serve.keys[name]}"},
        )
    before, deadline = _rss(serve.proc.pid), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _rss(serve.proc.pid)
        if abs(now - before) < MB:
            return now
        before = now
    return before


def test_unauthenticated_floods_are_refused_at_once_without_memory(serve: Serve) -> None:
    idle = _idle_rss(serve)
    for path in BODY_ROUTES:
        with PeakRss(serve.proc.pid) as rss:
            answer = flood(serve.port, path, key=None)
        print(
            f"{path}: 401 after {answer.sent_before / MB:.0f} MB of {answer.sent / MB:.0f} MB sent; "
            f"RSS idle {idle / MB:.1f} MB, peak {rss.peak / MB:.1f} MB"
        )
        assert answer.status == 401, path
        assert answer.sent_before <= EARLY_BYTES, f"{path}: answered only after {answer.sent_before / MB:.0f} MB"
        assert rss.peak - idle < RSS_BUDGET, f"{path}: RSS {idle / MB:.0f} -> {rss.peak / MB:.0f} MB"
    assert httpx.get(f"{serve.url}/healthz").status_code == 200


def test_authenticated_bodies_over_the_limit_are_refused_early(serve: Serve) -> None:
    idle = _idle_rss(serve)
    for name, path in (("ingest", "/v1/feedback"), ("read", "/v1/ask"), ("read", "/v1/opt-out")):
        with PeakRss(serve.proc.pid) as rss:
            answer = flood(serve.port, path, serve.keys[name], total=100 * MB)
        print(f"{path}: 413 after {answer.sent_before / MB:.0f} MB; RSS idle {idle / MB:.1f}, peak {rss.peak / MB:.1f}")
        assert answer.status == 413, path
        assert answer.sent_before <= EARLY_BYTES, f"{path}: answered only after {answer.sent_before / MB:.0f} MB"
        assert rss.peak - idle < RSS_BUDGET, f"{path}: RSS {idle / MB:.0f} -> {rss.peak / MB:.0f} MB"
    # the wrong scope is refused before the body too
    assert flood(serve.port, "/v1/feedback", serve.keys["read"], total=100 * MB).status == 403


def test_access_log_has_paths_not_query_strings(serve: Serve) -> None:
    answer = httpx.get(
        f"{serve.url}/v1/champion",
        params={"user_id": "u-secret-4711"},
        headers={"Authorization": f"Bearer {serve.keys['read']}"},
        timeout=60,
    )
    assert answer.status_code in (200, 404, 503)
    deadline = time.monotonic() + 10
    while "GET /v1/champion" not in "".join(serve.logs) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = "".join(serve.logs)
    assert "GET /v1/champion HTTP/1.1" in log
    assert "u-secret-4711" not in log and "user_id" not in log


def test_metrics_directories_of_dead_runs_are_removed_at_start(serve: Serve) -> None:
    assert serve.stale is not None and serve.alive is not None
    assert not serve.stale.exists()
    assert serve.alive.exists()  # its process (this test run) is alive: it may be another run's
    assert (serve.home / "metrics" / str(serve.proc.pid)).is_dir()
