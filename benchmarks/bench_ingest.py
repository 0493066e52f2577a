"""Ingest of 1,000,000 generated events end to end (the `flywheel ingest` command in a child process).

Targets: at least 25,000 events/s on 2 cores (issue 31; issue 2 asked 20,000), peak RSS under 500 MB.
The child's CPU time is reported beside the wall time: on a shared machine the load shows in the
wall time only. A file this long is checked by worker processes beside the command
(``ingest.workers``, flywheel/feedback/checking.py); their CPU time is not the command's and may be
missing from ``cpu_s`` (they are the fork server's children, which the command does not wait for).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
from pathlib import Path

from benchmarks._util import BIN, Target, parse_args, report, run_child
from flywheel.config import load_settings
from flywheel.feedback.checking import workers_for

SIGNALS = [
    "thumbs_up",
    "thumbs_down",
    "rating",
    "correction",
    "edit",
    "accept",
    "dismiss",
    "copy",
    "outcome",
    "expert_review",
]
QUERIES = [
    "How do I reset my password?",
    "What is the maximum upload size?",
    "How much does the Pro plan cost?",
    "Give me the Team plan details as JSON.",
    "Sync broke again, how do I fix it?",
    "How do I export my data?",
]


def generate(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            signal = SIGNALS[i % len(SIGNALS)]
            e = {
                "event_id": f"b-{i:08d}",
                "ts": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                "signal": signal,
                "query": f"{rng.choice(QUERIES)} (ticket {rng.randint(1, 10**6)})",
                "output": "Go to Settings > Security and choose Reset password; we email you a reset link.",
                "user_id": f"u{rng.randint(1, 50000)}",
                "consent": rng.random() < 0.85,
                "confidence": 0.7,
            }
            if signal in ("rating",):
                e["value"] = rng.randint(1, 5)
            elif signal == "outcome":
                e["value"] = rng.randint(0, 1)
            elif signal == "expert_review":
                e["value"] = 0.2
            elif signal == "correction":
                e["correction"] = "The Pro plan costs $12 per month."
            elif signal == "edit":
                e["final_text"] = "Open Settings, then Security, then Reset password."
            if i % 20 == 0:
                e["comment"] = f"reach me at user{i}@example.com or +1 415 555 {i % 10000:04d}"
            fh.write(json.dumps(e) + "\n")


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parse_args(parser, argv, events=2000)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "events.jsonl"
        generate(src, args.events)
        src_bytes = src.stat().st_size
        size_mb = src_bytes / 1e6
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, rss, proc = run_child(
            [str(BIN / "flywheel"), "ingest", str(src), "--json"], env={"FLYWHEEL_HOME": str(Path(tmp) / "home")}
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = json.loads(proc.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rate = out["accepted"] / seconds
    return report(
        "ingest",
        {
            "events": args.events,
            "file_mb": round(size_mb, 1),
            "seconds": round(seconds, 1),
            "events_per_s": round(rate),
            "cpu_s": round(cpu, 1),  # the child's CPU time: what the rate would be on an idle machine
            "events_per_cpu_s": round(out["accepted"] / cpu),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "checking_workers": workers_for(load_settings().ingest, src_bytes),  # as the child decides it
            "peak_rss_mb": rss,
            "accepted": out["accepted"],
            "scrubbed": out["scrubbed"],
        },
        [
            Target.of("SQLite batched ingest", round(rate), ">=", 25_000, "events/s"),
            Target.of("peak RSS", rss, "<", 500, "MB"),
            Target.check("all accepted", out["accepted"] == args.events),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
