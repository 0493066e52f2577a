"""What a key costs `flywheel serve` (issue 27): the median time of `GET /metrics` with the right key,
a wrong secret for a known key id, and an unknown key id, one request at a time on one worker.

Every wrong secret and unknown id is new, as in a stream of guessed keys. "cold" is wrong secrets for
a key id whose right key this worker has not seen yet (or not within keys.VERIFIED_TTL_SECONDS): only
scrypt can tell those apart. Equal figures mean an answer's timing tells nothing about which ids exist.

Target (README, "Live service": "as fast as an unknown id"): a wrong secret for a key in use is refused
within 1.5 times an unknown id's median. The other figures are reported, not held to a bound.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._util import Target, parse_args, report
from benchmarks.bench_serve import Server


def _median_ms(url: str, keys: list[str]) -> float:
    times = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for key in keys:
            start = time.perf_counter()
            http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        key = server.cli("keys", "create", "bench", "--scope", "read")["key"]
        _, key_id, _ = key.split("_", 2)
        url = server.start(workers=1)
        try:
            wrong = [f"fw_{key_id}_{secrets.token_urlsafe(32)}" for _ in range(2 * requests)]
            cold = _median_ms(url, wrong[:requests])
            _median_ms(url, [key])  # the first use pays scrypt once
            return {
                "wrong_secret_cold_ms": cold,
                "right_ms": _median_ms(url, [key] * requests),
                "wrong_secret_ms": _median_ms(url, wrong[requests:]),
                "unknown_id_ms": _median_ms(
                    url, [f"fw_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}" for _ in range(requests)]
                ),
            }
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    args = parse_args(parser, argv, requests=5)
    figures = {k: round(v, 3) for k, v in measure(args.requests).items()}
    wrong, unknown = figures["wrong_secret_ms"], figures["unknown_id_ms"]
    return report(
        "auth",
        {"requests": args.requests, **figures},
        [Target.of("wrong secret (key in use) vs unknown id", round(wrong / unknown, 2), "<=", 1.5)],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
