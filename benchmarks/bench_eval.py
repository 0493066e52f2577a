"""Evaluation throughput: 3 variants x 1,000 golden items as one batch (as a cycle evaluates the
champion and its candidates), the simulator (in its own process) answering after a fixed 50 ms,
concurrency 32.

Target (issue 3): at most 1.3x the ideal (3000 x 0.05 s / 32 = 4.69 s), measured in one run.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks._util import BIN, report
from flywheel.config import load_settings
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import evaluate_many
from flywheel.loop.evaluate import answer_factory
from flywheel.sim.rules import INTENTS, golden_expectation
from flywheel.sim.world import INITIAL_PROMPT, make_query

ITEMS, VARIANTS, CONCURRENCY, LATENCY = 1000, 3, 32, 0.05


def write_golden(path: Path) -> Path:
    rng = random.Random(5)
    with path.open("w") as fh:
        for i in range(ITEMS):
            intent = INTENTS[i % len(INTENTS)]
            query, slots = make_query(intent, rng)
            scorer, expected = golden_expectation(intent, slots)
            fh.write(
                json.dumps(
                    {
                        "id": f"b{i}",
                        "input": f"{query} (#{i})",
                        "expected": expected,
                        "category": intent.category,
                        "scorer": scorer,
                    }
                )
                + "\n"
            )
    return path


@contextmanager
def simulator_process() -> Iterator[str]:
    """The simulator in its own process, as a real endpoint would be: this process is the client only."""
    proc = subprocess.Popen(
        [str(BIN / "flywheel"), "sim", "serve", "--latency", str(LATENCY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def main() -> bool:
    with tempfile.TemporaryDirectory() as tmp, simulator_process() as base_url:
        golden = load_golden(write_golden(Path(tmp) / "golden.jsonl"))
        settings = load_settings(
            home=Path(tmp) / "home", openai_base_url=base_url, eval={"concurrency": CONCURRENCY, "cache": False}
        )
        variants = [
            Variant(label=f"v{k}", prompt_template=INITIAL_PROMPT + " " * k, model="gpt-4o-mini")
            for k in range(VARIANTS)
        ]
        start = time.perf_counter()
        results = evaluate_many(
            variants,
            golden,
            answer_factory(settings),
            default_scorer="contains",
            concurrency=CONCURRENCY,
            use_cache=False,
        )
        elapsed = time.perf_counter() - start
    ideal = VARIANTS * ITEMS * LATENCY / CONCURRENCY
    errors = sum(r.errors for r in results)
    return report(
        "eval",
        {
            "variants": VARIANTS,
            "items": ITEMS,
            "concurrency": CONCURRENCY,
            "latency_s": LATENCY,
            "seconds": round(elapsed, 2),
            "ideal_seconds": round(ideal, 2),
            "ratio": round(elapsed / ideal, 3),
            "errors": errors,
            "mean_scores": [r.mean for r in results],
        },
        {"ratio <= 1.3": elapsed / ideal <= 1.3, "no errors": errors == 0},
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
