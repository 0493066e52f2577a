"""Incremental triage (issue 31): kept clusters, new events embedded once and assigned, agreement
with a full re-cluster, stable ids, `triage --full`, and the state store's migration."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from conftest import write_jsonl
from flywheel.config import IngestSettings, load_settings
from flywheel.embeddings import CachedEmbedder, EmbeddingCache, LocalEmbedder
from flywheel.feedback.validate import to_stored
from flywheel.loop.embedding import texts_to_embed
from flywheel.loop.triage_step import triage_run
from flywheel.runtime import Runtime
from flywheel.schemas import FeedbackEvent
from flywheel.sim.rules import INTENTS
from flywheel.sim.world import OPENERS, REASON_FOR_CATEGORY, fill_slots
from flywheel.state import open_state
from flywheel.state.triage import ClusterRecord, LabelRefs, TriageChange
from flywheel.triage import CATEGORY_DESCRIPTIONS, priority
from test_state_migrations import _old_state


def rows(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Negative events of the simulator's failure modes, each with its reason, a few users each."""
    rng = random.Random(seed)
    intents = [i for i in INTENTS if i.category != "general"]
    out = []
    for i in range(n):
        intent = rng.choice(intents)
        out.append(
            {
                "event_id": f"{prefix}-{i:04d}",
                "ts": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                "signal": "thumbs_down",
                "query": rng.choice(OPENERS) + rng.choice(intent.templates).format(**fill_slots(intent, rng)),
                "output": "(answer)",
                "user_id": f"u{rng.randint(1, 60)}",
                "consent": rng.random() < 0.8,
                "confidence": round(rng.random(), 2),
                "reason": REASON_FOR_CATEGORY[intent.category],
            }
        )
    return out


class Counting:
    """The real model, counting the texts it is asked to embed (what the cache let through)."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.local = True
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        self.texts += list(texts)
        return self.inner.embed(texts, progress)


@pytest.fixture
def counted(local_embedder: LocalEmbedder, flywheel_home: Path) -> Any:
    yield from _counted(local_embedder, flywheel_home)


def _counted(local_embedder: LocalEmbedder, flywheel_home: Path) -> Any:
    flywheel_home.mkdir(parents=True, exist_ok=True)
    counting = Counting(local_embedder)
    embedder = CachedEmbedder(counting, EmbeddingCache(flywheel_home / "vectors.sqlite"))  # type: ignore[arg-type]

    class Counted(Runtime):
        @property
        def embedder(self) -> Any:
            return embedder

    rt = Counted(load_settings())
    yield rt, counting
    rt.close()
    embedder.cache.close()


def add(rt: Runtime, events: list[dict[str, Any]]) -> None:
    rt.feedback.add([to_stored(FeedbackEvent.model_validate(r), IngestSettings()) for r in events], "test")


def labels(clusters: Sequence[Any]) -> dict[str, str]:
    return {e: c.cluster_id for c in clusters for e in c.event_ids}


def test_new_events_are_embedded_once_assigned_and_agree_with_a_full_recluster(counted: Any) -> None:
    rt, counting = counted
    base, new = rows(150, 1, "b"), rows(25, 2, "n")
    add(rt, base)
    first = triage_run(rt)
    assert first.mode == "full"

    add(rt, new)
    new_queries = {r["query"] for r in new} - {r["query"] for r in base}
    ahead = set(texts_to_embed(rt.settings, rt.feedback, rt.state)) - set(CATEGORY_DESCRIPTIONS.values())
    assert ahead == {r["query"] for r in new}  # embedding ahead of the cycle looks at the new events only
    counting.texts.clear()
    grown = triage_run(rt)
    assert grown.mode == "incremental" and grown.new_events == 25
    assert sorted(counting.texts) == sorted(new_queries)
    # what this process kept for its next run is what the store now holds
    kept, stored = rt.state.triage_memory(), rt.state.triage_memory(reuse=False)
    assert kept is not None and stored is not None and kept is not stored
    assert (kept.generation, kept.watermark, kept.members) == (stored.generation, stored.watermark, stored.members)
    assert kept.labels.categories == stored.labels.categories
    assert np.allclose(kept.labels.vectors, stored.labels.vectors) and len(stored.labels) > 0
    assert {c: (r.size, r.users, r.examples) for c, r in kept.clusters.items()} == {
        c: (r.size, r.users, r.examples) for c, r in stored.clusters.items()
    }
    rt.state.keep_triage_memory(kept)
    # every event once; the kept clusters keep their ids and their events
    after = labels(grown.clusters)
    assert sorted(after) == sorted(r["event_id"] for r in base + new)
    assert all(after[e] == cid for e, cid in labels(first.clusters).items())
    # the sums kept equal the SPEC's rules computed from the events themselves
    by_id = {e.event_id: e for e in rt.feedback.get(after)}
    for c in grown.clusters:
        members = [by_id[e] for e in c.event_ids]
        assert c.size == len(members) and c.users == len({e.user_key() for e in members})
        assert c.priority == pytest.approx(priority(members, rt.settings.triage), abs=1e-3)

    counting.texts.clear()
    full = triage_run(rt, full=True)
    assert full.mode == "full" and counting.texts == []  # nothing embedded again
    keys = sorted(after)
    rebuilt = labels(full.clusters)
    assert adjusted_rand_score([after[k] for k in keys], [rebuilt[k] for k in keys]) >= 0.9
    assert sum(after[k] == rebuilt[k] for k in keys) >= 0.9 * len(keys)  # ids stable across the re-cluster

    again = triage_run(rt)
    assert (again.mode, again.why) == ("incremental", "nothing new")
    assert [c.model_dump() for c in again.clusters] == [c.model_dump() for c in full.clusters]


def test_on_each_dialect_a_run_reads_only_what_was_stored_since(
    any_store_url: str, local_embedder: LocalEmbedder, flywheel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite by its rowid mark; Postgres re-reads a window before its mark and leaves out what it kept."""
    monkeypatch.setenv("FLYWHEEL_STORE_URL", any_store_url)
    for rt, _ in _counted(local_embedder, flywheel_home):
        add(rt, rows(40, 6, "p"))
        assert triage_run(rt).mode == "full"
        add(rt, rows(6, 7, "q"))
        run = triage_run(rt)
        assert (run.mode, run.new_events) == ("incremental", 6)
        assert sorted(labels(run.clusters)) == sorted(
            [f"p-{i:04d}" for i in range(40)] + [f"q-{i:04d}" for i in range(6)]
        )
        assert triage_run(rt).why == "nothing new"


