"""Incremental triage: clusters kept between runs, new events assigned to them, so a cycle's cost
follows what is new and not the backlog.

A full re-cluster (:func:`flywheel.triage.group_events`) leaves, per cluster, the sum of its members'
query vectors and the sums priority is made of (:class:`~flywheel.state.triage.ClusterRecord`). An
incremental run reads the negatives stored since the watermark, embeds only their queries, and puts
each into a cluster of its category:

1. the nearest centroid when the cosine similarity reaches ``cluster_threshold`` (the leader pass's rule);
2. else the cluster with the highest average similarity to its members (``v . mean``, average linkage,
   the merge pass's rule) when it reaches ``merge_threshold``;
3. else the leftovers are clustered among themselves, and each group joins the cluster its mean is
   average-linked to above ``merge_threshold`` or becomes a new cluster with a new id.

Only touched clusters change: their sums, example queries and user counts. A full re-cluster runs
instead when the result would drift from what one would give (:func:`drift`): a centroid that moved,
many leftovers, a backlog that grew by a large share, or a change of embedder or triage settings.
A full run keeps ids stable: each new cluster takes the id of the old cluster of its category it
shares the most events with (:func:`stable_ids`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import cast

import numpy as np

from flywheel.clustering import cluster
from flywheel.config import TriageSettings
from flywheel.schemas import Category, FailureCluster, Route, StoredEvent
from flywheel.state.triage import ClusterRecord, LabelRefs, TriageChange, TriageMemory
from flywheel.triage import (
    KNN_MAX_LABELLED,
    LabelVotes,
    TriageInputs,
    VectorIndex,
    categorise,
    cluster_id_of,
    embed_queries,
    embeddable,
    low_confidence,
    priority_of,
    route_for,
    summary_of,
    usable_example,
)

ALGORITHM = "incremental-1"  # part of the fingerprint: a change to how clusters are made forces a full run
DRIFT_COSINE = 0.05  # a touched centroid whose cosine to where it was falls below 1 - this: re-cluster
LEFTOVER_SHARE = 0.05  # leftovers (events that started new clusters) above this share of the backlog
GROWTH_SHARE = 0.25  # new events above this share of the backlog: a full run costs about the same
MIN_DRIFT_EVENTS = 20  # below this many leftovers, never a reason for a full run
EXAMPLES = 3


def fingerprint(embedder_name: str, settings: TriageSettings, store: str) -> str:
    """What the stored clusters depend on (the embedder, the triage settings, which feedback store):
    a change means they are re-made, not extended."""
    doc = json.dumps(
        {"embedder": embedder_name, "triage": settings.model_dump(mode="json"), "store": store, "algo": ALGORITHM}
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def user_hash(e: StoredEvent) -> str:
    """The per-user cap's key as stored (a hash: the state store keeps no user ids)."""
    return hashlib.blake2b(e.user_key().encode(), digest_size=10).hexdigest()


def votes_of(labels: LabelRefs) -> LabelVotes:
    return LabelVotes(labels.categories, labels.weights, labels.vectors)


def refs_of(votes: LabelVotes) -> LabelRefs:
    return LabelRefs(votes.categories, votes.weights, votes.vectors)


# --- growing one record ------------------------------------------------------------------------


def _grow(
    r: ClusterRecord,
    events: Sequence[StoredEvent],
    vectors: np.ndarray | None,
    users: dict[tuple[str, str], int],
    settings: TriageSettings,
) -> None:
    """Add ``events`` (with their query vectors, rows aligned, or None when withheld) to ``r``;
    ``users`` holds the current count of each (cluster, user) pair and is updated."""
    cap = settings.per_user_cap
    for e in events:
        key = (r.cluster_id, user_hash(e))
        before = users.get(key, 0)
        users[key] = before + 1
        r.users += before == 0
        r.capped += min(before + 1, cap) - min(before, cap)
        r.size += 1
        r.strength += e.strength
        r.reasoned += bool(e.reason and e.reason != "other")
        r.low_conf += low_confidence(e, settings)
        r.consented += e.consent
        r.usable += usable_example(e)
        r.first_seen = min(r.first_seen, e.ts.timestamp())
        r.last_seen = max(r.last_seen, e.ts.timestamp())
        if e.reason:
            r.reasons[e.reason] = r.reasons.get(e.reason, 0) + 1
    if vectors is not None and len(vectors):
        total = vectors.astype(np.float64).sum(axis=0)
        r.vsum = total if r.vsum is None else r.vsum + total
        r.weight += len(vectors)


