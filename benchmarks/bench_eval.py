"""Evaluation throughput: 3 variants x 1,000 golden items as one batch (as a cycle evaluates the
champion and its candidates), the simulator (in its own process) answering after a fixed 50 ms,
concurrency 32.

Target (issue 3): at most 1.3x the ideal (3000 x 0.05 s / 32 = 4.69 s), measured in one run.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks._util import BIN, Target, parse_args, report
from flywheel.config import load_settings
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import evaluate_many
from flywheel.loop.evaluate import answer_factory
from flywheel.sim.rules import INTENTS, golden_expectation
from flywheel.sim.world import INITIAL_PROMPT, make_query

ITEMS, VARIANTS, CONCURRENCY, LATENCY = 1000, 3, 32, 0.05


def write_golden(path: Path, items: int = ITEMS) -> Path:
    rng = random.Random(5)
    with path.open("w") as fh:
        for i in range(items):
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
def simulator_process(latency: float = LATENCY) -> Iterator[str]:
    """The simulator in its own process, as a real endpoint would be: this process is the client only."""
    proc = subprocess.Popen(
        [str(BIN / "flywheel"), "sim", "serve", "--latency", str(latency)],
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


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--variants", type=int, default=VARIANTS)
    parser.add_argument("--latency", type=float, default=LATENCY, help="The simulator's answer time, seconds.")
    args = parse_args(parser, argv, items=40, variants=2, latency=0.01)
    with tempfile.TemporaryDirectory() as tmp, simulator_process(args.latency) as base_url:
        golden = load_golden(write_golden(Path(tmp) / "golden.jsonl", args.items))
        settings = load_settings(
            home=Path(tmp) / "home", openai_base_url=base_url, eval={"concurrency": CONCURRENCY, "cache": False}
        )
        variants = [
            Variant(label=f"v{k}", prompt_template=INITIAL_PROMPT + " " * k, model="gpt-4o-mini")
            for k in range(args.variants)
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
    ideal = args.variants * args.items * args.latency / CONCURRENCY
    errors = sum(r.errors for r in results)
    return report(
        "eval",
        {
            "variants": args.variants,
            "items": args.items,
            "concurrency": CONCURRENCY,
            "latency_s": args.latency,
            "seconds": round(elapsed, 2),
            "ideal_seconds": round(ideal, 2),
            "ratio": round(elapsed / ideal, 3),
            "errors": errors,
            "mean_scores": [r.mean for r in results],
        },
        [
            Target.of("evaluation time / ideal", round(elapsed / ideal, 3), "<=", 1.3),
            Target.check("no errors", errors == 0),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
