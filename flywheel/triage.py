"""Triage: negative feedback -> failure clusters, one per failure mode, highest priority first.

1. **Category.** From the event's reason when it names one; otherwise inferred: by the judge LLM
   when ``triage.infer_with_llm`` is on (consented text only), else by a similarity-weighted vote of
   the labelled events whose queries are at least ``knn_threshold`` similar, else from similarity to
   category descriptions.
2. **Clusters.** Inside a category, queries that mean the same thing are grouped by embedding
   clustering (:mod:`flywheel.clustering`), so one cluster is one failure mode.
3. **Priority** counts distinct users, not volume: one user's events count at most
   ``per_user_cap``; reasons given, low-confidence outputs and signal strength raise it.
4. **Route.** ``outdated_knowledge`` -> ``rag``; ``finetune`` only when prompt revisions already
   failed on the cluster and it has enough usable consented examples; everything else -> ``prompt``.

Events without consent count everywhere numbers are shown, but their text never appears in a
summary or an example and is never sent to a remote model.

This module is the full re-cluster; :mod:`flywheel.triage_memory` keeps its clusters between runs
and assigns only new events to them (`flywheel triage` is incremental, `--full` runs this).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from flywheel.clustering import cluster
from flywheel.config import TriageSettings
from flywheel.embeddings import Embedder
from flywheel.replies import ReplyProblem, chat_json, json_object
from flywheel.schemas import CATEGORIES, FailureCluster, StoredEvent

REASON_CATEGORY: dict[str, str] = {
    "wrong": "factual",
    "outdated": "outdated_knowledge",
    "unsafe": "unsafe",
    "off_topic": "off_topic",
    "not_relevant": "off_topic",
    "format": "format",
    "tone": "tone",
    "missing_context": "missing_context",
}
# Descriptions the last-resort inference compares a query (and comment) with.
CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "factual": "the answer states a wrong fact, number, price or calculation",
    "outdated_knowledge": "the answer uses old information that has since changed: outdated prices, limits or policies",
    "format": "the answer has the wrong format: not JSON, not a list, not the structure that was asked for",
    "tone": "the answer is rude, cold or dismissive to a frustrated or upset customer",
    "off_topic": "the request is unrelated to the product, like poems, jokes or trivia",
    "missing_context": "the question is ambiguous or lacks details and the answer guessed instead of asking",
    "unsafe": "the answer reveals private personal data of other people or helps with something harmful",
}
# Labelled neighbours considered per inference: a deterministic sample keeps 100k-event triage fast.
KNN_MAX_LABELLED = 2048

LlmClassifier = Callable[[str], str | None]


class VectorIndex:
    """Embeddings of distinct texts, one matrix; rows are gathered by index, not stacked one by one."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        self.vectors = vectors

    def __contains__(self, text: object) -> bool:
        return text in self.index

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectors[[self.index[t] for t in texts]]


@dataclass
class TriageInputs:
    """What triage needs besides the events; kept together so flows can pass one object."""

    settings: TriageSettings
    embedder: Embedder
    prompt_failed: Collection[str] = ()  # cluster ids whose prompt candidates were rejected before
    classify: LlmClassifier | None = None  # LLM category inference (consented text only)


def usable_example(e: StoredEvent) -> bool:
    """Fine-tuning material: consented and carrying the right answer (a correction or an edit)."""
    return e.consent and bool((e.correction or "").strip() or (e.signal == "edit" and e.final_text))


def priority(events: Sequence[StoredEvent], settings: TriageSettings) -> float:
    """Distinct users first: each user's events count at most ``per_user_cap``."""
    per_user = Counter(e.user_key() for e in events)
    capped = sum(min(n, settings.per_user_cap) for n in per_user.values())
    return priority_of(
        capped,
        len(events),
        strength=sum(e.strength for e in events),
        reasoned=sum(1 for e in events if e.reason and e.reason != "other"),
        low_conf=sum(1 for e in events if low_confidence(e, settings)),
    )


def low_confidence(e: StoredEvent, settings: TriageSettings) -> bool:
    return e.confidence is not None and e.confidence < settings.low_confidence


