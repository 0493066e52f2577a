"""The versioned knowledge index on real Chroma and the real local model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.embeddings import CachedEmbedder, EmbeddingCache
from flywheel.knowledge.index import KnowledgeIndex
from flywheel.knowledge.source import Document, chunk_document, chunks_of
from flywheel.sim.world import KNOWLEDGE_DOCS, KNOWLEDGE_UPDATES
from flywheel.state import open_state
from nonempty import every


def write_docs(directory: Path, docs: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def index(local_embedder, flywheel_home: Path):
    settings = load_settings(knowledge={"chunk_chars": 100})
    state = open_state(settings)
    embedder = CachedEmbedder(local_embedder, EmbeddingCache(settings.home / "embeddings.sqlite"))
    yield KnowledgeIndex(settings, state, embedder)
    state.close()


def many_docs(n: int) -> dict[str, str]:
    # Two chunks a document at chunk_chars=100: the title with the first paragraph, then the second.
    return {
        f"doc{i:03d}.md": f"# Topic {i}\n\nParagraph one about subject {i}, explaining its details at length.\n\n"
        f"Paragraph two: subject {i} has property {i * 7}, which matters here."
        for i in range(n)
    }


def test_incremental_sync_embeds_only_what_changed(index, tmp_path: Path) -> None:
    src = write_docs(tmp_path / "kb", many_docs(40))
    first = index.sync(src)
    assert (first.version, first.activated, first.added, first.embedded) == (1, True, 80, 80)
    again = index.sync(src)
    assert (again.created, again.embedded) == (False, 0)
    (src / "doc003.md").write_text(
        "# Topic 3\n\nParagraph one about subject 3, explaining its details at length."
        "\n\nChanged: the property is now 99."
    )
    (src / "doc999.md").write_text("A brand new document.")
    (src / "doc010.md").unlink()
    second = index.sync(src)
    assert (second.version, second.activated) == (2, False)  # later versions wait for promotion
    assert (second.added, second.updated, second.deleted, second.embedded) == (1, 1, 2, 2)
    assert second.unchanged == 80 - 1 - 2
    assert index.embedder.embedded == 82  # counted at the model: 80 + 2, nothing twice
    assert index.active_version() == 1


def test_queries_follow_the_active_version(index, tmp_path: Path) -> None:
    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    index.sync(src)
    write_docs(src, KNOWLEDGE_UPDATES)
    v2 = index.sync(src).version
    q = "How much does the Pro plan cost per month?"
    assert "$10 per month" in index.retriever().retrieve(q, 1)[0][1]
    assert "$12 per month" in index.retriever(v2).retrieve(q, 1)[0][1]  # a candidate is queryable
    assert index.activate(v2) == 1
    assert "$12 per month" in index.retriever().retrieve(q, 1)[0][1]
    index.activate(1)  # and back
    assert "$10 per month" in index.retriever().retrieve(q, 1)[0][1]


def test_a_version_outranked_by_the_collections_other_chunks_still_answers_with_its_own(index, tmp_path: Path) -> None:
    # Version 1: 10 unrelated documents (20 chunks). Version 2 (no parent): 60 one-chunk documents about
    # the query's subject, which rank above version 1's, so the first fetch (12 for k=3) holds none of
    # version 1's chunks: the search keeps widening until it has k of its own.
    index.sync(write_docs(tmp_path / "v1", many_docs(10)))
    near = {f"price{i:02d}.md": f"# Price {i}\n\nThe Pro plan costs ${i} per month, plan {i}." for i in range(60)}
    v2 = index.create_version(
        list(chunks_of(write_docs(tmp_path / "v2", near), 100)), parent=None, source="t", note="near"
    ).version
    q = "How much does the Pro plan cost per month?"
    own = {f"doc{i:03d}.md" for i in range(10)}
    assert all(d.startswith("price") for d, _ in index.retriever(v2).retrieve(q, 3))
    hits = index.retriever(1).retrieve(q, 3)
    assert len(hits) == 3 and {d for d, _ in hits} <= own
    # More than a version holds: every chunk it has, once (the collection runs out, the search ends).
    everything = index.retriever(1).retrieve(q, 500)
    assert len(everything) == 20 and {d for d, _ in everything} == own


def test_retention_deletes_old_versions_but_never_the_active_one(local_embedder, tmp_path: Path) -> None:
    settings = load_settings(knowledge={"retention": 2, "chunk_chars": 200})
    with open_state(settings) as state:
        index = KnowledgeIndex(settings, state, local_embedder)
        src = write_docs(tmp_path / "kb", {"a.md": "alpha v0"})
        index.sync(src)
        for n in range(1, 4):
            (src / "a.md").write_text(f"alpha v{n}")
            index.sync(src)
        kept = [v["version"] for v in index.status()["versions"]]
        assert kept == ["1", "3", "4"]  # the two newest, and version 1 because it is active
        assert index.collection.count() == 3  # records of version 2 are gone from Chroma
        with pytest.raises(Exception, match="does not exist"):
            index.activate(2)


def flywheel_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh process, as an operator would run it after the store broke."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "flywheel"), *args], capture_output=True, text=True, timeout=300
    )


def test_kb_status_reads_as_sentences_and_a_table_with_iso_times(cli, tmp_path: Path, flywheel_home: Path) -> None:
    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    cli("kb", "sync", "--source", str(src), "--json")
    write_docs(src, KNOWLEDGE_UPDATES)
    cli("kb", "sync", "--source", str(src), "--json")
    doc = cli("kb", "status", "--json")
    created = [datetime.fromisoformat(v["created_at"].replace("Z", "+00:00")) for v in doc["versions"]]
    assert every(abs((datetime.now(UTC) - c).total_seconds()) < 600 for c in created)
    human = flywheel_cmd("kb", "status")  # a pipe, not a terminal: still for a person, not JSON
    assert human.returncode == 0, human.stderr
    assert not human.stdout.lstrip().startswith("{")
    active = doc["active_version"]
    assert f"active index version: v{active}, {doc['documents']} documents, {doc['chunks']} chunks" in human.stdout
    rows = [line for line in human.stdout.splitlines() if "Z (" in line]
    assert len(rows) == 2, human.stdout
    for row, v in zip(rows, doc["versions"], strict=True):
        assert f"v{v['version']}" in row and v["status"] in row and ("(active)" in row) == v["active"]
    assert every("just now)" in row or "min ago)" in row for row in rows)


def test_syncing_a_source_with_no_documents_is_refused_and_keeps_the_index(
    cli, tmp_path: Path, flywheel_home: Path
) -> None:
    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    cli("kb", "sync", "--source", str(src), "--json")
    before = cli("kb", "status", "--json")
    wrong = tmp_path / "not-the-kb"
    write_docs(wrong, {"notes.py": "print('not a document')"})
    refused = cli("kb", "sync", "--source", str(wrong), "--json", expect=2)
    assert "no .md/.txt files" in refused["error"] and "the index is unchanged" in refused["error"]
    (tmp_path / "empty.jsonl").write_text("\n")
    assert (
        "has no documents" in cli("kb", "sync", "--source", str(tmp_path / "empty.jsonl"), "--json", expect=2)["error"]
    )
    assert cli("kb", "status", "--json") == before


def test_a_corrupted_or_missing_chroma_store_is_a_clear_error_and_every_version_comes_back(
    cli, tmp_path: Path, flywheel_home: Path
) -> None:
    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    cli("kb", "sync", "--source", str(src), "--json")
    write_docs(src, KNOWLEDGE_UPDATES)
    cli("kb", "sync", "--source", str(src), "--json")
    chroma = flywheel_home / "chroma"
    for f in chroma.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 64)
    status = flywheel_cmd("kb", "status", "--json")  # status reads the state store only
    assert [v["version"] for v in json.loads(status.stdout)["versions"]] == ["1", "2"]
    broken = flywheel_cmd("kb", "sync", "--source", str(src), "--json")
    assert broken.returncode == 1
    error = json.loads(broken.stdout)["error"]
    assert "Chroma" in error and "flywheel kb rebuild" in error
    rebuilt = flywheel_cmd("kb", "rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    restored = json.loads(rebuilt.stdout)
    assert restored["restored"] == restored["records"] == 8 and restored["embedded"] == 0  # from the cache
    assert Path(restored["unreadable_store_kept_at"]).is_dir()  # the broken store is kept aside, not deleted
    shutil.rmtree(chroma)  # a store that vanished entirely comes back the same way
    assert json.loads(flywheel_cmd("kb", "rebuild", "--json").stdout)["restored"] == 8
    settings = load_settings()
    with open_state(settings) as state:
        from flywheel.embeddings import build_embedder
        from flywheel.knowledge.index import forget_chroma_clients

        forget_chroma_clients()  # this test process had the old store open
        index = KnowledgeIndex(settings, state, build_embedder(settings))
        q = "How much does the Pro plan cost per month?"
        assert "$10 per month" in index.retriever(1).retrieve(q, 1)[0][1]
        assert "$12 per month" in index.retriever(2).retrieve(q, 1)[0][1]


def test_chunks_follow_paragraphs_and_a_bad_source_line_is_named(tmp_path: Path, cli) -> None:
    doc = Document("d", "First paragraph.\n\nSecond one here.\n\n" + "Long. " * 60, "s", "t")
    chunks = chunk_document(doc, 120)
    assert chunks[0].text == "First paragraph.\n\nSecond one here."
    assert every(len(c.text) <= 120 for c in chunks) and len({c.chunk_id for c in chunks}) == len(chunks)
    bad = tmp_path / "kb.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "ok"}) + "\n" + json.dumps({"text": "no id"}) + "\n")
    out = cli("kb", "sync", "--source", str(bad), "--json", expect=2)
    assert f"{bad}:2" in out["error"]


def _event(i: int, user: str, correction: str | None = None, signal: str = "thumbs_down", consent: bool = True):
    from datetime import datetime

    from flywheel.schemas import StoredEvent

    return StoredEvent(
        event_id=f"e{i}",
        ts=datetime(2026, 11, 1, tzinfo=UTC),
        signal=signal,
        polarity=-1,
        strength=1.0,
        query="How much does the Pro plan cost?",
        output="The Pro plan costs $10 per month.",
        user_id=user,
        consent=consent,
        reason="outdated",
        correction=correction,
        context_ids=["pricing.md"],
    )


def test_a_lone_users_correction_never_enters_the_index(index, tmp_path: Path) -> None:
    from flywheel.improvers import rag
    from flywheel.knowledge.source import load_documents

    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    index.sync(src)
    active = index.chunks(1)

    def proposal(events):
        return rag.propose(
            cluster_ids=["c1"],
            events=events,
            active_chunks=active,
            source_documents=load_documents(src),
            retrieve=lambda q, k: ["pricing.md"],
            embed=index.embedder.embed,
            chunk_chars=index.settings.knowledge.chunk_chars,
        )

    lone = proposal([_event(1, "u1", "The Pro plan costs $99 per month."), _event(2, "u2")])
    assert lone.empty and len(lone.skipped_corrections) == 1
    assert not any("$99" in c.text for c in lone.chunks)
    hidden = proposal([_event(i, f"u{i}", "The Pro plan costs $99 per month.", consent=False) for i in range(5)])
    assert hidden.empty  # corrections without consent are not even considered
    confirmed = proposal([_event(i, f"u{i}", "The Pro plan costs $12 per month!") for i in range(3)])
    assert confirmed.changed_documents == ["corrections/c1.md"]
    (corr,) = [c for c in confirmed.chunks if c.doc_id == "corrections/c1.md"]
    assert "$12 per month" in corr.text
    assert confirmed.provenance[corr.chunk_id]["evidence"][0]["users"] == 3
    expert = proposal([_event(1, "rev", "The Pro plan costs $12 per month.", signal="expert_review")])
    assert expert.changed_documents == ["corrections/c1.md"]
    # The source of truth changing is newer knowledge too, and everything else stays as it was.
    write_docs(src, KNOWLEDGE_UPDATES)
    updated = proposal([_event(1, "u1")])
    assert updated.changed_documents == ["pricing.md"]
    assert {c.chunk_id: c.text for c in updated.chunks if c.doc_id != "pricing.md"} == {
        c.chunk_id: c.text for c in active if c.doc_id != "pricing.md"
    }


def test_a_candidate_that_breaks_unrelated_retrieval_is_rejected(index, tmp_path: Path) -> None:
    from flywheel.evals.retrieval import RetrievalCheck, validate

    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    index.sync(src)
    broken_docs = {**KNOWLEDGE_UPDATES, "sharing.md": "# Notes\n\nNothing to see here."}
    broken = write_docs(tmp_path / "broken", {**KNOWLEDGE_DOCS, **broken_docs})
    v2 = index.create_version(list(chunks_of(broken, 800)), parent=1, source="test", note="bad").version
    checks = [
        RetrievalCheck("How do I share a folder with my team?", frozenset({"sharing.md"}), "golden"),
        RetrievalCheck("How can I share files with a colleague?", frozenset({"sharing.md"}), "golden"),
        RetrievalCheck("How much does the Pro plan cost?", frozenset({"pricing.md"}), "golden"),
    ]

    def search(version):
        r = index.retriever(version)
        return lambda q, k: [d for d, _ in r.retrieve(q, 1)]

    verdict = validate(search(1), search(v2), checks, {"pricing.md", "uploads.md", "sharing.md"} - {"sharing.md"}, 1)
    assert not verdict.passed and "unaffected" in verdict.reason
    assert verdict.active["unaffected"].recall_at_k == 1.0 and verdict.candidate["unaffected"].recall_at_k < 1.0
    fine = index.create_version(
        list(chunks_of(write_docs(tmp_path / "fine", {**KNOWLEDGE_DOCS, **KNOWLEDGE_UPDATES}), 800)),
        parent=1,
        source="test",
        note="good",
    ).version
    assert validate(search(1), search(fine), checks, {"pricing.md", "uploads.md"}, 1).passed
