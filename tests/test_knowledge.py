"""The versioned knowledge index on real Chroma and the real local model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.embeddings import CachedEmbedder, EmbeddingCache
from flywheel.knowledge.index import KnowledgeIndex
from flywheel.knowledge.source import chunk_document, Document
from flywheel.sim.world import KNOWLEDGE_DOCS, KNOWLEDGE_UPDATES
from flywheel.state import open_state


def write_docs(directory: Path, docs: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture
def index(local_embedder, flywheel_home: Path):
    settings = load_settings(knowledge={"chunk_chars": 100})
    state = open_state(settings.ensure_home())
    embedder = CachedEmbedder(local_embedder, EmbeddingCache(settings.home / "embeddings.sqlite"))
    yield KnowledgeIndex(settings, state, embedder)
    state.close()


def many_docs(n: int) -> dict[str, str]:
    # Two chunks a document at chunk_chars=100: the title with the first paragraph, then the second.
    return {f"doc{i:03d}.md": f"# Topic {i}\n\nParagraph one about subject {i}, explaining its details at length.\n\n"
                              f"Paragraph two: subject {i} has property {i * 7}, which matters here." for i in range(n)}


def test_incremental_sync_embeds_only_what_changed(index, tmp_path: Path) -> None:
    src = write_docs(tmp_path / "kb", many_docs(40))
    first = index.sync(src)
    assert (first.version, first.activated, first.added, first.embedded) == (1, True, 80, 80)
    again = index.sync(src)
    assert (again.created, again.embedded) == (False, 0)
    (src / "doc003.md").write_text("# Topic 3\n\nParagraph one about subject 3, explaining its details at length."
                                   "\n\nChanged: the property is now 99.")
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


def test_retention_deletes_old_versions_but_never_the_active_one(local_embedder, tmp_path: Path) -> None:
    settings = load_settings(knowledge={"retention": 2, "chunk_chars": 200})
    with open_state(settings.ensure_home()) as state:
        index = KnowledgeIndex(settings, state, local_embedder)
        src = write_docs(tmp_path / "kb", {"a.md": "alpha v0"})
        index.sync(src)
        for n in range(1, 4):
            (src / "a.md").write_text(f"alpha v{n}")
            index.sync(src)
        kept = [v["version"] for v in index.status()["versions"]]
        assert kept == [1, 3, 4]  # the two newest, and version 1 because it is active
        assert index.collection.count() == 3  # records of version 2 are gone from Chroma
        with pytest.raises(Exception, match="does not exist"):
            index.activate(2)


def test_a_corrupted_or_missing_chroma_store_is_a_clear_error_and_every_version_comes_back(
        cli, tmp_path: Path, flywheel_home: Path) -> None:
    src = write_docs(tmp_path / "kb", KNOWLEDGE_DOCS)
    cli("kb", "sync", "--source", str(src), "--json")
    write_docs(src, KNOWLEDGE_UPDATES)
    cli("kb", "sync", "--source", str(src), "--json")
    chroma = flywheel_home / "chroma"
    for f in chroma.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 64)
    out = cli("kb", "status", "--json")  # status reads the state store only
    assert [v["version"] for v in out["versions"]] == [1, 2]
    err = cli("kb", "sync", "--source", str(src), "--json", expect=1)
    assert "Chroma" in err["error"] and "flywheel kb rebuild" in err["error"]
    restored = cli("kb", "rebuild", "--json")
    assert restored["restored"] == restored["records"] == 8 and restored["embedded"] == 0  # from the cache
    assert Path(restored["unreadable_store_kept_at"]).is_dir()  # the broken store is kept aside, not deleted
    shutil.rmtree(chroma)  # a store that vanished entirely comes back the same way
    assert cli("kb", "rebuild", "--json")["restored"] == 8
    settings = load_settings()
    with open_state(settings.home) as state:
        from flywheel.embeddings import build_embedder

        index = KnowledgeIndex(settings, state, build_embedder(settings))
        q = "How much does the Pro plan cost per month?"
        assert "$10 per month" in index.retriever(1).retrieve(q, 1)[0][1]
        assert "$12 per month" in index.retriever(2).retrieve(q, 1)[0][1]


def test_chunks_follow_paragraphs_and_a_bad_source_line_is_named(tmp_path: Path, cli) -> None:
    doc = Document("d", "First paragraph.\n\nSecond one here.\n\n" + "Long. " * 60, "s", "t")
    chunks = chunk_document(doc, 120)
    assert chunks[0].text == "First paragraph.\n\nSecond one here."
    assert all(len(c.text) <= 120 for c in chunks) and len({c.chunk_id for c in chunks}) == len(chunks)
    bad = tmp_path / "kb.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "ok"}) + "\n" + json.dumps({"text": "no id"}) + "\n")
    out = cli("kb", "sync", "--source", str(bad), "--json", expect=2)
    assert f"{bad}:2" in out["error"]