def test_changed_triage_settings_rebuild_instead_of_extending(counted: Any) -> None:
    rt, _ = counted
    add(rt, rows(60, 3, "s"))
    triage_run(rt)
    rt.settings = rt.settings.model_copy(update={"triage": rt.settings.triage.model_copy(update={"per_user_cap": 2})})
    add(rt, rows(5, 4, "t"))
    run = triage_run(rt)
    assert run.mode == "full" and "settings changed" in run.why
    assert triage_run(rt).why == "nothing new"


def test_triage_full_rebuilds_with_the_same_clusters(cli, tmp_path: Path, flywheel_home: Path) -> None:
    cli("ingest", str(write_jsonl(tmp_path / "a.jsonl", rows(80, 5, "a"))), "--json")
    first = cli("triage", "--json")["clusters"]
    with open_state(flywheel_home) as state:
        memory = state.triage_memory()
        assert memory is not None
        generation, full_at = memory.generation, memory.full_at
    assert cli("triage", "--json")["clusters"] == first  # nothing new: the kept clusters, nothing saved
    rebuilt = cli("triage", "--full", "--json")["clusters"]
    assert [(c["cluster_id"], c["size"], c["event_ids"]) for c in rebuilt] == [
        (c["cluster_id"], c["size"], c["event_ids"]) for c in first
    ]
    assert set(rebuilt[0]) >= {"cluster_id", "category", "route", "size", "users", "priority", "event_ids", "summary"}
    with open_state(flywheel_home) as state:
        memory = state.triage_memory()
        assert memory is not None and memory.generation == generation + 1 and memory.full_at > full_at


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, flywheel_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{flywheel_home / 'state.sqlite'}"
    server = request.getfixturevalue("postgres")
    return str(server.url(server.create_database()))


