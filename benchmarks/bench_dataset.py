"""Building a fine-tune dataset from 200,000 feedback events (`flywheel dataset build` in a child process).

Target (issue 5): under 60 s and under 1 GB peak RSS on 2 cores, near-duplicate detection included.

The events are the simulator's world at scale (its templated questions, so near-duplicates are
common, as in real traffic) plus support-agent corrections with free-form context; 85% of users
consent. The build includes reading the store, curation (consent, quality, golden overlap, exact and
MinHash near-duplicates, per-user cap), the split, writing the Hugging Face datasets and JSONL files,
and the MLflow run with the dataset as input.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks._util import BIN, Target, parse_args, report, run_child
from flywheel.sim.world import generate_feedback, generate_golden


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parse_args(parser, argv, events=600)
    with tempfile.TemporaryDirectory() as tmp:
        src, golden = Path(tmp) / "events.jsonl", Path(tmp) / "golden.jsonl"
        errors = args.events // 4
        with src.open("w") as fh:
            for e in generate_feedback(
                seed=3, n_events=args.events - errors - 200, n_users=20_000, n_error_code=errors
            ):
                fh.write(json.dumps(e) + "\n")
        golden.write_text("".join(json.dumps(g) + "\n" for g in generate_golden()))
        env = {"FLYWHEEL_HOME": str(Path(tmp) / "home"), "FLYWHEEL_GOLDEN": str(golden)}
        ingest_s, _, proc = run_child([str(BIN / "flywheel"), "ingest", str(src), "--json"], env)
        accepted = json.loads(proc.stdout)["accepted"]
        seconds, rss, proc = run_child(
            [str(BIN / "flywheel"), "dataset", "build", "--min-examples", "1", "--json"], env
        )
        out = json.loads(proc.stdout)
    return report(
        "dataset",
        {
            "events": accepted,
            "ingest_s": round(ingest_s, 1),
            "build_s": round(seconds, 1),
            "peak_rss_mb": rss,
            "candidates": out["candidates"],
            "examples": out["examples"],
            "train": out["train"],
            "validation": out["validation"],
            "preference_pairs": out["preference_pairs"],
            "excluded": out["excluded"],
        },
        [
            Target.of("dataset build", round(seconds, 1), "<", 60, "s"),
            Target.of("build peak RSS", rss, "<", 1024, "MB"),
            Target.check("built", out["built"]),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
