"""Fine-tune datasets from feedback: which events teach what, curation, and a versioned dataset.

Where examples come from (consented events only; the text was scrubbed at ingest and is scrubbed
again here):

==============================  ===========================  =========================================
event                           SFT example (query ->)       preference pair (chosen / rejected)
==============================  ===========================  =========================================
a ``correction`` (any signal)   the correction               correction / the model's output
``edit``, changed a lot (-)     the user's final text        final text / the model's output
``edit``, small change (+)      the user's final text        -
``accept``, ``copy``, outcome 1  the model's output           -
``thumbs_up``, rating >= 4      the model's output           -
expert review >= 0.8            the model's output           -
==============================  ===========================  =========================================

Positive and negative signal stay apart: SFT examples are good answers only; what users rejected
appears only as the ``rejected`` side of a preference pair (DPO).

Curation, in this order, each exclusion counted in total (``excluded``, SPEC's keys) and by rule
(``excluded_rules``, the key before the dot is the total it adds to):

1. **no_consent**: the event would have given an example but its user did not consent.
2. **low_quality** (rules): ``too_short`` (the target answer is shorter than ``min_answer_chars``),
   ``too_long`` (the query or the answer is longer than ``max_chars``), ``short_query`` (under 3
   characters), ``repeats_query`` (the answer repeats the query), ``correction_equals_output`` (a
   correction or edit equals the output it corrects: no signal).
3. **golden_overlap** (``exact``, ``near``): the query equals a golden input after normalising, or is a
   near-duplicate of one (MinHash estimate at least ``near_duplicate_threshold``): evaluation must not
   leak into training.
4. **duplicates** (``exact``, ``near``): the same (query, answer) after normalising, or a near-duplicate
   of an earlier example (MinHash over character 5-grams of query and answer); the earliest is kept.
5. **per_user_cap**: one user contributes at most ``per_user_cap`` examples (the earliest).

PII: the text was scrubbed at ingest and is scrubbed again here; the rules above run on the scrubbed
text (placeholders and all, so two examples that differ only in a scrubbed value are duplicates). The
placeholders left in kept examples are then replaced by seeded Faker surrogates (improvers/surrogates.py):
no placeholder reaches a training target, and no example is dropped for the PII it held.

The split is stratified by source and stable: an example's split depends only on its id. The
version is a hash of the content (system prompt, examples, splits, pairs), so the same feedback
gives the same version and the same files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flywheel.config import FinetuneSettings
from flywheel.feedback.scrub import scrub_text
from flywheel.improvers.dedup import NearDuplicateIndex, normalise, signatures
from flywheel.improvers.surrogates import SurrogateTable
from flywheel.schemas import StoredEvent

EXCLUSIONS = ("no_consent", "duplicates", "golden_overlap", "low_quality", "per_user_cap")


@dataclass(slots=True)
class Example:
    """One supervised example, with the model output it replaces when it came from a correction."""

    example_id: str
    source: str  # correction | edit | accepted | rated | expert
    query: str
    answer: str
    user: str
    ts: datetime
    rejected: str | None = None  # the model's output a user corrected: the negative side of a pair

    def row(self) -> dict[str, str]:
        return {"id": self.example_id, "source": self.source, "query": self.query, "answer": self.answer}


@dataclass
class Curated:
    """What curation kept, how many of each kind of exclusion (in total and by rule), and how many PII
    surrogates of each kind the kept examples got."""

    examples: list[Example]
    candidates: int  # events that would have given an example, before curation
    excluded: Counter[str] = field(default_factory=Counter)
    excluded_rules: Counter[str] = field(default_factory=Counter)  # "low_quality.too_short": n, ...
    surrogates: Counter[str] = field(default_factory=Counter)

    def exclude(self, rule: str) -> None:
        """Count one exclusion under its rule and under the total it belongs to (the part before the dot)."""
        self.excluded[rule.split(".", 1)[0]] += 1
        self.excluded_rules[rule] += 1

    @property
    def pairs(self) -> list[Example]:
        return [e for e in self.examples if e.rejected is not None]


def example_of(e: StoredEvent, s: FinetuneSettings) -> Example | None:
    """The example an event gives, or None when it teaches nothing (see the table above)."""

    def example(source: str, answer: str, rejected: str | None = None) -> Example:
        return Example(
            example_id=e.event_id,
            source=source,
            query=e.query,
            answer=answer,
            user=e.user_key(),
            ts=e.ts,
            rejected=rejected,
        )

    if (e.correction or "").strip():
        return example(source="correction", answer=e.correction or "", rejected=e.output)
    if e.signal == "edit" and e.final_text:
        return example(source="edit", answer=e.final_text, rejected=e.output if e.polarity < 0 else None)
    if e.polarity <= 0:
        return None
    if e.signal in ("accept", "copy", "outcome"):
        return example(source="accepted", answer=e.output)
    if e.signal == "thumbs_up" or (e.signal == "rating" and (e.value or 0) >= s.positive_rating):
        return example(source="rated", answer=e.output)
    if e.signal == "expert_review" and (e.value or 0) >= s.positive_expert:
        return example(source="expert", answer=e.output)
    return None


def low_quality(ex: Example, s: FinetuneSettings) -> str | None:
    """The first low-quality rule ``ex`` breaks (see the module docstring), or None."""
    answer, query = ex.answer.strip(), ex.query.strip()
    if len(answer) < s.min_answer_chars:
        return "too_short"
    if len(answer) > s.max_chars or len(query) > s.max_chars:
        return "too_long"
    if len(query) < 3:
        return "short_query"
    if normalise(answer) == normalise(query):
        return "repeats_query"
    if ex.rejected is not None and normalise(answer) == normalise(ex.rejected):
        return "correction_equals_output"
    return None


def _scrubbed(ex: Example) -> Example:
    """Defence in depth: text was scrubbed at ingest; nothing leaves the store unscrubbed."""
    ex.query, ex.answer = scrub_text(ex.query), scrub_text(ex.answer)
    if ex.rejected is not None:
        ex.rejected = scrub_text(ex.rejected)
    return ex


def _with_surrogates(ex: Example) -> SurrogateTable:
    """Replace the PII placeholders of ``ex`` in place (query, answer, rejected output alike)."""
    table = SurrogateTable(ex.example_id)
    ex.query, ex.answer = table.fill(ex.query), table.fill(ex.answer)
    if ex.rejected is not None:
        ex.rejected = table.fill(ex.rejected)
    return table


def curate(events: Iterable[StoredEvent], golden_inputs: Sequence[str], s: FinetuneSettings) -> Curated:
    """Examples from ``events`` (any order; they are sorted oldest first), curated as documented above."""
    out = Curated(examples=[], candidates=0, excluded=Counter(dict.fromkeys(EXCLUSIONS, 0)))
    pool: list[Example] = []
    for e in events:
        ex = example_of(e, s)
        if ex is None:
            continue
        out.candidates += 1
        if not e.consent:
            out.exclude("no_consent")
            continue
        ex = _scrubbed(ex)
        rule = low_quality(ex, s)
        if rule is not None:
            out.exclude(f"low_quality.{rule}")
            continue
        pool.append(ex)
    pool.sort(key=lambda x: (x.ts, x.example_id))

    golden_exact = {normalise(g) for g in golden_inputs}
    golden_index = NearDuplicateIndex(s.near_duplicate_threshold)
    golden_index.extend(signatures(list(golden_inputs)))
    query_sigs = signatures([x.query for x in pool])
    clean: list[Example] = []
    for ex, sig in zip(pool, query_sigs, strict=True):
        if normalise(ex.query) in golden_exact:
            out.exclude("golden_overlap.exact")
        elif golden_index.match(sig) is not None:
            out.exclude("golden_overlap.near")
        else:
            clean.append(ex)

    seen: set[tuple[str, str]] = set()
    near = NearDuplicateIndex(s.near_duplicate_threshold)
    distinct: list[Example] = []
    exact_unique = []
    for ex in clean:
        key = (normalise(ex.query), normalise(ex.answer))
        if key in seen:
            out.exclude("duplicates.exact")
            continue
        seen.add(key)
        exact_unique.append(ex)
    for ex, sig in zip(exact_unique, signatures([f"{x.query}\n{x.answer}" for x in exact_unique]), strict=True):
        if near.match(sig) is not None:
            out.exclude("duplicates.near")
            continue
        near.add(sig)
        distinct.append(ex)

    per_user: Counter[str] = Counter()
    for ex in distinct:
        if per_user[ex.user] >= s.per_user_cap:
            out.exclude("per_user_cap")
            continue
        per_user[ex.user] += 1
        out.surrogates += _with_surrogates(ex).kinds()
        out.examples.append(ex)
    return out


def split(examples: Sequence[Example], validation_fraction: float) -> tuple[list[Example], list[Example]]:
    """Stratified by source, stable: within each source the examples whose id hashes lowest validate."""
    by_source: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_source[ex.source].append(ex)
    validation_ids: set[str] = set()
    for group in by_source.values():
        ranked = sorted(group, key=lambda x: hashlib.sha256(x.example_id.encode()).hexdigest())
        n_val = round(validation_fraction * len(group))
        if len(group) >= 2:
            n_val = min(max(n_val, 1 if validation_fraction > 0 else 0), len(group) - 1)
        validation_ids.update(x.example_id for x in ranked[:n_val])
    train = [x for x in examples if x.example_id not in validation_ids]
    validation = [x for x in examples if x.example_id in validation_ids]
    return train, validation


# ------------------------------------------------------------------------------------------------
def chat_record(system_prompt: str | None, query: str, answer: str) -> dict[str, Any]:
    """One line of the OpenAI chat fine-tuning format."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def preference_record(system_prompt: str | None, ex: Example) -> dict[str, Any]:
    """One line of the OpenAI preference (DPO) fine-tuning format."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": ex.query})
    return {
        "input": {"messages": messages},
        "preferred_output": [{"role": "assistant", "content": ex.answer}],
        "non_preferred_output": [{"role": "assistant", "content": ex.rejected}],
    }


def dataset_version(system_prompt: str | None, train: Sequence[Example], validation: Sequence[Example]) -> str:
    doc = {
        "system": system_prompt or "",
        "train": [x.row() for x in train],
        "validation": [x.row() for x in validation],
        "preference": [[x.example_id, x.answer, x.rejected] for x in (*train, *validation) if x.rejected is not None],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


@dataclass
class BuiltDataset:
    """Where a dataset version lives and what it holds (``card.json`` has the same)."""

    version: str
    path: str
    jsonl: str
    validation_jsonl: str
    preference_jsonl: str
    examples: int
    train: int
    validation: int
    preference_pairs: int
    excluded: dict[str, int]
    sources: dict[str, int]
    candidates: int
    excluded_rules: dict[str, int] = field(default_factory=dict)
    surrogates: dict[str, int] = field(default_factory=dict)  # PII stand-ins by kind, see improvers/surrogates.py
    system_prompt_version: str | None = None
    reused: bool = False

    def public(self) -> dict[str, Any]:
        return {"built": True, **asdict(self)}


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def card_markdown(b: BuiltDataset, s: FinetuneSettings) -> str:
    excluded = "\n".join(f"| {k} | {v} |" for k, v in b.excluded.items())
    rules = "\n".join(f"| {k} | {v} |" for k, v in b.excluded_rules.items())
    surrogates = ", ".join(f"{k} {v}" for k, v in b.surrogates.items()) or "none"
    sources = "\n".join(f"| {k} | {v} |" for k, v in sorted(b.sources.items()))
    return f"""# Flywheel fine-tune dataset `{b.version}`