def _examples(r: ClusterRecord, members: Sequence[StoredEvent], vec: VectorIndex) -> None:
    """The consented queries closest to the centre: the kept ones and ``members``' re-ranked."""
    fresh = [q for q in dict.fromkeys(e.query for e in members if e.consent) if q in vec and q not in r.examples]
    if not fresh and r.examples:
        return
    queries = list(r.examples) + fresh
    if not queries:
        return
    rows = [r.example_vecs] if r.example_vecs is not None and len(r.examples) else []
    mat = np.vstack([*rows, vec.rows(fresh)]) if fresh else rows[0]
    centre = r.centroid()
    if centre is None:
        centre = mat.mean(axis=0)
    order = np.argsort(-(mat @ centre), kind="stable")[:EXAMPLES]
    r.examples = [queries[i] for i in order]
    r.example_vecs = np.ascontiguousarray(mat[order], dtype=np.float32)


# --- full runs ---------------------------------------------------------------------------------


@dataclass
class Built:
    """Records made from whole clusters (a full run), with their members and user counts."""

    records: dict[str, ClusterRecord] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    users: dict[tuple[str, str], int] = field(default_factory=dict)


def stable_ids(
    groups: Sequence[tuple[str, Sequence[StoredEvent]]],
    old_members: dict[str, list[str]],
    old_category: dict[str, str],
) -> list[str]:
    """An id per group: the old cluster of the same category it shares the most events with (each old
    id used once, largest overlaps first), else named after its earliest event as a new cluster is."""
    owner = {eid: cid for cid, ids in old_members.items() for eid in ids}
    pairs: list[tuple[int, int, str]] = []
    for i, (cat, members) in enumerate(groups):
        overlap = Counter(owner[e.event_id] for e in members if e.event_id in owner)
        pairs.extend((n, i, cid) for cid, n in overlap.items() if old_category.get(cid) == cat)
    ids: list[str | None] = [None] * len(groups)
    taken: set[str] = set()
    for _, i, cid in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if ids[i] is None and cid not in taken:
            ids[i] = cid
            taken.add(cid)
    reserved = taken | set(old_members)
    out: list[str] = []
    for i, (cat, members) in enumerate(groups):
        kept = ids[i]
        name = kept if kept is not None else fresh_id(cat, members, reserved)
        reserved.add(name)
        out.append(name)
    return out


def fresh_id(category: str, members: Sequence[StoredEvent], reserved: set[str]) -> str:
    """A new cluster's id, named after its earliest event (the rule full triage has always used),
    made unique against ``reserved`` (old ids are never given to a different failure mode)."""
    cid = cluster_id_of(category, members)
    n = 1
    while cid in reserved:
        first = min(members, key=lambda e: (e.ts, e.event_id))
        cid = f"{category}-{hashlib.sha1(f'{first.event_id}#{n}'.encode()).hexdigest()[:8]}"
        n += 1
    return cid


def build_records(
    groups: Sequence[tuple[str, bool, list[StoredEvent]]],
    ids: Sequence[str],
    vec: VectorIndex,
    settings: TriageSettings,
) -> Built:
    built = Built()
    for (cat, withheld, members), cid in zip(groups, ids, strict=True):
        r = ClusterRecord(cluster_id=cid, category=cat, withheld=withheld)
        placed = [e.query for e in members if e.query in vec]
        _grow(r, members, vec.rows(placed) if placed else None, built.users, settings)
        _examples(r, members, vec)
        built.records[cid] = r
        built.members[cid] = [e.event_id for e in members]
    return built


# --- incremental runs --------------------------------------------------------------------------


@dataclass
class Increment:
    """An incremental run's result: what to save, or why a full re-cluster must run instead."""

    change: TriageChange | None
    drift: str | None = None
    embedded: int = 0  # distinct queries embedded


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(1e-12, float(np.linalg.norm(a) * np.linalg.norm(b))))


