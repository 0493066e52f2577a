"""Versioned knowledge index: Chroma holds the vectors, the state store says what each version is.

Design (an equivalent of "a collection per version" that keeps every retained version queryable
without copying vectors):

- **Records.** One Chroma record per distinct chunk content (id = content hash of document id and
  text), embedded once with the shared local model. Its text, document and source are also kept in
  the state store, so the index can be rebuilt from there (the embedding cache makes that free).
- **Versions.** A version is the set of records that made up the source when it was synced (or when
  an improver built it), kept in ``kb_members``. A new version costs only its new records: a refresh
  that changes 1% of the chunks embeds and adds 1% of them.
- **Queries.** The active (or any retained) version is queried by over-fetching nearest neighbours
  from the whole collection and keeping those that belong to the version.
- **Pointer.** ``active_index`` in the state store; the first version becomes active, later ones
  only through promotion, and rollback moves it back.
- **Retention.** ``knowledge.retention`` versions are kept (always the active one); records no kept
  version uses are deleted from Chroma.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from flywheel.config import Settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.knowledge.source import TEXT_SUFFIXES, Chunk, chunks_of, load_documents
from flywheel.state import KbRecord, StateStore
from flywheel.wording import iso_utc

ACTIVE = "active_index"
CANARY = "canary_index"  # the index version a canary serves, when one runs (the watch issue moves it)
PREVIOUS = "previous_index"
_BATCH = 2000


class IndexUnavailable(FlywheelError):
    """The Chroma store is missing or unreadable; the state store still has every version."""


@dataclass
class SyncReport:
    version: int
    added: int
    updated: int
    deleted: int
    unchanged: int
    embedded: int
    activated: bool = False
    created: bool = True

    def public(self) -> dict[str, Any]:
        return {
            "version": str(self.version),
            "added": self.added,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "embedded": self.embedded,
            "activated": self.activated,
            "created": self.created,
        }


_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.RLock()


def chroma_client(settings: Settings) -> Any:
    """One client per store for the whole process. Chroma stops a store's shared system when the last
    client of it is garbage-collected, which raced with clients opened by other threads (retrieval
    during evaluation) and left them with a stopped system; holding one client avoids that."""
    key = settings.knowledge.chroma_url or str((settings.home / "chroma").resolve())
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = _open_client(settings)
        return _CLIENTS[key]


def _open_client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    url = settings.knowledge.chroma_url
    try:
        if url:
            from urllib.parse import urlparse

            parsed = urlparse(url)
            return chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or 8000,
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
        path = settings.home / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:  # chromadb raises many types for a broken store
        forget_chroma_clients()
        raise IndexUnavailable(
            f"the Chroma store at {url or settings.home / 'chroma'} cannot be opened ({type(exc).__name__}: {exc}); "
            "every index version is still recorded in the state store: `flywheel kb rebuild` restores them"
        ) from exc


def forget_chroma_clients() -> None:
    """Chroma caches one client per path in the process; drop them so a repaired store is reopened."""
    from chromadb.api.client import SharedSystemClient

    with _CLIENTS_LOCK:
        _CLIENTS.clear()
    SharedSystemClient.clear_system_cache()


def open_index(settings: Settings, state: StateStore) -> KnowledgeIndex:
    """The index with the configured (shared, cached) embedder."""
    from flywheel.embeddings import build_embedder

    return KnowledgeIndex(settings, state, build_embedder(settings))


class KnowledgeIndex:
    """Sync, query and move the versioned index. Give it the embedder shared with triage."""

    def __init__(self, settings: Settings, state: StateStore, embedder: Any) -> None:
        self.settings = settings
        self.state = state
        self.embedder = embedder
        self._collection: Any = None

    # Chroma --------------------------------------------------------------------------------------
    @property
    def collection(self) -> Any:
        if self._collection is None:
            client = chroma_client(self.settings)
            try:
                self._collection = client.get_or_create_collection(
                    self.settings.knowledge.collection,
                    embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                )
                self._collection.count()
            except Exception as exc:
                raise IndexUnavailable(
                    f"the Chroma collection {self.settings.knowledge.collection!r} is unreadable "
                    f"({type(exc).__name__}: {exc}); `flywheel kb rebuild` restores every retained version "
                    "from the state store"
                ) from exc
        return self._collection

    def _present(self, record_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(record_ids), _BATCH):
            found.update(self.collection.get(ids=list(record_ids[i : i + _BATCH]), include=[])["ids"])
        return found

    def _add_records(self, chunks: Sequence[Chunk]) -> int:
        """Embed and add records Chroma lacks; returns how many texts were embedded."""
        if not chunks:
            return 0
        embedded = 0
        for i in range(0, len(chunks), _BATCH):
            part = chunks[i : i + _BATCH]
            before = getattr(self.embedder, "embedded", None)
            vectors = self.embedder.embed([c.text for c in part])
            after = getattr(self.embedder, "embedded", None)
            embedded += (after - before) if before is not None and after is not None else len(part)
            self.collection.upsert(
                ids=[c.content_hash for c in part],
                embeddings=vectors,
                documents=[c.text for c in part],
                metadatas=[
                    {"doc_id": c.doc_id, "chunk_id": c.chunk_id, "source": c.source, "updated_at": c.updated_at}
                    for c in part
                ],
            )
        return embedded

    # versions -------------------------------------------------------------------------------------
    def active_version(self) -> int | None:
        value = self.state.pointer(ACTIVE)
        return int(value) if value is not None else None

    def versions(self) -> list[dict[str, Any]]:
        active = self.active_version()
        return [asdict(v) | {"active": v.version == active} for v in self.state.kb_versions()]

    def members(self, version: int) -> dict[str, str]:
        """chunk_id -> record_id of a version."""
        return {r.chunk_id: r.record_id for r in self.state.kb_members(version)}

    def chunks(self, version: int) -> list[Chunk]:
        return [_chunk(r) for r in self.state.kb_members(version)]

    def _latest(self) -> int | None:
        return self.state.kb_latest_version()

    def create_version(
        self,
        chunks: Sequence[Chunk],
        *,
        parent: int | None,
        source: str,
        note: str,
        provenance: dict[str, Any] | None = None,
    ) -> SyncReport:
        """A new version made of ``chunks``; records Chroma already has are reused, not re-embedded."""
        before = self.members(parent) if parent is not None else {}
        after = {c.chunk_id: c.content_hash for c in chunks}
        if len(after) != len(chunks):
            raise UsageError("two chunks share a chunk id; document ids must be unique")
        added = sum(1 for cid in after if cid not in before)
        updated = sum(1 for cid, rid in after.items() if cid in before and before[cid] != rid)
        deleted = sum(1 for cid in before if cid not in after)
        unchanged = len(after) - added - updated
        if parent is not None and not (added or updated or deleted):
            return SyncReport(parent, 0, 0, 0, unchanged, 0, created=False)
        known = self._present(list(dict.fromkeys(after.values())))
        fresh = list({c.content_hash: c for c in chunks if c.content_hash not in known}.values())
        embedded = self._add_records(fresh)
        version = (self._latest() or 0) + 1
        records = [KbRecord(c.content_hash, c.chunk_id, c.doc_id, c.text, c.source, c.updated_at) for c in chunks]
        self.state.kb_add_version(
            version,
            records,
            parent=parent,
            source=source,
            documents=len({c.doc_id for c in chunks}),
            note=note,
            provenance=provenance,
        )
        return SyncReport(version, added, updated, deleted, unchanged, embedded)

    def sync(self, source: Path) -> SyncReport:
        """A version from the source of truth; the very first one becomes active."""
        if not load_documents(source):  # validated before anything is written
            # Most often a wrong path: a version of nothing would leave retrieval empty for every answer.
            what = f"no {'/'.join(sorted(TEXT_SUFFIXES))} files" if source.is_dir() else "no documents"
            raise UsageError(
                f"knowledge source {source} has {what}: nothing synced, the index is unchanged "
                '(a directory of .md/.txt files, or a JSONL file of {"id", "text"} lines)'
            )
        chunks = list(chunks_of(source, self.settings.knowledge.chunk_chars))
        active = self.active_version()
        report = self.create_version(
            chunks, parent=active if active is not None else self._latest(), source=str(source), note="kb sync"
        )
        if active is None and report.created:
            self.activate(report.version)
            report.activated = True
        self.apply_retention()
        return report

    def activate(self, version: int) -> int | None:
        """Point ``active_index`` at ``version``; returns the previous one."""
        if self.state.kb_version(version) is None:
            raise UsageError(f"index version {version} does not exist (or was deleted by retention)")
        previous = self.active_version()
        if previous is not None and previous != version:
            self.state.set_pointer(PREVIOUS, str(previous))
        self.state.kb_activate(version, previous)
        self.state.set_pointer(ACTIVE, str(version))
        return previous

    def apply_retention(self) -> list[int]:
        """Keep the newest ``retention`` versions and the active one; drop the rest and their orphans."""
        keep_n = self.settings.knowledge.retention
        rows = self.state.kb_live_versions()
        # rollback needs the previous; a running canary its own
        protected = {
            self.active_version(),
            int(self.state.pointer(PREVIOUS) or 0),
            int(self.state.pointer(CANARY) or 0),
        }
        doomed = [v for v in rows[keep_n:] if v not in protected]
        if not doomed:
            return []
        orphans = self.state.kb_delete_versions(doomed)
        for i in range(0, len(orphans), _BATCH):
            self.collection.delete(ids=orphans[i : i + _BATCH])
        self.state.kb_forget_records(orphans)
        return doomed

    def rebuild(self) -> dict[str, int | str | None]:
        """Restore Chroma from the state store (after it was lost or corrupted): every retained version."""
        forget_chroma_clients()
        self._collection = None
        moved = None
        try:
            self.collection.count()
        except IndexUnavailable:
            if self.settings.knowledge.chroma_url:
                raise
            # Keep the unreadable store aside (nothing is deleted), then start a fresh one.
            store = self.settings.home / "chroma"
            moved = store.with_name(f"chroma.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
            store.rename(moved)
            forget_chroma_clients()
            self._collection = None
        chunks = [_chunk(r) for r in self.state.kb_records()]
        present = self._present([c.content_hash for c in chunks])
        missing = [c for c in chunks if c.content_hash not in present]
        embedded = self._add_records(missing)
        return {
            "records": len(chunks),
            "restored": len(missing),
            "embedded": embedded,
            "unreadable_store_kept_at": str(moved) if moved else None,
        }

    # queries ----------------------------------------------------------------------------------------
    def retriever(self, version: int | None = None) -> IndexRetriever | None:
        v = self.active_version() if version is None else version
        if v is None:
            return None
        return IndexRetriever(self, v, set(self.members(v).values()))

    def status(self) -> dict[str, Any]:
        active = self.active_version()
        docs = chunks = 0
        if active is not None:
            kept = self.state.kb_version(active)
            docs, chunks = (kept.documents, kept.chunks) if kept else (0, 0)
        # Versions are strings in every JSON document Flywheel prints (SPEC), as `status` gives them.
        # Times as ISO 8601 in UTC, as every other document gives them (`status`, `cycle`).
        versions = [
            v
            | {
                "version": str(v["version"]),
                "parent": None if v["parent"] is None else str(v["parent"]),
                "created_at": iso_utc(datetime.fromtimestamp(v["created_at"], UTC)),
            }
            for v in self.versions()
            if v["status"] != "deleted"
        ]
        return {
            "active_version": None if active is None else str(active),
            "versions": versions,
            "documents": docs,
            "chunks": chunks,
            "embedding_model": getattr(self.embedder, "name", "?"),
            "collection": self.settings.knowledge.collection,
            "store": self.settings.knowledge.chroma_url or str(self.settings.home / "chroma"),
        }


def _chunk(r: KbRecord) -> Chunk:
    return Chunk(r.chunk_id, r.doc_id, r.text, r.source or "", r.updated_at or "")


class Hit(NamedTuple):
    """One chunk found for a query. ``chunk_id`` (``<doc_id>#<n>``) is what a product sends back as
    ``context_ids``; the RAG refresh reads a document id out of either."""

    doc_id: str
    chunk_id: str
    text: str
    source: str | None
    distance: float  # cosine distance: 0 is the same direction


class IndexRetriever:
    """Nearest chunks of one version: over-fetch from the shared collection, keep the version's own.

    A version's members never change, so its answers are remembered: an evaluation of ten prompt
    variants on one index version asks Chroma each golden query once, not ten times."""

    MAX_REMEMBERED = 20_000

    def __init__(self, index: KnowledgeIndex, version: int, members: set[str]) -> None:
        self.index = index
        self.version = str(version)
        self.members = members
        self._answers: dict[tuple[str, int], list[Hit]] = {}
        self._lock = threading.Lock()

    def retrieve(self, query: str, k: int) -> list[tuple[str, str]]:
        return [(hit.doc_id, hit.text) for hit in self.search(query, k)]

    def search(self, query: str, k: int) -> list[Hit]:
        """The ``k`` nearest chunks of this version, nearest first."""
        with self._lock:
            known = self._answers.get((query, k))
        if known is not None:
            return list(known)
        hits = self._search(query, k)
        with self._lock:
            if len(self._answers) >= self.MAX_REMEMBERED:
                self._answers.clear()
            self._answers[(query, k)] = hits
        return list(hits)

    def _search(self, query: str, k: int) -> list[Hit]:
        if not self.members:
            return []
        vector = self.index.embedder.embed([query])
        # No count() first: it cost a third of a search, and Chroma answers a larger n_results with
        # every chunk it has; fewer ids than asked for means the collection is exhausted.
        fetch = max(4 * k, k + 8)
        while True:
            res = self.index.collection.query(
                query_embeddings=vector, n_results=fetch, include=["documents", "metadatas", "distances"]
            )
            hits = [
                Hit(
                    doc_id=m["doc_id"],
                    chunk_id=m.get("chunk_id") or m["doc_id"],
                    text=d,
                    source=m.get("source") or None,
                    distance=float(dist),
                )
                for rid, d, m, dist in zip(
                    res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True
                )
                if rid in self.members
            ]
            if len(hits) >= k or len(res["ids"][0]) < fetch:
                return hits[:k]
            fetch *= 4