Built from consented user feedback by `flywheel dataset build`. The version is a hash of the content:
the same feedback gives the same version.

- examples: {b.examples} (train {b.train}, validation {b.validation}; stratified by source, stable by id)
- preference pairs (chosen = the user's correction or edit, rejected = the model's output): {b.preference_pairs}
- events that would have given an example, before curation: {b.candidates}
- system prompt: production prompt version {b.system_prompt_version or "none"}

## Sources
| source | examples |
|---|---|
{sources}

## Exclusions
| reason | events |
|---|---|
{excluded}

By rule:

| rule | events |
|---|---|
{rules}

Rules: near-duplicate threshold {s.near_duplicate_threshold} (MinHash, character 5-grams of query and
answer; the same estimate against golden inputs), per-user cap {s.per_user_cap}, answers of
{s.min_answer_chars}..{s.max_chars} characters, no correction equal to the output.
Events without consent never enter.

## PII
Text was scrubbed at ingest (e-mails, phones, cards, IPs, IBANs, SSNs, street addresses, names and
secrets became a placeholder per kind) and scrubbed again when this dataset was built. The
placeholders were then replaced by realistic surrogates from Faker, seeded by the example id, so the same
feedback gives the same files: the n-th placeholder of a kind in an example's query, answer and
rejected output stands for the same surrogate. No placeholder and no original value is in these files.
Surrogates made: {surrogates}.

