"""The knowledge index's versions in the state store (``kb_versions``, ``kb_records``,
``kb_members``): which records make up each version, so versions can branch, be rolled back and be
rebuilt. ``flywheel/knowledge/index.py`` keeps Chroma in step and calls these; it writes no SQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from flywheel.state.base import StateConnection
from flywheel.state.tables import kb_members, kb_records, kb_versions
from flywheel.state.upsert import insert_ignore

_CHUNK = 500  # ids per IN (...) or executemany batch


@dataclass(frozen=True, slots=True)
class KbRecord:
    """One chunk's content as stored (``record_id`` is its content hash)."""

    record_id: str
    chunk_id: str
    doc_id: str
    text: str
    source: str | None
    updated_at: str | None


@dataclass(frozen=True, slots=True)
class KbVersion:
    """One index version: its parent, where it came from, its size and status."""

    version: int
    created_at: float
    parent: int | None
    source: str | None
    documents: int
    chunks: int
    status: str  # candidate, active, retained, deleted
    note: str | None


class KnowledgeVersions(StateConnection):
    """Queries on the knowledge index's tables."""

    def kb_versions(self) -> list[KbVersion]:
        v = kb_versions.c
        query = select(v.version, v.created_at, v.parent, v.source, v.documents, v.chunks, v.status, v.note)
        with self._read() as conn:
            return [KbVersion(*r) for r in conn.execute(query.order_by(v.version))]

    def kb_version(self, version: int) -> KbVersion | None:
        """A version that exists and was not deleted by retention."""
        v = kb_versions.c
        query = select(v.version, v.created_at, v.parent, v.source, v.documents, v.chunks, v.status, v.note)
        with self._read() as conn:
            row = conn.execute(query.where(v.version == version, v.status != "deleted")).first()
        return KbVersion(*row) if row else None

    def kb_latest_version(self) -> int | None:
        """The highest version not deleted."""
        with self._read() as conn:
            return conn.execute(
                select(func.max(kb_versions.c.version)).where(kb_versions.c.status != "deleted")
            ).scalar()

    def kb_live_versions(self) -> list[int]:
        """Versions not deleted, newest first."""
        v = kb_versions.c
        with self._read() as conn:
            return list(
                conn.execute(select(v.version).where(v.status != "deleted").order_by(v.version.desc())).scalars()
            )

    def kb_members(self, version: int) -> list[KbRecord]:
        """The records of a version, by chunk id."""
        r, m = kb_records.c, kb_members.c
        query = (
            select(r.record_id, r.chunk_id, r.doc_id, r.text, r.source, r.updated_at)
            .join_from(kb_members, kb_records, m.record_id == r.record_id)
            .where(m.version == version)
            .order_by(r.chunk_id)
        )
        with self._read() as conn:
            return [KbRecord(*row) for row in conn.execute(query)]

    def kb_records(self) -> list[KbRecord]:
        """Every record a kept version uses (what a rebuild restores)."""
        r = kb_records.c
        with self._read() as conn:
            return [
                KbRecord(*row)
                for row in conn.execute(
                    select(r.record_id, r.chunk_id, r.doc_id, r.text, r.source, r.updated_at).order_by(r.record_id)
                )
            ]

    def kb_add_version(
        self,
        version: int,
        records: Sequence[KbRecord],
        *,
        parent: int | None,
        source: str,
        documents: int,
        note: str,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Record a new ``candidate`` version made of ``records`` (records already stored are kept)."""
        rows = [
            {
                "record_id": k.record_id,
                "chunk_id": k.chunk_id,
                "doc_id": k.doc_id,
                "text": k.text,
                "source": k.source,
                "updated_at": k.updated_at,
            }
            for k in records
        ]
        ids = list(dict.fromkeys(k.record_id for k in records))
        with self._write() as conn:
            for i in range(0, len(rows), _CHUNK):
                conn.execute(insert_ignore(conn, kb_records, ["record_id"]), rows[i : i + _CHUNK])
            conn.execute(
                kb_versions.insert().values(
                    version=version,
                    created_at=time.time(),
                    parent=parent,
                    source=source,
                    documents=documents,
                    chunks=len(records),
                    status="candidate",
                    note=note,
                    provenance=json.dumps(provenance or {}),
                )
            )
            for i in range(0, len(ids), _CHUNK):
                conn.execute(kb_members.insert(), [{"version": version, "record_id": r} for r in ids[i : i + _CHUNK]])

    def kb_activate(self, version: int, previous: int | None) -> None:
        """Mark ``version`` active and ``previous`` (if any) retained, in one transaction."""
        v = kb_versions.c
        with self._write() as conn:
            if previous is not None:
                conn.execute(update(kb_versions).where(v.version == previous).values(status="retained"))
            conn.execute(update(kb_versions).where(v.version == version).values(status="active"))

    def kb_delete_versions(self, versions: Sequence[int]) -> list[str]:
        """Mark versions deleted and drop their memberships; return the records no version uses now
        (the caller removes them from Chroma, then :meth:`kb_forget_records`)."""
        v, m, r = kb_versions.c, kb_members.c, kb_records.c
        with self._write() as conn:
            for version in versions:
                conn.execute(kb_members.delete().where(m.version == version))
                conn.execute(update(kb_versions).where(v.version == version).values(status="deleted"))
            used = select(m.record_id)
            return list(conn.execute(select(r.record_id).where(r.record_id.not_in(used))).scalars())

    def kb_forget_records(self, record_ids: Sequence[str]) -> None:
        ids = list(record_ids)
        with self._write() as conn:
            for i in range(0, len(ids), _CHUNK):
                conn.execute(kb_records.delete().where(kb_records.c.record_id.in_(ids[i : i + _CHUNK])))
