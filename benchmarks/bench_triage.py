"""Triage at scale, incremental (issue 31): cost must follow what is new, not the backlog.

Two parts:

* **Real model** (all-MiniLM-L6-v2, as `flywheel triage` runs it), ``--events`` negatives (100k):
  a cold full triage in this process, then 1% new events triaged incrementally in the same process
  (the model loaded, as in a cycle's worker), then another 1% by ``flywheel triage --json`` in a child
  process (model load included), then ``flywheel triage --full`` in a child process: the adjusted Rand
  index of the incremental clusters against the full re-cluster, and whether the ids were kept.
* **Scale** (``--scale``, up to 1M): a backlog grown through ``--cold-sizes`` with a full triage timed
  at each, the growth curve fitted on log-log and projected to 10M, and the same 1k new events triaged
  incrementally on the 100k backlog and on the 1M one, twice: as a warm process runs it (a worker, the
  service: the memory its last triage saved is still held, so only the meta row is read), and with the
  cluster membership read back from the store (a fresh ``flywheel triage``: a read that grows with the
  backlog, reported beside it). Embedding 1M distinct queries with the real model takes hours on 2
  cores, so this part embeds with a **fast deterministic hashing embedder** (word and bigram hashes,
  384 dimensions; benchmark only): its figures measure triage's own cost (reading, assigning,
  clustering, saving), not the model's.

Targets: with 1% new at 100k, incremental triage < 5 s (real model, in process); at a 1M backlog the
same 1k new events take at most 1.2x the 100k time (warm process); incremental agrees with a full
re-cluster (ARI >= 0.9); only the new queries are embedded. Each incremental time is the fastest of 3
runs from the same state. Figures: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._util import BIN, Target, parse_args, report, run_child
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


class HashingEmbedder:
    """Benchmark only: word and bigram hashes into 384 signed dimensions, L2-normalised. Queries that
    share most words are close, as with a sentence model, at a few microseconds a text."""

    name = "hashing-384-benchmark"
    local = True
    dims = 384
    _words = re.compile(r"[a-z]+")

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            words = self._words.findall(text.lower())
            for token in words + [a + " " + b for a, b in itertools.pairwise(words)]:
                h = zlib.crc32(token.encode())
                out[row, h % self.dims] += 1.0 if h & 0x80000000 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        unit: np.ndarray = out / norms
        if progress:
            progress(len(texts))
        return unit


def labels_of(clusters: Sequence[Any]) -> dict[str, str]:
    """Event id -> cluster id, from clusters as objects or as JSON dicts."""
    out: dict[str, str] = {}
    for c in clusters:
        cid, ids = (c["cluster_id"], c["event_ids"]) if isinstance(c, dict) else (c.cluster_id, c.event_ids)
        for e in ids:
            out[e] = cid
    return out


def ari(a: dict[str, str], b: dict[str, str]) -> float:
    """Adjusted Rand index of two labellings of the same events."""
    from sklearn.metrics import adjusted_rand_score

    keys = sorted(a)
    return round(float(adjusted_rand_score([a[k] for k in keys], [b[k] for k in keys])), 4)


def kept_ids(before: dict[str, str], after: dict[str, str]) -> float:
    """Share of events whose cluster id is the same in ``after`` as in ``before``."""
    common = [k for k in before if k in after]
    return round(sum(before[k] == after[k] for k in common) / max(1, len(common)), 4)


def _ingest(store: Any, rows: list[dict], settings: Any) -> None:
    """Store ``rows``: the first through ingest's own checks, the rest as copies of it with their own
    fields (ingest is not what is measured, and checking 1M events costs minutes)."""
    from dataclasses import replace
    from datetime import datetime

    from flywheel.feedback.validate import to_stored
    from flywheel.schemas import FeedbackEvent

    template = to_stored(FeedbackEvent.model_validate(rows[0]), settings.ingest)
    for i in range(0, len(rows), 20_000):
        batch = [
            replace(
                template,
                event_id=r["event_id"],
                ts=datetime.fromisoformat(r["ts"]),
                query=r["query"],
                user_id=r["user_id"],
                consent=r["consent"],
                confidence=r["confidence"],
                reason=r.get("reason"),
            )
            for r in rows[i : i + 20_000]
        ]
        store.add(batch, "bench")


def _snapshot(path: Path, to: Path) -> None:
    """Copy a SQLite database (WAL included) with the backup API: to run the same triage again."""
    import sqlite3

    src, dst = sqlite3.connect(path), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _runtime(home: Path, embedder: Any | None) -> Any:
    """A Runtime on ``home``; ``embedder`` replaces the configured one (the hashing embedder)."""
    from flywheel.config import load_settings
    from flywheel.runtime import Runtime

    os.environ["FLYWHEEL_HOME"] = str(home)
    settings = load_settings()

    class BenchRuntime(Runtime):
        @property
        def embedder(self) -> Any:
            return embedder if embedder is not None else super().embedder

    return BenchRuntime(settings)


def _timed(rt: Any, *, full: bool = False) -> tuple[float, Any]:
    from flywheel.loop.triage_step import triage_run

    start = time.perf_counter()
    run = triage_run(rt, full=full)
    return time.perf_counter() - start, run


def real_part(tmp: Path, events: int) -> dict[str, Any]:
    """The real model: cold, 1% new in process, 1% new by the CLI, then --full by the CLI."""
    from flywheel.embeddings import CachedEmbedder

    home = tmp / "real"
    rt = _runtime(home, None)
    base = make_events(events, 1, "b")
    _ingest(rt.feedback, base, rt.settings)
    cold_s, cold = _timed(rt)
    new1 = make_events(events // 100, 2, "n1")
    _ingest(rt.feedback, new1, rt.settings)
    embedder = rt.embedder
    before = embedder.embedded if isinstance(embedder, CachedEmbedder) else 0
    spent = [0.0]  # seconds inside the model: what the new queries cost, apart from triage's own work
    if isinstance(embedder, CachedEmbedder):
        model_embed = embedder.inner.embed

        def timed(texts: Sequence[str], progress: Any = None) -> np.ndarray:
            start = time.perf_counter()
            try:
                return model_embed(texts, progress)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(embedder.inner, "embed", timed)  # noqa: B010
    warm_s, warm = _timed(rt)
    embedded = (embedder.embedded if isinstance(embedder, CachedEmbedder) else 0) - before
    seen = {e["query"] for e in base}
    new1_distinct = len({e["query"] for e in new1} - seen)
    rt.close()

    env = {"FLYWHEEL_HOME": str(home)}
    flywheel = str(BIN / "flywheel")
    new2 = make_events(events // 100, 3, "n2")
    run_child([flywheel, "ingest", str(write(tmp / "new2.jsonl", new2)), "--json"], env)
    cli_s, cli_peak, proc = run_child([flywheel, "triage", "--json"], env)
    incremental = json.loads(proc.stdout)["clusters"]
    full_s, _, proc = run_child([flywheel, "triage", "--full", "--json"], env)
    full = json.loads(proc.stdout)["clusters"]
    inc_labels, full_labels = labels_of(incremental), labels_of(full)
    return {
        "real_events": events,
        "real_cold_seconds": round(cold_s, 1),
        "real_cold_clusters": len(cold.clusters),
        "real_new_events": len(new1),
        "real_incremental_in_process_seconds": round(warm_s, 2),
        "real_incremental_model_embed_seconds": round(spent[0], 2),
        "real_incremental_mode": warm.mode,
        "real_incremental_new_distinct_queries": new1_distinct,
        "real_incremental_embedded": embedded,
        "real_incremental_cli_seconds": round(cli_s, 2),
        "real_incremental_cli_peak_mb": cli_peak,
        "real_full_cli_seconds": round(full_s, 1),
        "real_ari_incremental_vs_full": ari(inc_labels, full_labels),
        "real_ids_kept_by_full": kept_ids(inc_labels, full_labels),
        "real_clusters_incremental_full": [len(incremental), len(full)],
    }


def scale_part(tmp: Path, sizes: list[int], at: list[int], new: int, repeats: int = 3) -> dict[str, Any]:
    """The hashing embedder: a backlog grown through ``sizes`` (a full triage timed at each), the same
    ``new`` events triaged incrementally at each backlog in ``at``."""
    embedder = HashingEmbedder()
    rt = _runtime(tmp / "scale", embedder)
    fresh = make_events(new, 99, "x")
    cold: dict[int, float] = {}
    figures: dict[str, Any] = {}
    stored = 0
    for size in sorted(sizes):
        rows = make_events(size - stored, size, f"b{size}")
        _ingest(rt.feedback, rows, rt.settings)
        stored = size
        cold[size], run = _timed(rt, full=True)
        figures[f"cold_{size}_seconds"] = round(cold[size], 2)
        figures[f"cold_{size}_clusters"] = len(run.clusters)
        if size in at:  # the same queries each time, under new ids
            same = [dict(e, event_id=f"{e['event_id']}-at{size}") for e in fresh]
            _ingest(rt.feedback, same, rt.settings)
            stored += new
            state = rt.settings.home / "state.sqlite"
            _snapshot(state, tmp / "before.sqlite")
            times: dict[bool, list[float]] = {True: [], False: []}
            for warm in (False, True):  # the membership read from the store, then kept from the last run
                for attempt in range(repeats):  # the same run again from the same state; the fastest counts
                    if attempt or warm:
                        _snapshot(tmp / "before.sqlite", state)
                    loaded = rt.state.triage_memory()  # what this process kept is taken out (dropped)...
                    if warm and loaded is not None:
                        rt.state.keep_triage_memory(loaded)  # ...or is what its last triage left (a worker)
                    texts = embedder.texts
                    inc_s, inc = _timed(rt)
                    times[warm].append(inc_s)
            figures[f"incremental_{size}_seconds"] = round(min(times[True]), 3)
            figures[f"incremental_{size}_seconds_each"] = [round(t, 3) for t in times[True]]
            figures[f"incremental_{size}_store_read_seconds"] = round(min(times[False]), 3)
            figures[f"incremental_{size}_mode"] = inc.mode
            figures[f"incremental_{size}_embedded"] = embedder.texts - texts
            if size == min(at):  # agreement with a full re-cluster (at 1M one more full run costs minutes)
                full_s, full = _timed(rt, full=True)
                figures[f"full_{size + new}_seconds"] = round(full_s, 2)
                a, b = labels_of(inc.clusters), labels_of(full.clusters)
                figures[f"incremental_{size}_ari_vs_full"] = ari(a, b)
                figures[f"incremental_{size}_ids_kept_by_full"] = kept_ids(a, b)
    rt.close()
    xs = np.array(sorted(cold), dtype=float)
    ys = np.array([cold[int(x)] for x in xs])
    if len(xs) >= 2:
        slope, intercept = np.polyfit(np.log(xs), np.log(ys), 1)
        figures["cold_growth_exponent"] = round(float(slope), 3)
        figures["cold_10M_projected_seconds"] = round(float(np.exp(intercept) * 1e7**slope), 0)
    figures["scale_embedder"] = f"{embedder.name} (deterministic hashing, not the model: see the docstring)"
    return figures


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="Backlog of the real-model part.")
    parser.add_argument("--no-real", action="store_true", help="Skip the real-model part.")
    parser.add_argument("--no-scale", action="store_true", help="Skip the scale part.")
    parser.add_argument(
        "--cold-sizes",
        default="25000,50000,100000,200000,1000000",
        help="Backlogs the scale part triages from scratch (comma-separated).",
    )
    parser.add_argument("--at", default="100000,1000000", help="Backlogs the same new events are triaged on.")
    parser.add_argument("--new", type=int, default=1000, help="New events triaged incrementally in the scale part.")
    args = parse_args(parser, argv)  # --smoke: tiny sizes, hashing embedder only, a few seconds
    sizes = [int(s) for s in args.cold_sizes.split(",") if s]
    at = [int(s) for s in args.at.split(",") if s]
    if args.smoke:
        sizes, at, args.new, args.no_real = [500, 1000, 2000], [1000, 2000], 20, True
    figures: dict[str, Any] = {}
    targets: list[Target] = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_real:
            figures.update(real_part(Path(tmp), args.events))
            targets += [
                Target.of(
                    "1% new at 100k (real model, in process)",
                    figures["real_incremental_in_process_seconds"],
                    "<",
                    5,
                    "s",
                ),
                Target.check("incremental, not a full run", figures["real_incremental_mode"] == "incremental"),
                Target.check(
                    "only the new queries embedded",
                    figures["real_incremental_embedded"] == figures["real_incremental_new_distinct_queries"],
                ),
                Target.of("ARI incremental vs full (real model)", figures["real_ari_incremental_vs_full"], ">=", 0.9),
            ]
        if not args.no_scale:
            figures.update(scale_part(Path(tmp), sizes, at, args.new))
    if not args.no_scale:
        small, large = min(at), max(at)
        ratio = figures[f"incremental_{large}_seconds"] / max(figures[f"incremental_{small}_seconds"], 1e-9)
        figures[f"incremental_ratio_{large}_vs_{small}"] = round(ratio, 2)
        read = figures[f"incremental_{large}_store_read_seconds"]
        figures[f"incremental_store_read_ratio_{large}_vs_{small}"] = round(
            read / max(figures[f"incremental_{small}_store_read_seconds"], 1e-9), 2
        )
        targets += [
            Target.of(f"same new events: time at {large:,} / at {small:,} (warm)", round(ratio, 2), "<=", 1.2),
            Target.of("ARI incremental vs full (scale)", figures[f"incremental_{small}_ari_vs_full"], ">=", 0.9),
            Target.check("scale runs incremental", all(figures[f"incremental_{n}_mode"] == "incremental" for n in at)),
        ]
    figures["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)  # 2 shared cores: others inflate times
    return report("triage", figures, targets)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