## Files
- `train.jsonl`, `validation.jsonl`: OpenAI chat fine-tuning format
- `preference.jsonl`: OpenAI preference (DPO) format
- `sft/`, `preference/`: the same as Hugging Face datasets (`datasets.load_from_disk`)
"""


def write_dataset(
    curated: Curated,
    root: Path,
    system_prompt: str | None,
    s: FinetuneSettings,
    system_prompt_version: str | None = None,
) -> BuiltDataset:
    """Write a dataset version under ``root/<version>`` (reused when it exists: same content, same files)."""
    import datasets

    datasets.disable_progress_bars()
    train, validation = split(curated.examples, s.validation_fraction)
    version = dataset_version(system_prompt, train, validation)
    final = root / version
    pairs = [x for x in (*train, *validation) if x.rejected is not None]
    built = BuiltDataset(
        version=version,
        path=str(final),
        jsonl=str(final / "train.jsonl"),
        validation_jsonl=str(final / "validation.jsonl"),
        preference_jsonl=str(final / "preference.jsonl"),
        examples=len(curated.examples),
        train=len(train),
        validation=len(validation),
        preference_pairs=len(pairs),
        excluded=dict(curated.excluded),
        sources=dict(Counter(x.source for x in curated.examples)),
        candidates=curated.candidates,
        excluded_rules=dict(sorted(curated.excluded_rules.items())),
        surrogates=dict(sorted(curated.surrogates.items())),
        system_prompt_version=system_prompt_version,
    )
    if (final / "card.json").exists():
        built.reused = True
        return built
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".{version}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    columns = ("id", "source", "query", "answer")
    as_columns = lambda rows: {c: [r.row()[c] for r in rows] for c in columns}  # noqa: E731
    features = datasets.Features({c: datasets.Value("string") for c in columns})
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(as_columns(train), features=features),
            "validation": datasets.Dataset.from_dict(as_columns(validation), features=features),
        }
    ).save_to_disk(str(work / "sft"))
    pair_cols = ("id", "source", "query", "chosen", "rejected")
    datasets.Dataset.from_dict(
        {
            "id": [x.example_id for x in pairs],
            "source": [x.source for x in pairs],
            "query": [x.query for x in pairs],
            "chosen": [x.answer for x in pairs],
            "rejected": [x.rejected or "" for x in pairs],
        },
        features=datasets.Features({c: datasets.Value("string") for c in pair_cols}),
    ).save_to_disk(str(work / "preference"))
    _write_jsonl(work / "train.jsonl", (chat_record(system_prompt, x.query, x.answer) for x in train))
    _write_jsonl(work / "validation.jsonl", (chat_record(system_prompt, x.query, x.answer) for x in validation))
    _write_jsonl(work / "preference.jsonl", (preference_record(system_prompt, x) for x in pairs))
    card = asdict(built)
    card["settings"] = s.model_dump(
        include={
            "near_duplicate_threshold",
            "per_user_cap",
            "validation_fraction",
            "min_answer_chars",
            "max_chars",
            "positive_rating",
            "positive_expert",
        }
    )
    for name in ("path", "jsonl", "validation_jsonl", "preference_jsonl", "reused"):
        card.pop(name)
    (work / "README.md").write_text(card_markdown(built, s), encoding="utf-8")
    (work / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True), encoding="utf-8")
    work.rename(final)  # whole or not at all: a crash mid-write leaves only the .partial directory
    return built
