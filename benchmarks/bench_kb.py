"""Knowledge index at 100,000 chunks: initial sync, a 1% refresh, retrieval latency at k=5.

Targets (issue 4): report chunks/s and peak RSS of the initial sync; a refresh changing 1% of the
chunks costs at most 5% of a full rebuild; report retrieval p50/p95 at k=5.

"Full rebuild" is building the index of that source from nothing (fresh Chroma store, cold
embedding cache), which is what the initial sync does, so the initial sync's time is the reference.
Both syncs run as `flywheel kb sync` child processes, so their times include process start and
model load, and the peak RSS is the child's own.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._util import BIN, Target, parse_args, report, run_child

TOPICS = [
    "sync",
    "sharing",
    "billing",
    "storage",
    "security",
    "offline mode",
    "mobile app",
    "desktop app",
    "admin console",
    "file versions",
    "trash",
    "uploads",
    "teams",
    "API",
    "SSO",
    "backups",
]
VERBS = ["enable", "configure", "troubleshoot", "restore", "limit", "audit", "migrate", "schedule"]
PLACES = ["Settings > Account", "the admin console", "the desktop tray menu", "the web app", "the mobile app"]
PARA_CHARS = 300  # chunk size for the benchmark: every paragraph below is one chunk


def paragraph(rng: random.Random, doc: int, n: int, revision: int = 0) -> str:
    topic, verb, place = rng.choice(TOPICS), rng.choice(VERBS), rng.choice(PLACES)
    text = (
        f"Article KB-{doc:05d}, section {n + 1}: to {verb} {topic}, open {place} and choose "
        f"'{topic.title()} options'. Workspaces on plan tier {rng.randint(1, 9)} allow up to "
        f"{rng.randint(2, 500)} items per request; changes apply within {rng.randint(1, 60)} minutes."
    )
    if revision:
        text += f" Updated in revision {revision}: the limit doubled."
    return text[:PARA_CHARS]


def write_source(path: Path, docs: int, paragraphs: int, changed: set[int] | None = None) -> int:
    """JSONL knowledge source; documents in ``changed`` get their first paragraph revised."""
    rng = random.Random(7)
    with path.open("w") as fh:
        for d in range(docs):
            paras = [paragraph(rng, d, n) for n in range(paragraphs)]
            if changed and d in changed:
                paras[0] = paragraph(random.Random(d), d, 0, revision=2)
            fh.write(
                json.dumps({"id": f"kb-{d:05d}", "text": "\n\n".join(paras), "updated_at": "2026-11-01T00:00:00Z"})
                + "\n"
            )
    return docs * paragraphs


def retrieval_latency(home: Path, queries: int) -> dict[str, float]:
    """p50/p95 of one retrieval at k=5 on the active version (query embedding included)."""
    import os

    os.environ["FLYWHEEL_HOME"] = str(home)
    from flywheel.config import load_settings
    from flywheel.knowledge.index import open_index
    from flywheel.state import open_state

    settings = load_settings()
    state = open_state(settings)
    retriever = open_index(settings, state).retriever()
    assert retriever is not None
    rng = random.Random(3)
    texts = [f"How do I {rng.choice(VERBS)} {rng.choice(TOPICS)} from {rng.choice(PLACES)}?" for _ in range(queries)]
    retriever.search(texts[0], 5)  # model and collection warm
    took = []
    for q in texts:
        start = time.perf_counter()
        hits = retriever.search(q, 5)
        took.append((time.perf_counter() - start) * 1000)
        assert len(hits) == 5
    state.close()
    took.sort()
    return {"p50_ms": round(statistics.median(took), 1), "p95_ms": round(took[int(0.95 * len(took)) - 1], 1)}


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parse_args(parser, argv, chunks=100, queries=5)
    paragraphs = 4
    docs = args.chunks // paragraphs
    with tempfile.TemporaryDirectory() as tmp:
        home, source = Path(tmp) / "home", Path(tmp) / "kb.jsonl"
        env = {"FLYWHEEL_HOME": str(home), "FLYWHEEL_KNOWLEDGE__CHUNK_CHARS": str(PARA_CHARS)}
        flywheel = str(BIN / "flywheel")
        chunks = write_source(source, docs, paragraphs)
        full_s, full_rss, proc = run_child([flywheel, "kb", "sync", "--source", str(source), "--json"], env)
        first = json.loads(proc.stdout)
        changed = set(random.Random(11).sample(range(docs), chunks // 100))  # 1% of the chunks
        write_source(source, docs, paragraphs, changed)
        refresh_s, refresh_rss, proc = run_child([flywheel, "kb", "sync", "--source", str(source), "--json"], env)
        second = json.loads(proc.stdout)
        latency = retrieval_latency(home, args.queries)
    figures = {
        "chunks": chunks,
        "chunk_chars_mean": len(paragraph(random.Random(1), 1, 1)),
        "initial_sync_s": round(full_s, 1),
        "initial_sync_chunks_per_s": round(chunks / full_s),
        "initial_sync_peak_rss_mb": full_rss,
        "initial_embedded": first["embedded"],
        "refresh_changed_chunks": second["updated"],
        "refresh_embedded": second["embedded"],
        "refresh_s": round(refresh_s, 1),
        "refresh_peak_rss_mb": refresh_rss,
        "refresh_vs_full_rebuild": round(refresh_s / full_s, 3),
        "retrieval_k5_p50_ms": latency["p50_ms"],
        "retrieval_k5_p95_ms": latency["p95_ms"],
    }
    return report(
        "kb",
        figures,
        [
            Target.check("initial sync embedded every chunk once", first["embedded"] == chunks),
            Target.check(
                "refresh embedded only the changed 1%", second["embedded"] == second["updated"] == chunks // 100
            ),
            Target.of("1% refresh / full rebuild", round(refresh_s / full_s, 3), "<=", 0.05),
        ],
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
