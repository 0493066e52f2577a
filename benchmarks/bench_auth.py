"""What a key costs `flywheel serve` (issue 27): the median time of `GET /metrics` with the right key,
a wrong secret for a known key id, and an unknown key id, one request at a time on one worker.

Every wrong secret and unknown id is new, as in a stream of guessed keys. "cold" is wrong secrets for
a key id whose right key this worker has not seen yet (or not within keys.VERIFIED_TTL_SECONDS): only
scrypt can tell those apart. Equal figures mean an answer's timing tells nothing about which ids exist.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    print(json.dumps(measure(parser.parse_args().requests), indent=1))


if __name__ == "__main__":
    main()
