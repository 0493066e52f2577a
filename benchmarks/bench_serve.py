"""`flywheel serve` under load (a child process, as deployed), against `flywheel ingest` on the same events.

- batched: POST /v1/feedback with 100 events a request from 4 client threads, events/s and per-request
  p50/p99, against the CLI's events/s on the same events (a child process too, start-up included);
- single: one event a request from 8 client threads, as fast as they go;
- paced: one event a request at 200 requests/s, open loop (latency counted from when each request was
  due, so a stall shows in the figures instead of slowing the sender);
- champion: GET /v1/champion for varying users at 200 requests/s, open loop.

Targets (issue 16, 2 cores; the load generator shares them): batched >= 50% of the CLI's events/s,
paced single-event p99 < 50 ms, champion p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks._util import BIN, Target, parse_args, report, run_child
from benchmarks.bench_ingest import generate


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Server:
    """`flywheel serve` in a child process with its own FLYWHEEL_HOME."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "FLYWHEEL_HOME": str(home)}
        self.home = home

    def cli(self, *args: str) -> dict:
        done = subprocess.run([str(BIN / "flywheel"), *args, "--json"], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"flywheel {' '.join(args)} failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout)

    def start(self, workers: int) -> str:
        self.proc = subprocess.Popen(
            [str(BIN / "flywheel"), "serve", "--port", "0", "--workers", str(workers), "--no-access-log"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None  # stdout=PIPE
        url = self.proc.stdout.readline().strip()
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    return url
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("flywheel serve did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def _closed_loop(url: str, key: str, bodies: list[bytes], threads: int) -> tuple[float, list[float]]:
    """Send every body from ``threads`` senders as fast as answers come; (seconds, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [bodies[i::threads] for i in range(threads)]

    def sender(mine: list[bytes]) -> None:
        own: list[float] = []
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, timeout=60
        ) as http:
            for body in mine:
                t0 = time.perf_counter()
                answer = http.post("/v1/feedback", content=body)
                own.append(time.perf_counter() - t0)
                if answer.status_code != 200:
                    raise SystemExit(f"POST /v1/feedback answered {answer.status_code}: {answer.text[:300]}")
        with lock:
            latencies.extend(own)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sender, chunks))
    return time.perf_counter() - start, latencies


def _open_loop(
    url: str, key: str, rate: float, seconds: float, request: Callable[[httpx.Client, int], None], threads: int = 16
) -> list[float]:
    """``rate`` requests a second for ``seconds``; each latency counts from when its request was due."""
    n = int(rate * seconds)
    latencies: list[float] = []
    lock = threading.Lock()
    # Clients made and connected before the clock starts: their set-up is the load generator's, not the server's.
    clients: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
    for _ in range(threads):
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        http.get("/healthz")
        clients.put(http)
    start = time.perf_counter() + 0.5

    def one(i: int) -> None:
        due = start + i / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        http = clients.get()
        try:
            request(http, i)
        finally:
            clients.put(http)
        with lock:
            latencies.append(time.perf_counter() - due)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    while not clients.empty():
        clients.get().close()
    return latencies


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000, help="events for the batched run and the CLI")
    parser.add_argument("--single", type=int, default=5_000, help="events for the closed-loop single-event run")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each paced run")
    args = parse_args(parser, argv, events=300, single=50, seconds=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "events.jsonl"
        generate(src, args.events + args.single)
        lines = src.read_bytes().splitlines()
        batch_src = Path(tmp) / "batched.jsonl"
        batch_src.write_bytes(b"\n".join(lines[: args.events]) + b"\n")
        cli_seconds, _, proc = run_child(
            [str(BIN / "flywheel"), "ingest", str(batch_src), "--json"],
            env={"FLYWHEEL_HOME": str(Path(tmp) / "cli-home")},
        )
        cli_rate = json.loads(proc.stdout)["accepted"] / cli_seconds

        server = Server(Path(tmp) / "serve-home")
        key = server.cli("keys", "create", "bench", "--scope", "admin")["key"]
        prompt = Path(tmp) / "prompt.txt"
        prompt.write_text("You answer support questions briefly.")
        server.cli("prompt", "set", str(prompt))
        url = server.start(args.workers)
        try:  # the first champion request waits for the start-up's read of MLflow (imports included): not timed
            httpx.get(f"{url}/v1/champion", headers={"Authorization": f"Bearer {key}"}, timeout=120).raise_for_status()
            batches = [b'{"events": [' + b",".join(lines[i : i + 100]) + b"]}" for i in range(0, args.events, 100)]
            batch_seconds, batch_lat = _closed_loop(url, key, batches, threads=4)
            singles = lines[args.events :]
            single_seconds, single_lat = _closed_loop(url, key, singles, threads=8)

            def post_one(http: httpx.Client, i: int) -> None:
                body = json.loads(singles[i % len(singles)])
                body["event_id"] = f"paced-{i}"
                assert http.post("/v1/feedback", json=body).status_code == 200

            paced_lat = _open_loop(url, key, 200, args.seconds, post_one)

            def champion(http: httpx.Client, i: int) -> None:
                assert http.get("/v1/champion", params={"user_id": f"user-{i % 5000}"}).status_code == 200

            champion_lat = _open_loop(url, key, 200, args.seconds, champion)
        finally:
            server.stop()
    batch_rate = args.events / batch_seconds
    figures = {
        "workers": args.workers,
        "cli_events_per_s": round(cli_rate),
        "batched_events_per_s": round(batch_rate),
        "batched_vs_cli": round(batch_rate / cli_rate, 2),
        "batched_request_p50_ms": round(_pct(batch_lat, 0.5), 1),
        "batched_request_p99_ms": round(_pct(batch_lat, 0.99), 1),
        "single_events_per_s": round(len(single_lat) / single_seconds),
        "single_p50_ms": round(_pct(single_lat, 0.5), 1),
        "single_p99_ms": round(_pct(single_lat, 0.99), 1),
        "paced_200rps_p50_ms": round(_pct(paced_lat, 0.5), 1),
        "paced_200rps_p99_ms": round(_pct(paced_lat, 0.99), 1),
        "champion_200rps_p50_ms": round(_pct(champion_lat, 0.5), 2),
        "champion_200rps_p99_ms": round(_pct(champion_lat, 0.99), 2),
    }
    return report(
        "serve",
        figures,
        [
            Target.of("batched events/s / the CLI's", round(batch_rate / cli_rate, 2), ">=", 0.5),
            Target.of("single-event p99 at 200 requests/s", round(_pct(paced_lat, 0.99), 1), "<", 50, "ms"),
            Target.of("champion p99 at 200 requests/s", round(_pct(champion_lat, 0.99), 2), "<", 10, "ms"),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