def assign(
    memory: TriageMemory,
    events: Sequence[StoredEvent],
    inputs: TriageInputs,
    user_counts: Callable[[Iterable[tuple[str, str]]], dict[tuple[str, str], int]],
    watermark: float,
) -> Increment:
    """Put the new negative ``events`` into ``memory``'s clusters (or new ones); nothing is saved here."""
    s = inputs.settings
    negatives = [e for e in events if e.polarity < 0]
    vec = embed_queries(negatives, inputs)
    category, fresh_votes = categorise(negatives, vec, inputs, votes_of(memory.labels))

    backlog = sum(r.size for r in memory.clusters.values())
    if len(negatives) > GROWTH_SHARE * max(backlog, 1):
        return Increment(None, f"{len(negatives)} new events against a backlog of {backlog}", len(vec.index))

    joins: dict[str, list[StoredEvent]] = defaultdict(list)  # existing cluster id -> new members
    new_groups: list[tuple[str, bool, list[StoredEvent]]] = []
    by_category: dict[str, list[StoredEvent]] = defaultdict(list)
    for e in negatives:
        by_category[category[e.event_id]].append(e)
    leftovers = 0
    for cat, members in by_category.items():
        withheld = [e for e in members if not embeddable(e, inputs.embedder)]
        if withheld:
            home = next((r for r in memory.clusters.values() if r.category == cat and r.withheld), None)
            if home is not None:
                joins[home.cluster_id].extend(withheld)
            else:
                new_groups.append((cat, True, withheld))
        placed = [e for e in members if embeddable(e, inputs.embedder)]
        if not placed:
            continue
        olds = [r for r in memory.clusters.values() if r.category == cat and not r.withheld and r.vsum is not None]
        counts = Counter(e.query for e in placed)
        uniq = list(counts)
        q_mat = vec.rows(uniq)
        target: dict[str, str] = {}
        if olds:
            sums = np.vstack([r.vsum for r in olds if r.vsum is not None])
            weights = np.array([r.weight for r in olds])
            means = (sums / weights[:, None]).astype(np.float32)
            units = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            near = q_mat @ units.T
            linked = q_mat @ means.T
            best, best_linked = near.argmax(axis=1), linked.argmax(axis=1)
            for i, q in enumerate(uniq):
                if near[i, best[i]] >= s.cluster_threshold:
                    target[q] = olds[best[i]].cluster_id
                elif linked[i, best_linked[i]] >= s.merge_threshold:
                    target[q] = olds[best_linked[i]].cluster_id
        rest = [q for q in uniq if q not in target]
        if rest:
            r_mat = vec.rows(rest)
            r_w = np.array([counts[q] for q in rest], dtype=np.float64)
            labels = cluster(r_mat, r_w, assign_threshold=s.cluster_threshold, merge_threshold=s.merge_threshold)
            for g in range(int(labels.max()) + 1):
                rows = np.flatnonzero(labels == g)
                mean = (r_mat[rows] * r_w[rows, None]).sum(axis=0) / r_w[rows].sum()
                if olds:
                    link = means @ mean
                    j = int(link.argmax())
                    if link[j] >= s.merge_threshold:
                        for row in rows.tolist():
                            target[rest[row]] = olds[j].cluster_id
                        continue
                group_queries = {rest[i] for i in rows}
                group = [e for e in placed if e.query in group_queries]
                leftovers += len(group)
                new_groups.append((cat, False, group))
        for e in placed:
            if e.query in target:
                joins[target[e.query]].append(e)

    if leftovers >= MIN_DRIFT_EVENTS and leftovers > LEFTOVER_SHARE * max(backlog, 1):
        return Increment(None, f"{leftovers} new events fit no cluster", len(vec.index))

    # The touched clusters' sums and user counts; new clusters get new ids.
    reserved = set(memory.clusters)
    new_ids = []
    for cat, _, group in new_groups:
        cid = fresh_id(cat, group, reserved)
        reserved.add(cid)
        new_ids.append(cid)
    pairs = [(cid, user_hash(e)) for cid, members in joins.items() for e in members]
    users = user_counts(pairs)  # only the pairs this run touches: what it reads and writes
    touched: list[ClusterRecord] = []
    added: dict[str, list[str]] = {}
    for cid, members in joins.items():
        old = memory.clusters[cid]
        r = replace(old, reasons=dict(old.reasons))
        texts = [e.query for e in members if e.query in vec]
        _grow(r, members, vec.rows(texts) if texts else None, users, s)
        before, after = old.centroid(), r.centroid()
        if before is not None and after is not None and _cos(before, after) < 1 - DRIFT_COSINE:
            return Increment(None, f"cluster {cid} drifted", len(vec.index))
        _examples(r, members, vec)
        touched.append(r)
        added[cid] = [e.event_id for e in members]
    for (cat, hidden, group), cid in zip(new_groups, new_ids, strict=True):
        r = ClusterRecord(cluster_id=cid, category=cat, withheld=hidden)
        texts = [e.query for e in group if e.query in vec]
        _grow(r, group, vec.rows(texts) if texts else None, users, s)
        _examples(r, group, vec)
        touched.append(r)
        added[cid] = [e.event_id for e in group]
    room = max(0, 2 * KNN_MAX_LABELLED - len(memory.labels))
    kept_labels = refs_of(fresh_votes)
    if len(kept_labels) > room:
        kept_labels = LabelRefs(kept_labels.categories[:room], kept_labels.weights[:room], kept_labels.vectors[:room])
    change = TriageChange(clusters=touched, members=added, users=users, labels=kept_labels, watermark=watermark)
    return Increment(change, None, len(vec.index))