def test_an_existing_state_store_is_upgraded_and_keeps_triage_between_opens(flywheel_home: Path) -> None:
    _old_state(flywheel_home / "state.sqlite", 4)  # a state.sqlite from before this migration
    with open_state(flywheel_home) as state:
        assert state.triage_memory() is None and state.last_finished_cycle() == "cyc-old"
        state.save_triage_full(fingerprint="f", watermark=3.0, clusters=[], members={}, users={}, labels=LabelRefs())
    with open_state(flywheel_home) as state:
        memory = state.triage_memory()
        assert memory is not None and (memory.watermark, memory.fingerprint) == (3.0, "f")


def test_triage_memory_round_trips_and_refuses_a_stale_save(state_url: str) -> None:
    vec = np.array([0.6, 0.8], dtype=np.float64)
    record = ClusterRecord("tone-1", "tone", size=2, weight=2.0, vsum=vec, users=1, capped=2, reasons={"tone": 2})
    record.examples, record.example_vecs = ["q"], np.array([[0.6, 0.8]], dtype=np.float32)
    refs = LabelRefs(["tone"], np.array([2.0], dtype=np.float32), np.array([[0.6, 0.8]], dtype=np.float32))
    with open_state(Path("unused"), state_url) as state:
        state.save_triage_full(
            fingerprint="f", watermark=10.0, clusters=[record], members={"tone-1": ["e1", "e2"]},
            users={("tone-1", "u"): 2}, labels=refs,
        )  # fmt: skip
        memory = state.triage_memory(reuse=False)  # as read back from the database
        assert memory is not None
        kept = memory.clusters["tone-1"]
        assert kept.vsum is not None and kept.vsum.tolist() == vec.tolist() and kept.reasons == {"tone": 2}
        assert kept.example_vecs is not None and kept.example_vecs.shape == (1, 2)
        assert memory.members == {"tone-1": ["e1", "e2"]} and memory.labels.categories == ["tone"]
        assert state.triage_user_counts([("tone-1", "u"), ("tone-1", "v")]) == {("tone-1", "u"): 2}
        change = TriageChange([record], {"tone-1": ["e3"]}, {("tone-1", "u"): 3}, LabelRefs(), 11.0)
        assert state.save_triage_change(change, expected_generation=memory.generation)
        assert not state.save_triage_change(change, expected_generation=memory.generation)  # someone saved first
        again = state.triage_memory(reuse=False)
        assert again is not None and again.members["tone-1"] == ["e1", "e2", "e3"] and again.watermark == 11.0
        assert state.triage_user_counts([("tone-1", "u")]) == {("tone-1", "u"): 3}


def test_a_process_reuses_its_kept_memory_only_while_no_one_else_saved(state_url: str) -> None:
    """A warm process keeps what its last save wrote; once another process saves, it reads the store."""
    record = ClusterRecord("tone-1", "tone", size=2, weight=2.0, vsum=np.array([0.6, 0.8]), users=1, capped=2)
    with open_state(Path("unused"), state_url) as state:
        state.save_triage_full(
            fingerprint="f", watermark=10.0, clusters=[record], members={"tone-1": ["e1", "e2"]},
            users={("tone-1", "u"): 2}, labels=LabelRefs(),
        )  # fmt: skip
        memory = state.triage_memory()
        assert memory is not None and memory.members == {"tone-1": ["e1", "e2"]}
        state.keep_triage_memory(memory)
        # another writer (no kept memory of its own: as a second process would) grows the cluster
        grown = ClusterRecord("tone-1", "tone", size=3, weight=3.0, vsum=np.array([0.9, 1.2]), users=1, capped=3)
        change = TriageChange([grown], {"tone-1": ["e3"]}, {("tone-1", "u"): 3}, LabelRefs(), 12.0)
        assert state.save_triage_change(change, expected_generation=memory.generation)
        seen = state.triage_memory()
        assert seen is not None and seen is not memory
        assert seen.members == {"tone-1": ["e1", "e2", "e3"]} and seen.clusters["tone-1"].size == 3
        assert seen.watermark == 12.0
        # handed out once: the holder changes it in place, so a second read does not get the same object
        assert state.triage_memory() is not seen
