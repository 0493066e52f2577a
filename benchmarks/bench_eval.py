"""Evaluation throughput: 3 variants x 1,000 golden items as one batch (as a cycle evaluates the
champion and its candidates), the simulator (in its own process) answering after a fixed 50 ms,
concurrency 32.

Target (issue 3): at most 1.3x the ideal (3000 x 0.05 s / 32 = 4.69 s), measured in one run.

The peer (issue 31): ``mlflow.genai.evaluate`` on the same items, variants and endpoint in the same
run, as its users write it: a ``predict_fn`` asking the endpoint through the OpenAI client (the same
system prompt and question), a scorer applying each item's own scorer, its worker pool at the same
concurrency (``MLFLOW_GENAI_EVAL_MAX_WORKERS``), tracking in a SQLite file with a connection pool
that fits the workers and traces logged asynchronously. ``mlflow_ratio`` is
Flywheel's time over MLflow's (below 1: Flywheel is faster). ``--no-peer`` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks._util import BIN, Target, parse_args, report
from flywheel.config import load_settings
from flywheel.evals.golden import load_golden
from flywheel.evals.pipeline import Variant
from flywheel.evals.runner import evaluate_many
from flywheel.evals.scorers import CODE_SCORERS
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


def mlflow_peer(items: Sequence, variants: Sequence[Variant], base_url: str, home: Path) -> tuple[float, list[float]]:
    """(seconds, mean score per variant) of ``mlflow.genai.evaluate`` on the same items and endpoint."""
    os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = str(CONCURRENCY)
    os.environ.setdefault("MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION", "true")
    # Each answer is traced into the tracking store: with its default pool (5 + 10 connections) 32 workers
    # queue for a connection up to its 30 s timeout. Set up as a user running 32 workers would.
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", str(CONCURRENCY + 4))
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "8")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")
    import mlflow
    import openai
    from mlflow.genai.scorers import scorer

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow-peer.db'}")
    mlflow.set_experiment("peer")
    client = openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0)

    @scorer
    def golden_scorer(outputs: str, expectations: dict) -> float:
        return CODE_SCORERS[expectations["scorer"]](outputs, expectations["expected"]).value

    data = [
        {
            "inputs": {"question": item.input},
            "expectations": {"expected": item.expected, "scorer": item.scorer or "contains"},
        }
        for item in items
    ]
    means, start = [], time.perf_counter()
    for variant in variants:

        def predict(question: str, system: str = variant.prompt_template, model: str = variant.model) -> str:
            answer = client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
                temperature=0.0,
            )
            return answer.choices[0].message.content or ""

        result = mlflow.genai.evaluate(data=data, predict_fn=predict, scorers=[golden_scorer])
        means.append(round(float(result.metrics.get("golden_scorer/mean", float("nan"))), 4))
    return time.perf_counter() - start, means


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--variants", type=int, default=VARIANTS)
    parser.add_argument("--latency", type=float, default=LATENCY, help="The simulator's answer time, seconds.")
    parser.add_argument("--no-peer", action="store_true", help="Skip mlflow.genai.evaluate (the peer).")
    args = parse_args(
        parser, argv, items=40, variants=2, latency=0.01, no_peer=True
    )  # the peer alone: a minute or more
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
        peer = None if args.no_peer else mlflow_peer(golden.items, variants, base_url, Path(tmp))
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
            **(
                {}
                if peer is None
                else {
                    "mlflow_seconds": round(peer[0], 2),
                    "mlflow_ratio": round(elapsed / peer[0], 3),
                    "mlflow_mean_scores": peer[1],
                }
            ),
        },
        [
            Target.of("evaluation time / ideal", round(elapsed / ideal, 3), "<=", 1.3),
            Target.check("no errors", errors == 0),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