def applied(memory: TriageMemory, change: TriageChange) -> TriageMemory:
    """``memory`` with ``change`` made (what the store now holds)."""
    for r in change.clusters:
        memory.clusters[r.cluster_id] = r
    for cid, ids in change.members.items():
        memory.members.setdefault(cid, []).extend(ids)
    if len(change.labels):
        held = [memory.labels] if len(memory.labels) else []
        memory.labels = LabelRefs(
            categories=[c for refs in (*held, change.labels) for c in refs.categories],
            weights=np.concatenate([refs.weights for refs in (*held, change.labels)]),
            vectors=np.vstack([refs.vectors for refs in (*held, change.labels)]),
        )
    return memory


# --- the answer --------------------------------------------------------------------------------


def _when(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if np.isfinite(epoch) else None


def failure_cluster(r: ClusterRecord, event_ids: list[str], inputs: TriageInputs) -> FailureCluster:
    """The SPEC's cluster from a record: the same rules as :func:`flywheel.triage.build_cluster`."""
    s = inputs.settings
    failed = r.cluster_id in inputs.prompt_failed
    gap = max(0, s.finetune_min_examples - r.usable)
    # model_construct: the values are already typed, and validating every event id of a 1M backlog
    # would be the one cost of an incremental run that follows the backlog
    return FailureCluster.model_construct(
        cluster_id=r.cluster_id,
        category=cast(Category, r.category),
        route=cast(Route, route_for(r.category, prompt_failed=failed, finetune_gap=gap)),
        size=r.size,
        users=r.users,
        priority=priority_of(r.capped, r.size, strength=r.strength, reasoned=r.reasoned, low_conf=r.low_conf),
        event_ids=event_ids,
        summary=summary_of(r.category, r.size, r.users, r.reasons, r.examples),
        consented=r.consented,
        usable_examples=r.usable,
        finetune_gap=gap,
        prompt_failed=failed,
        first_seen=_when(r.first_seen),
        last_seen=_when(r.last_seen),
        reasons=dict(r.reasons),
        example_queries=list(r.examples),
    )


def failure_clusters(memory: TriageMemory, inputs: TriageInputs) -> list[FailureCluster]:
    """Every kept cluster, highest priority first."""
    # copies: ``memory`` may be kept for the next run, which extends its lists
    out = [
        failure_cluster(r, list(memory.members.get(cid, ())), inputs) for cid, r in memory.clusters.items() if r.size
    ]
    out.sort(key=lambda c: (-c.priority, c.cluster_id))
    return out
