"""Incremental triage's memory in the state store: the clusters (centroid sums and the counts priority
is made of), which events each holds, per-cluster user counts and the labelled reference vectors, and
the watermark of the feedback read so far. ``flywheel/triage_memory.py`` decides; this only stores.

Membership is kept in chunks of event ids: an incremental run appends one chunk per cluster it grew,
so what it writes follows what is new, not the backlog. A process that triages again (a warm worker,
the service) keeps the memory its last save wrote and reuses it while the store's meta row still says
that save is the latest, so it does not re-read a backlog's membership each time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
from sqlalchemy import Connection, RowMapping, select

from flywheel.state.base import StateConnection
from flywheel.state.tables import triage_clusters, triage_labels, triage_members, triage_meta, triage_users
from flywheel.state.upsert import insert_replace

_META = "triage"
_CHUNK = 400  # pairs per IN (...)
_BATCH = 5000  # rows per executemany


@dataclass(slots=True)
class ClusterRecord:
    """One failure cluster as triage keeps it between runs: sums, not members, so growing it is O(new)."""

    cluster_id: str
    category: str
    withheld: bool = False
    size: int = 0
    weight: float = 0.0  # events behind vsum
    vsum: np.ndarray | None = None  # float64 sum of member query vectors
    users: int = 0
    capped: int = 0
    strength: float = 0.0
    reasoned: int = 0
    low_conf: int = 0
    consented: int = 0
    usable: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    example_vecs: np.ndarray | None = None  # float32, one row per example

    def centroid(self) -> np.ndarray | None:
        """The normalised mean member vector (None when nothing was embedded)."""
        if self.vsum is None or self.weight <= 0:
            return None
        norm = float(np.linalg.norm(self.vsum))
        return None if norm == 0 else (self.vsum / norm).astype(np.float32)


@dataclass(slots=True)
class LabelRefs:
    """Labelled query vectors that category inference votes with (one row per distinct query and category)."""

    categories: list[str] = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.categories)


@dataclass(slots=True)
class TriageMemory:
    """Everything triage keeps, as loaded (``generation`` guards the next save)."""

    watermark: float
    fingerprint: str
    generation: int
    full_at: float
    clusters: dict[str, ClusterRecord]
    members: dict[str, list[str]]
    labels: LabelRefs


@dataclass(slots=True)
class TriageChange:
    """What one incremental run writes: the clusters it touched (whole records), the event ids each
    gained, the new user counts of the (cluster, user) pairs it saw, labels to add, the new watermark."""

    clusters: list[ClusterRecord]
    members: dict[str, list[str]]
    users: dict[tuple[str, str], int]
    labels: LabelRefs
    watermark: float


def _vec_bytes(v: np.ndarray | None, dtype: type) -> bytes | None:
    return None if v is None else np.ascontiguousarray(v, dtype=dtype).tobytes()


def _row(r: ClusterRecord) -> dict[str, object]:
    return {
        "cluster_id": r.cluster_id,
        "category": r.category,
        "withheld": int(r.withheld),
        "size": r.size,
        "weight": r.weight,
        "vsum": _vec_bytes(r.vsum, np.float64),
        "users": r.users,
        "capped": r.capped,
        "strength": r.strength,
        "reasoned": r.reasoned,
        "low_conf": r.low_conf,
        "consented": r.consented,
        "usable": r.usable,
        "first_seen": r.first_seen,
        "last_seen": r.last_seen,
        "reasons": json.dumps(r.reasons),
        "examples": json.dumps(r.examples),
        "example_vecs": _vec_bytes(r.example_vecs, np.float32),
    }


def _record(row: RowMapping) -> ClusterRecord:
    vsum = row["vsum"]
    examples: list[str] = json.loads(str(row["examples"]))
    ex_vecs = row["example_vecs"]
    ex = None
    if isinstance(ex_vecs, bytes) and examples:
        ex = np.frombuffer(ex_vecs, dtype=np.float32).reshape(len(examples), -1)
    return ClusterRecord(
        cluster_id=str(row["cluster_id"]),
        category=str(row["category"]),
        withheld=bool(row["withheld"]),
        size=int(row["size"]),
        weight=float(row["weight"]),
        vsum=np.frombuffer(vsum, dtype=np.float64).copy() if isinstance(vsum, bytes) else None,
        users=int(row["users"]),
        capped=int(row["capped"]),
        strength=float(row["strength"]),
        reasoned=int(row["reasoned"]),
        low_conf=int(row["low_conf"]),
        consented=int(row["consented"]),
        usable=int(row["usable"]),
        first_seen=float(row["first_seen"]),
        last_seen=float(row["last_seen"]),
        reasons=json.loads(str(row["reasons"])),
        examples=examples,
        example_vecs=ex,
    )


def _label_rows(labels: LabelRefs) -> list[dict[str, object]]:
    return [
        {"category": c, "weight": float(w), "vec": _vec_bytes(v, np.float32)}
        for c, w, v in zip(labels.categories, labels.weights, labels.vectors, strict=True)
    ]


def _many(conn: Connection, statement: object, rows: list[dict[str, object]]) -> None:
    for i in range(0, len(rows), _BATCH):
        conn.execute(statement, rows[i : i + _BATCH])  # type: ignore[call-overload]


def _key(watermark: float, fingerprint: str, generation: int, full_at: float) -> tuple[float, str, int, float]:
    return (float(watermark), str(fingerprint), int(generation), float(full_at))


class TriageClusters(StateConnection):
    """Queries on incremental triage's tables."""

    # per store URL, the memory this process's last triage left (the state store is opened once per
    # thread, and a warm worker's flow runs each get new threads): handed out once, as the caller
    # changes it in place, and only while the store's meta row still names it
    _kept: ClassVar[dict[str, TriageMemory]] = {}
    _kept_lock: ClassVar[threading.Lock] = threading.Lock()

    def keep_triage_memory(self, memory: TriageMemory) -> None:
        """Keep ``memory`` (as loaded, or as a save of this process wrote it) for the next
        :meth:`triage_memory` of this process on the same store; the caller must not change it afterwards."""
        with self._kept_lock:
            self._kept[str(self.url)] = memory

    def _take_kept(self, meta: RowMapping) -> TriageMemory | None:
        """The kept memory when the meta row still names it (no other process saved since), else None."""
        with self._kept_lock:
            kept = self._kept.pop(str(self.url), None)
        if kept is None:
            return None
        now = _key(meta["watermark"], meta["fingerprint"], meta["generation"], meta["full_at"])
        return kept if now == _key(kept.watermark, kept.fingerprint, kept.generation, kept.full_at) else None

    def triage_memory(self, *, reuse: bool = True) -> TriageMemory | None:
        """What the last triage left, or None before the first one. The caller owns the result.
        ``reuse``: the memory this process kept when the store still names it; False reads it all."""
        with self._read() as conn:
            meta = conn.execute(select(triage_meta).where(triage_meta.c.name == _META)).mappings().first()
            if meta is None:
                return None
            kept = self._take_kept(meta) if reuse else None
            if kept is not None:
                return kept
            clusters = {r.cluster_id: r for r in map(_record, conn.execute(select(triage_clusters)).mappings())}
            members: dict[str, list[str]] = {cid: [] for cid in clusters}
            query = select(triage_members.c.cluster_id, triage_members.c.event_ids).order_by(triage_members.c.chunk)
            for cid, ids in conn.execute(query):
                members.setdefault(cid, []).extend(json.loads(ids))
            rows = conn.execute(select(triage_labels).order_by(triage_labels.c.id)).all()
        labels = LabelRefs()
        if rows:
            labels = LabelRefs(
                categories=[r.category for r in rows],
                weights=np.array([r.weight for r in rows], dtype=np.float32),
                vectors=np.vstack([np.frombuffer(r.vec, dtype=np.float32) for r in rows]),
            )
        return TriageMemory(
            watermark=float(meta["watermark"]),
            fingerprint=str(meta["fingerprint"]),
            generation=int(meta["generation"]),
            full_at=float(meta["full_at"]),
            clusters=clusters,
            members=members,
            labels=labels,
        )

    def triage_mark(self) -> tuple[float, str] | None:
        """The watermark and fingerprint of the kept clusters (None before the first triage): what
        embedding ahead of a cycle needs, without loading the clusters."""
        with self._read() as conn:
            row = conn.execute(
                select(triage_meta.c.watermark, triage_meta.c.fingerprint).where(triage_meta.c.name == _META)
            ).first()
        return None if row is None else (float(row[0]), str(row[1]))

    def triage_user_counts(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Stored event counts of the (cluster id, user key) pairs asked for; absent pairs are left out."""
        by_cluster: dict[str, list[str]] = {}
        for cid, user in dict.fromkeys(pairs):
            by_cluster.setdefault(cid, []).append(user)
        c = triage_users.c
        out: dict[tuple[str, str], int] = {}
        with self._read() as conn:  # by cluster: the primary key's prefix (a row-value IN scans the table)
            for cid, users in by_cluster.items():
                for i in range(0, len(users), _CHUNK):
                    query = select(c.user_key, c.n).where(c.cluster_id == cid, c.user_key.in_(users[i : i + _CHUNK]))
                    for user, n in conn.execute(query):
                        out[(cid, user)] = int(n)
        return out

    def _bump(self, conn: Connection, expected: int | None, **values: object) -> int | None:
        """Advance the meta row: the new generation, or None (nothing written) when another triage saved
        since ``expected``."""
        current = conn.execute(select(triage_meta.c.generation).where(triage_meta.c.name == _META)).scalar()
        if expected is not None and current != expected:
            return None
        generation = (current or 0) + 1
        conn.execute(
            insert_replace(conn, triage_meta, ["name"], [*values, "generation"]).values(
                name=_META, generation=generation, **values
            )
        )
        return generation

    def save_triage_full(
        self,
        *,
        fingerprint: str,
        watermark: float,
        clusters: list[ClusterRecord],
        members: dict[str, list[str]],
        users: dict[tuple[str, str], int],
        labels: LabelRefs,
    ) -> TriageMemory:
        """Replace everything with a full re-cluster's result; the memory it is now, which this process
        keeps (``clusters``, ``members`` and ``labels`` are handed over: the caller must not change them)."""
        full_at = time.time()
        with self._write() as conn:
            for table in (triage_clusters, triage_members, triage_users, triage_labels):
                conn.execute(table.delete())
            generation = self._bump(conn, None, watermark=watermark, fingerprint=fingerprint, full_at=full_at)
            _many(conn, triage_clusters.insert(), [_row(r) for r in clusters])
            _many(
                conn,
                triage_members.insert(),
                [{"cluster_id": cid, "event_ids": json.dumps(ids)} for cid, ids in members.items() if ids],
            )
            _many(
                conn,
                triage_users.insert(),
                [{"cluster_id": cid, "user_key": u, "n": n} for (cid, u), n in users.items()],
            )
            _many(conn, triage_labels.insert(), _label_rows(labels))
        by_id = {r.cluster_id: r for r in clusters}
        memory = TriageMemory(watermark, fingerprint, int(generation or 0), full_at, by_id, members, labels)
        self.keep_triage_memory(memory)
        return memory

    def save_triage_change(
        self, change: TriageChange, *, expected_generation: int, after: TriageMemory | None = None
    ) -> bool:
        """Apply one incremental run; False when another triage saved first (then this one is dropped:
        its events stay beyond the watermark it did not write, and the next triage reads them).
        ``after``: the loaded memory with ``change`` made, kept in this process once saved."""
        with self._write() as conn:
            meta = conn.execute(select(triage_meta).where(triage_meta.c.name == _META)).mappings().first()
            generation = None
            if meta is not None:
                generation = self._bump(
                    conn,
                    expected_generation,
                    watermark=change.watermark,
                    fingerprint=meta["fingerprint"],
                    full_at=meta["full_at"],
                )
            if meta is None or generation is None:
                return False
            if change.clusters:
                _many(conn, insert_replace(conn, triage_clusters, ["cluster_id"]), [_row(r) for r in change.clusters])
            _many(
                conn,
                triage_members.insert(),
                [{"cluster_id": cid, "event_ids": json.dumps(ids)} for cid, ids in change.members.items() if ids],
            )
            if change.users:
                _many(
                    conn,
                    insert_replace(conn, triage_users, ["cluster_id", "user_key"]),
                    [{"cluster_id": cid, "user_key": u, "n": n} for (cid, u), n in change.users.items()],
                )
            _many(conn, triage_labels.insert(), _label_rows(change.labels))
            full_at = float(meta["full_at"])
        if after is not None:
            self.keep_triage_memory(replace(after, watermark=change.watermark, generation=generation, full_at=full_at))
        return True