def priority_of(capped: int, n: int, *, strength: float, reasoned: int, low_conf: int) -> float:
    """:func:`priority` from sums (what incremental triage keeps): ``capped`` is the sum over users of
    min(their events, per_user_cap); ``strength`` the summed signal strength; ``reasoned`` events with
    a reason, ``low_conf`` events with a low-confidence output, of ``n``."""
    return round(capped * (strength / n) * (1 + 0.5 * (reasoned / n)) * (1 + 0.5 * (low_conf / n)), 3)


def embeddable(e: StoredEvent, embedder: Embedder) -> bool:
    return e.consent or embedder.local


def texts_to_embed(events: Sequence[StoredEvent], embedder: Embedder) -> list[str]:
    """Every text triage of ``events`` may embed: the distinct embeddable negative queries and the
    category descriptions (so they can be embedded ahead, elsewhere, and found in the cache)."""
    queries = dict.fromkeys(e.query for e in events if e.polarity < 0 and embeddable(e, embedder))
    return list(queries) + list(CATEGORY_DESCRIPTIONS.values())


def _explicit_category(e: StoredEvent) -> str | None:
    return REASON_CATEGORY.get(e.reason) if e.reason else None


@dataclass
class LabelVotes:
    """Labelled neighbours category inference votes with: one row per distinct (query, category),
    weighted by how often it occurs. Kept by incremental triage between runs."""

    categories: list[str]
    weights: np.ndarray  # float32, one per row
    vectors: np.ndarray  # float32 unit rows

    @classmethod
    def empty(cls) -> LabelVotes:
        return cls([], np.zeros(0, dtype=np.float32), np.zeros((0, 0), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.categories)

    def __add__(self, other: LabelVotes) -> LabelVotes:
        if not len(other):
            return self
        if not len(self):
            return other
        return LabelVotes(
            self.categories + other.categories,
            np.concatenate([self.weights, other.weights]),
            np.vstack([self.vectors, other.vectors]),
        )


def label_votes(
    labeled: Sequence[tuple[StoredEvent, str]], vec: VectorIndex, limit: int = KNN_MAX_LABELLED
) -> LabelVotes:
    """The labelled neighbours of ``labeled``; past ``limit`` rows the most frequent first, then an
    even spread of the rest (a deterministic sample keeps 100k-event triage fast)."""
    lab_counts = Counter((e.query, c) for e, c in labeled if e.query in vec)
    if not lab_counts:
        return LabelVotes.empty()
    keys = list(lab_counts)
    if len(keys) > limit:
        keys.sort(key=lambda k: -lab_counts[k])
        keys = keys[: limit // 2] + keys[limit // 2 :: max(1, len(keys) // limit)]
    return LabelVotes(
        [c for _, c in keys],
        np.array([lab_counts[k] for k in keys], dtype=np.float32),
        vec.rows([q for q, _ in keys]),
    )


def _infer_categories(
    unlabeled: list[StoredEvent],
    votes: LabelVotes,
    vec: VectorIndex,
    inputs: TriageInputs,
) -> dict[str, str]:
    """Category for each unlabelled event id: LLM, then nearest labelled neighbours, then descriptions."""
    s = inputs.settings
    out: dict[str, str] = {}
    todo: list[StoredEvent] = []
    for e in unlabeled:
        if inputs.classify is not None and e.consent:
            label = inputs.classify(e.query)
            if label in CATEGORIES:
                out[e.event_id] = label
                continue
        if e.query in vec:
            todo.append(e)
        else:
            out[e.event_id] = "other"
    if not todo:
        return out
    queries = list(dict.fromkeys(e.query for e in todo))
    q_mat = vec.rows(queries)
    guess: dict[str, str] = {}
    if len(votes):
        names = sorted(set(votes.categories))
        # votes[c] = sum of similarity x occurrences over labelled neighbours of category c above the threshold
        weights = np.zeros((len(votes), len(names)), dtype=np.float32)
        for row, c in enumerate(votes.categories):
            weights[row, names.index(c)] = votes.weights[row]
        for start in range(0, len(queries), 2048):
            sims = q_mat[start : start + 2048] @ votes.vectors.T
            sims[sims < s.knn_threshold] = 0.0
            tally = sims @ weights
            best = tally.argmax(axis=1)
            for hit in np.flatnonzero(tally.max(axis=1) > 0):
                guess[queries[start + hit]] = names[best[hit]]
    rest = [q for q in queries if q not in guess]
    if rest:
        names = list(CATEGORY_DESCRIPTIONS)
        d_mat = inputs.embedder.embed([CATEGORY_DESCRIPTIONS[c] for c in names])
        sims = vec.rows(rest) @ d_mat.T
        for q, row in zip(rest, sims, strict=True):
            j = int(row.argmax())
            guess[q] = names[j] if row[j] >= s.description_threshold else "other"
    for e in todo:
        out[e.event_id] = guess[e.query]
    return out


def categorise(
    events: Sequence[StoredEvent], vec: VectorIndex, inputs: TriageInputs, known: LabelVotes | None = None
) -> tuple[dict[str, str], LabelVotes]:
    """Each event's category (by event id) and the labelled neighbours ``events`` add; ``known``:
    neighbours kept from earlier events, voting beside the new ones."""
    category: dict[str, str] = {}
    labeled: list[tuple[StoredEvent, str]] = []
    unlabeled: list[StoredEvent] = []
    for e in events:
        c = _explicit_category(e)
        if c:
            category[e.event_id] = c
            labeled.append((e, c))
        else:
            unlabeled.append(e)
    fresh = label_votes(labeled, vec)
    votes = fresh if known is None else known + fresh
    category.update(_infer_categories(unlabeled, votes, vec, inputs))
    return category, fresh


def cluster_id_of(category: str, events: Sequence[StoredEvent]) -> str:
    """Stable across runs while the cluster grows: named after its earliest event."""
    first = min(events, key=lambda e: (e.ts, e.event_id))
    return f"{category}-{hashlib.sha1(first.event_id.encode()).hexdigest()[:8]}"


def summary_of(category: str, size: int, users: int, reasons: Mapping[str, int], examples: list[str]) -> str:
    head = f"{category}: {size} negative events from {users} users"
    if reasons:
        head += f" (reasons: {', '.join(f'{r} {n}' for r, n in Counter(reasons).most_common(3))})"
    if examples:
        return f'{head}; e.g. "{examples[0]}"'
    return f"{head}; text withheld (no consent)"


def _representatives(members: list[StoredEvent], vec: VectorIndex, limit: int = 3) -> list[str]:
    """Consented queries closest to the cluster's centre, most typical first."""
    consented = list(dict.fromkeys(e.query for e in members if e.consent))
    if not consented:
        return []
    with_vec = [q for q in consented if q in vec]
    if not with_vec:
        return consented[:limit]
    mat = vec.rows(with_vec)
    centre = mat.mean(axis=0)
    order = np.argsort(-(mat @ centre))
    return [with_vec[i] for i in order[:limit]]


def route_for(category: str, *, prompt_failed: bool, finetune_gap: int) -> str:
    """SPEC's routing rule, one place for triage and for a cluster whose category was diagnosed later:
    ``outdated_knowledge`` -> rag; fine-tuning only where prompts failed and enough usable examples
    exist; everything else -> prompt."""
    if category == "outdated_knowledge":
        return "rag"
    if prompt_failed and finetune_gap == 0:
        return "finetune"
    return "prompt"


def build_cluster(category: str, members: list[StoredEvent], vec: VectorIndex, inputs: TriageInputs) -> FailureCluster:
    s = inputs.settings
    users = len({e.user_key() for e in members})
    usable = sum(1 for e in members if usable_example(e))
    cluster_id = cluster_id_of(category, members)
    route = route_for(
        category,
        prompt_failed=cluster_id in inputs.prompt_failed,
        finetune_gap=max(0, s.finetune_min_examples - usable),
    )
    examples = _representatives(members, vec)
    return FailureCluster(
        cluster_id=cluster_id,
        category=category,
        route=route,
        size=len(members),
        users=users,
        priority=priority(members, s),
        event_ids=[e.event_id for e in members],
        summary=summary_of(category, len(members), users, Counter(e.reason for e in members if e.reason), examples),
        consented=sum(1 for e in members if e.consent),
        usable_examples=usable,
        finetune_gap=max(0, s.finetune_min_examples - usable),
        prompt_failed=cluster_id in inputs.prompt_failed,
        first_seen=min(e.ts for e in members),
        last_seen=max(e.ts for e in members),
        reasons=dict(Counter(e.reason for e in members if e.reason)),
        example_queries=examples,
    )


@dataclass
class Grouping:
    """A full triage before the clusters are summarised: each group's category, whether its text was
    withheld from the embedder, and its members; the vectors; the labelled neighbours."""

    groups: list[tuple[str, bool, list[StoredEvent]]]
    vec: VectorIndex
    votes: LabelVotes


def embed_queries(
    events: Sequence[StoredEvent], inputs: TriageInputs, progress: Callable[[int], None] | None = None
) -> VectorIndex:
    """The distinct embeddable queries of ``events``, embedded once."""
    texts = list(dict.fromkeys(e.query for e in events if embeddable(e, inputs.embedder)))
    vectors = inputs.embedder.embed(texts, progress) if texts else np.zeros((0, 0), dtype=np.float32)
    return VectorIndex(texts, vectors)


def group_events(
    events: Sequence[StoredEvent], inputs: TriageInputs, progress: Callable[[int], None] | None = None
) -> Grouping:
    """Negative ``events`` (others are ignored) grouped by category, then by meaning."""
    s = inputs.settings
    negatives = [e for e in events if e.polarity < 0]
    vec = embed_queries(negatives, inputs, progress)
    category, votes = categorise(negatives, vec, inputs)

    by_category: dict[str, list[StoredEvent]] = defaultdict(list)
    for e in negatives:
        by_category[category[e.event_id]].append(e)

    out: list[tuple[str, bool, list[StoredEvent]]] = []
    for cat, members in by_category.items():
        withheld = [e for e in members if e.query not in vec]
        groups: dict[int, list[StoredEvent]] = defaultdict(list)
        placed = [e for e in members if e.query in vec]
        if placed:
            counts = Counter(e.query for e in placed)
            uniq = list(counts)
            labels = cluster(
                vec.rows(uniq),
                np.array([counts[q] for q in uniq]),
                assign_threshold=s.cluster_threshold,
                merge_threshold=s.merge_threshold,
            )
            label_of = dict(zip(uniq, labels.tolist(), strict=True))
            for e in placed:
                groups[label_of[e.query]].append(e)
        out.extend((cat, False, g) for g in groups.values())
        if withheld:  # remote embeddings and no consent: counted, never sent
            out.append((cat, True, withheld))
    return Grouping(out, vec, votes)


def triage_events(
    events: Sequence[StoredEvent], inputs: TriageInputs, progress: Callable[[int], None] | None = None
) -> list[FailureCluster]:
    """Cluster negative ``events`` (others are ignored) into prioritised failure clusters."""
    grouping = group_events(events, inputs, progress)
    clusters = [build_cluster(cat, g, grouping.vec, inputs) for cat, _, g in grouping.groups]
    clusters.sort(key=lambda c: (-c.priority, c.cluster_id))
    return clusters


CLASSIFY_ATTEMPTS = 3


def llm_classifier(client: Any, model: str) -> LlmClassifier:
    """Category inference by an LLM with a JSON-schema response (only ever given consented text)."""
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": list(CATEGORIES)}, "rationale": {"type": "string"}},
        "required": ["category", "rationale"],
        "additionalProperties": False,
    }
    cache: dict[str, str | None] = {}
    described = "\n".join(f"- {c}: {d}" for c, d in CATEGORY_DESCRIPTIONS.items())

    def ask(query: str) -> str:
        reply = chat_json(
            client,
            model,
            [
                {
                    "role": "system",
                    "content": "You classify why a user was unhappy with an assistant's answer. "
                    f"Categories:\n{described}\n- other: none of these",
                },
                {"role": "user", "content": query},
            ],
            name="triage_category",
            schema=schema,
            temperature=0,
        )
        category = json_object(reply).get("category")  # a ReplyProblem when refused, cut off, no JSON
        if category not in CATEGORIES:  # e.g. "Off-topic request" from an endpoint that ignores the enum
            raise ReplyProblem(f"the model's category {category!r} is not one of {', '.join(CATEGORIES)}")
        return str(category)

    def classify(query: str) -> str | None:
        """The model's category, asked again when a reply is unusable; None (embedding fallback) after
        ``CLASSIFY_ATTEMPTS``."""
        if query not in cache:
            try:
                for attempt in Retrying(
                    retry=retry_if_exception_type(ReplyProblem),
                    stop=stop_after_attempt(CLASSIFY_ATTEMPTS),
                    reraise=True,
                ):
                    with attempt:
                        cache[query] = ask(query)
            except ReplyProblem:
                cache[query] = None
        return cache[query]

    return classify
