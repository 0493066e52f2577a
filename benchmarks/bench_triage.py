"""Triage of 100,000 negative events with mostly distinct queries (`flywheel triage` in a child process).

Targets (issue 2): under 300 s with a cold embedding cache; under 15 s when only 1% of the events
are new, with nothing already embedded embedded again (counted through the cache size).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
from pathlib import Path

from benchmarks._util import BIN, parse_args, report, run_child
from flywheel.sim.rules import INTENTS
from flywheel.sim.world import CLOSERS, OPENERS, REASON_FOR_CATEGORY, fill_slots

DEVICES = ["on my Mac", "on Windows", "on Android", "on my iPad", "in the web app", "on Linux", "on my iPhone"]


def detail(rng: random.Random) -> str:
    """What makes real queries distinct without making them long: ids, devices, versions."""
    kind = rng.randrange(4)
    if kind == 0:
        return f" (ticket {rng.randint(10000, 99999)})"
    if kind == 1:
        return f" {rng.choice(DEVICES)}, v{rng.randint(1, 9)}.{rng.randint(0, 30)}"
    if kind == 2:
        return f" Order #{rng.randint(1000, 99999)}."
    return ""


def make_events(n: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        intent = rng.choice(INTENTS)
        text = rng.choice(intent.templates).format(**fill_slots(intent, rng))
        query = rng.choice(OPENERS) + text + rng.choice(CLOSERS) + detail(rng)
        e = {
            "event_id": f"{prefix}-{i:07d}",
            "ts": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            "signal": "thumbs_down",
            "query": query,
            "output": "(answer)",
            "user_id": f"u{rng.randint(1, 40000)}",
            "consent": rng.random() < 0.85,
            "confidence": round(rng.random(), 2),
        }
        if intent.category != "general" and rng.random() < 0.6:
            e["reason"] = REASON_FOR_CATEGORY[intent.category]
        out.append(e)
    return out


def write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def cached_vectors(home: Path) -> int:
    db = sqlite3.connect(home / "embeddings.sqlite")
    try:
        return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
    finally:
        db.close()


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parse_args(parser, argv, events=300)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {"FLYWHEEL_HOME": str(home)}
        flywheel = str(BIN / "flywheel")
        base = make_events(args.events, 1, "b")
        run_child([flywheel, "ingest", str(write(Path(tmp) / "base.jsonl", base)), "--json"], env)
        distinct = len({e["query"] for e in base})
        mean_chars = round(sum(len(e["query"]) for e in base) / len(base))
        cold_s, cold_rss, proc = run_child([flywheel, "triage", "--json"], env)
        cold_clusters = len(json.loads(proc.stdout)["clusters"])
        embedded_cold = cached_vectors(home)

        new = make_events(args.events // 100, 2, "n")
        run_child([flywheel, "ingest", str(write(Path(tmp) / "new.jsonl", new)), "--json"], env)
        new_distinct = len({e["query"] for e in new} - {e["query"] for e in base})
        warm_s, _, proc = run_child([flywheel, "triage", "--json"], env)
        embedded_warm = cached_vectors(home) - embedded_cold
        warm_clusters = len(json.loads(proc.stdout)["clusters"])
    return report(
        "triage",
        {
            "events": args.events,
            "distinct_queries": distinct,
            "mean_query_chars": mean_chars,
            "cold_seconds": round(cold_s, 1),
            "cold_clusters": cold_clusters,
            "cold_embedded": embedded_cold,
            "peak_rss_mb": cold_rss,
            "new_events": len(new),
            "new_distinct_queries": new_distinct,
            "warm_seconds": round(warm_s, 1),
            "warm_embedded": embedded_warm,
            "warm_clusters": warm_clusters,
        },
        {
            "cold < 300 s": cold_s < 300,
            "1% new < 15 s": warm_s < 15,
            "only new texts embedded": embedded_warm == new_distinct,
        },
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
