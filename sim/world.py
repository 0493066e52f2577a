"""The demo world: knowledge documents, a golden set and realistic feedback, written to a directory.

Everything is generated from a seeded RNG, so the same seed gives byte-identical files. The
feedback is what users of the simulator's product model (with ``INITIAL_PROMPT`` and the outdated
knowledge) would send: mostly positive signal on the intents it answers well, and on its failure
modes downvotes with and without reasons, low ratings, corrections, edits, dismissals and expert
reviews; about 15% of users without consent; PII in some texts; one loud user; a few malformed lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from evals.pipeline import context_block as pipeline_context
from sim.rules import (
    CURRENT,
    ERROR_CODES,
    INTENTS,
    INTENTS_BY_ID,
    MEMORY,
    PRODUCT,
    Intent,
    correct_answer,
    golden_expectation,
    is_correct,
    product_answer,
)

INITIAL_PROMPT = (
    f"You are the customer support assistant for {PRODUCT}, a cloud storage service. "
    "Answer the customer's question clearly and concisely. "
    "Use the context documents when they are provided."
)
WORLD_END = datetime(2026, 11, 20, tzinfo=timezone.utc)
WORLD_DAYS = 14

REASON_FOR_CATEGORY = {
    "factual": "wrong",
    "outdated_knowledge": "outdated",
    "format": "format",
    "tone": "tone",
    "off_topic": "off_topic",
    "unsafe": "unsafe",
}
COMMENTS = {
    "factual": ["the yearly total is wrong", "that's the monthly price, I asked per year", "math is off"],
    "outdated_knowledge": ["this price is old", "that limit changed last month", "outdated info"],
    "format": ["I asked for JSON", "not JSON, my script broke", "please return JSON only"],
    "tone": ["no empathy at all", "felt dismissive", "a bit rude given my situation"],
    "off_topic": ["why does a support bot write poems?", "should have declined", "not what this bot is for"],
    "unsafe": ["it leaked another customer's email!", "privacy violation", "this shares personal data"],
}
OPENERS = ["", "", "", "Hi, ", "Hello! ", "Quick question: ", "Hey there, ", "Sorry to bother you, "]
CLOSERS = ["", "", "", " Thanks!", " Thank you.", " pls help", " Cheers.", " Asap please."]

# Knowledge documents: what the knowledge source says now (outdated) and its corrections.
KNOWLEDGE_DOCS: dict[str, str] = {
    "pricing.md": (
        "# Nimbus Drive pricing\n\n"
        f"The Free plan includes {MEMORY['free_storage']} GB of storage.\n\n"
        f"The Pro plan costs ${MEMORY['pro_price']} per month and includes 2 TB of storage.\n\n"
        "The Team plan costs $8 per seat per month and includes 1 TB of storage per seat.\n\n"
        "The Business plan costs $15 per seat per month and includes 5 TB of storage per seat.\n"
    ),
    "uploads.md": (
        "# Uploading files\n\n"
        "Drag files into the browser window or use the desktop app.\n\n"
        f"The maximum upload size is {MEMORY['upload_limit']} GB per file.\n"
    ),
    "account.md": (
        "# Your account\n\n"
        "To reset your password, go to Settings > Security and choose Reset password; we email you a reset link.\n\n"
        "To export your data, use Settings > Data > Export to download a ZIP archive of all your files.\n"
    ),
    "sharing.md": "# Sharing\n\nOpen the folder, click Share, and enter your teammates' email addresses.\n",
    "security.md": "# Security\n\nTurn on two-factor authentication under Settings > Security > Two-factor.\n",
    "sync.md": "# Sync\n\nIf sync stops, sign out of the desktop app and sign back in; sync restarts on its own.\n",
}
KNOWLEDGE_UPDATES: dict[str, str] = {
    "pricing.md": KNOWLEDGE_DOCS["pricing.md"]
    .replace(f"includes {MEMORY['free_storage']} GB", f"includes {CURRENT['free_storage']} GB")
    .replace(f"costs ${MEMORY['pro_price']} per month", f"costs ${CURRENT['pro_price']} per month"),
    "uploads.md": KNOWLEDGE_DOCS["uploads.md"].replace(
        f"is {MEMORY['upload_limit']} GB", f"is {CURRENT['upload_limit']} GB"
    ),
}


@dataclass(frozen=True)
class Traffic:
    intent: str
    weight: float


# Share of traffic per intent: half well-served, half failure modes of different sizes.
TRAFFIC: tuple[Traffic, ...] = (
    Traffic("reset_password", 0.14),
    Traffic("share_folder", 0.12),
    Traffic("export_data", 0.12),
    Traffic("two_factor", 0.12),
    Traffic("pro_price", 0.07),
    Traffic("free_storage", 0.05),
    Traffic("upload_limit", 0.05),
    Traffic("yearly_cost", 0.08),
    Traffic("plan_json", 0.07),
    Traffic("sync_angry", 0.07),
    Traffic("poem", 0.05),
    Traffic("other_account", 0.06),
)


def fill_slots(intent: Intent, rng: random.Random) -> dict[str, str]:
    slots = {
        "n": str(rng.randint(2, 40)),
        "account": str(rng.randint(1000, 9999)),
        "plan": rng.choice(["Team", "Business"]),
    }
    if intent.id == "error_code":
        slots["code"] = rng.choice(sorted(ERROR_CODES))
    return slots


def make_query(intent: Intent, rng: random.Random, template: str | None = None) -> tuple[str, dict[str, str]]:
    """A paraphrase of the intent with realistic openers and closers; returns the query and its slots."""
    slots = fill_slots(intent, rng)
    text = (template or rng.choice(intent.templates)).format(**slots)
    query = rng.choice(OPENERS) + (text[0].lower() + text[1:] if rng.random() < 0.3 else text) + rng.choice(CLOSERS)
    return query.strip(), intent.slots(query)


def _pii_suffix(rng: random.Random, user: str) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f" My email is {user.replace('-', '.')}@example.com."
    if kind == 1:
        return f" You can call me at +1 415 555 {rng.randint(1000, 9999)}."
    if kind == 2:
        return f" My IP is 203.0.113.{rng.randint(1, 254)}."
    return " My card is 4111 1111 1111 1111, is that ok?"


def context_block(documents: dict[str, str], names: tuple[str, ...]) -> str:
    """The named documents as the product pipeline passes retrieved context (its own format)."""
    return pipeline_context([(name, documents[name]) for name in names if name in documents])


def generate_feedback(seed: int = 7, n_events: int = 4000, n_users: int = 800,
                      n_error_code: int = 1600) -> Iterator[dict[str, Any]]:
    """Feedback events as users of the initial product would send them (valid events only)."""
    rng = random.Random(seed)
    users = [f"u-{i:04d}" for i in range(n_users)]
    consent = {u: rng.random() >= 0.15 for u in users}
    weights = [t.weight for t in TRAFFIC]
    start = WORLD_END - timedelta(days=WORLD_DAYS)
    stamps = sorted(rng.uniform(0, WORLD_DAYS * 86400) for _ in range(n_events))
    for i, offset in enumerate(stamps):
        user = rng.choice(users)
        intent = INTENTS_BY_ID[rng.choices(TRAFFIC, weights)[0].intent]
        query, slots = make_query(intent, rng)
        if rng.random() < 0.06:
            query += _pii_suffix(rng, user)
        system = INITIAL_PROMPT + context_block(KNOWLEDGE_DOCS, intent.documents)
        output = product_answer(system, query)
        event: dict[str, Any] = {
            "event_id": f"ev-{i:06d}",
            "ts": (start + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z"),
            "user_id": user,
            "session_id": f"s-{user}-{int(offset // 3600)}",
            "consent": consent[user],
            "query": query,
            "output": output,
            "model": "gpt-4o-mini",
            "prompt_version": "1",
            "confidence": round(rng.uniform(0.55, 0.95) if is_correct(intent, slots, output) else rng.uniform(0.3, 0.8), 2),
            "context_ids": list(intent.documents),
        }
        event.update(_signal_for(intent, slots, output, rng))
        yield event
    yield from _loud_user(rng, start)
    yield from _error_code_feedback(rng, start, users, consent, n_error_code)


def _signal_for(intent: Intent, slots: dict[str, str], output: str, rng: random.Random) -> dict[str, Any]:
    if is_correct(intent, slots, output):
        r = rng.random()
        if r < 0.35:
            return {"signal": "thumbs_up"}
        if r < 0.55:
            return {"signal": "accept"}
        if r < 0.70:
            return {"signal": "copy"}
        if r < 0.85:
            return {"signal": "rating", "value": rng.choice([4, 5, 5])}
        if r < 0.95:
            return {"signal": "outcome", "value": 1}
        return {"signal": "thumbs_down"}  # noise: a downvote on a good answer, no reason
    category = intent.category
    reason = REASON_FOR_CATEGORY[category]
    right = correct_answer(intent, slots)
    r = rng.random()
    if r < 0.45:
        out = {"signal": "thumbs_down", "reason": reason}
        if rng.random() < 0.5:
            out["comment"] = rng.choice(COMMENTS[category])
        return out
    if r < 0.65:
        return {"signal": "thumbs_down"}
    if r < 0.75:
        return {"signal": "rating", "value": rng.choice([1, 2]), **({"reason": reason} if rng.random() < 0.5 else {})}
    if r < 0.85:
        return {"signal": "correction", "correction": right, "reason": reason}
    if r < 0.90:
        return {"signal": "edit", "final_text": right}
    if r < 0.95:
        return {"signal": "dismiss"}
    return {
        "signal": "expert_review",
        "value": 0.1,
        "reason": reason,
        "comment": "Reviewer: " + rng.choice(COMMENTS[category]),
    }


# Error codes: the failure only fine-tuning fixes. Users describe what they were doing; a support
# agent answers in the conversation and the correction is logged as feedback.
ERROR_ACTIVITIES = (
    "uploading a video", "syncing my laptop", "opening a shared folder", "moving files to a team folder",
    "signing in on my phone", "restoring a file from the Trash", "downloading an export", "renaming a folder",
    "sharing a link with a client", "connecting the desktop app", "uploading photos", "saving a document from Word",
    "copying a large project folder", "installing the desktop app", "inviting a new teammate", "editing a spreadsheet",
)
ERROR_PLACES = (
    "on Windows 11", "on my MacBook", "in the web app", "on my Android phone", "on my iPhone", "on Linux",
    "on the office PC", "in Chrome", "in Safari", "on my tablet",
)
ERROR_TEMPLATES = (
    "I keep getting error {code} when {activity} {place}. What does it mean?",
    "Error {code} popped up while {activity} {place}. What is going on?",
    "What does error code {code} mean? It happened when {activity} {place}.",
    "While {activity} {place} I got error {code}. What does that error mean?",
    "Got error code {code} after {activity} {place}, any idea what it means?",
    "Every time I try {activity} {place} it fails with error {code}. Can you explain the error?",
)
AGENT_LEADS = ("", "", "Thanks for reaching out. ", "Sorry for the trouble with {activity}. ", "Good question. ",
               "I checked this for you. ")
AGENT_TAILS = ("", " Let us know if it happens again.", " That should clear it up.", " It works the same {place}.",
               " Reply here if it keeps failing.")


def _error_code_feedback(rng: random.Random, start: datetime, users: list[str], consent: dict[str, bool],
                         n: int) -> Iterator[dict[str, Any]]:
    """Questions about error codes, answered wrongly by the product model and corrected by support agents."""
    intent = INTENTS_BY_ID["error_code"]
    codes = sorted(ERROR_CODES)
    for k in range(n):
        user = rng.choice(users)
        code, activity, place = rng.choice(codes), rng.choice(ERROR_ACTIVITIES), rng.choice(ERROR_PLACES)
        query = rng.choice(OPENERS) + rng.choice(ERROR_TEMPLATES).format(code=code, activity=activity, place=place)
        query = (query + rng.choice(CLOSERS)).strip()
        offset = rng.uniform(0, WORLD_DAYS * 86400)
        event: dict[str, Any] = {
            "event_id": f"ev-err-{k:05d}",
            "ts": (start + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z"),
            "user_id": user, "session_id": f"s-{user}-{int(offset // 3600)}", "consent": consent[user],
            "query": query, "output": product_answer(INITIAL_PROMPT, query), "model": "gpt-4o-mini",
            "prompt_version": "1", "confidence": round(rng.uniform(0.3, 0.7), 2), "context_ids": [],
        }
        if rng.random() < 0.85:
            meaning, fix = ERROR_CODES[code]
            answer = (rng.choice(AGENT_LEADS).format(activity=activity) + f"Error {code} means {meaning}. {fix}"
                      + rng.choice(AGENT_TAILS).format(place=place))
            event.update({"signal": "correction", "correction": answer, "reason": "wrong",
                          "comment": "corrected by a support agent", "metadata": {"corrected_by": "support"}})
        else:
            event.update({"signal": "thumbs_down", "reason": "wrong", "comment": "that's not what this error means"})
        assert intent.match(" " + query.lower())
        yield event


def _loud_user(rng: random.Random, start: datetime) -> Iterator[dict[str, Any]]:
    """One user who downvotes the same good answer two hundred times."""
    intent = INTENTS_BY_ID["share_folder"]
    for k in range(200):
        query, _ = make_query(intent, rng, intent.templates[0])
        yield {
            "event_id": f"ev-loud-{k:04d}",
            "ts": (start + timedelta(days=3, minutes=7 * k)).isoformat().replace("+00:00", "Z"),
            "user_id": "u-loud",
            "consent": True,
            "query": query,
            "output": product_answer(INITIAL_PROMPT, query),
            "signal": "thumbs_down",
            "reason": "other",
            "comment": "I just don't like it",
        }


MALFORMED_LINES = (
    '{"event_id": "bad-1", "ts": "2026-11-10T10:00:00Z", "signal": "thumbs_down", "query": "truncated',
    '{"event_id": "bad-2", "ts": "2026-11-10T10:00:00Z", "signal": "rating", "query": "q", "output": "o"}',
    '{"event_id": "bad-3", "ts": "2026-11-10 10:00:00", "signal": "thumbs_up", "query": "q", "output": "o"}',
)


GOLDEN_PER_INTENT = {"general": 12, "outdated_knowledge": 12}  # every other failure category: 24


def generate_golden(seed: int = 11) -> list[dict[str, Any]]:
    """At least 200 items across the world's categories, unique inputs, scorers chosen per intent."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for intent in INTENTS:
        wanted = GOLDEN_PER_INTENT.get(intent.category, 24)
        seen: set[str] = set()
        k = 0
        while k < wanted:
            template = intent.templates[k % len(intent.templates)]
            query, slots = make_query(intent, rng, template)
            if query in seen:
                continue
            seen.add(query)
            scorer, expected = golden_expectation(intent, slots)
            item = {
                "id": f"g-{intent.id}-{k:03d}",
                "input": query,
                "expected": expected,
                "category": intent.category,
                "scorer": scorer,
                "tags": [intent.id],
            }
            if intent.documents:
                item["documents"] = list(intent.documents)
            items.append(item)
            k += 1
    return items


def _write_jsonl(path: Path, rows: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_world(directory: Path, *, seed: int = 7, n_events: int = 4000, malformed: bool = True) -> dict[str, Any]:
    """Write the world into ``directory``; returns what was written (counts and paths)."""
    directory.mkdir(parents=True, exist_ok=True)
    feedback = directory / "feedback.jsonl"
    n = _write_jsonl(feedback, generate_feedback(seed, n_events))
    if malformed:
        with feedback.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(MALFORMED_LINES) + "\n")
    golden = generate_golden()
    _write_jsonl(directory / "golden.jsonl", golden)
    for folder, docs in (("knowledge", KNOWLEDGE_DOCS), ("knowledge_updates", KNOWLEDGE_UPDATES)):
        (directory / folder).mkdir(exist_ok=True)
        for name, text in docs.items():
            (directory / folder / name).write_text(text, encoding="utf-8")
    (directory / "prompt.txt").write_text(INITIAL_PROMPT + "\n", encoding="utf-8")
    (directory / "flywheel.toml").write_text(
        "# Written by `flywheel sim world`: the simulator's demo world.\n"
        "# Feedback to ingest: feedback.jsonl; the champion prompt to start from: prompt.txt.\n"
        'golden = "golden.jsonl"\n'
        'knowledge_source = "knowledge"\n',
        encoding="utf-8",
    )
    return {
        "directory": str(directory),
        "feedback_events": n,
        "malformed_lines": len(MALFORMED_LINES) if malformed else 0,
        "golden_items": len(golden),
        "knowledge_documents": len(KNOWLEDGE_DOCS),
        "knowledge_updates": len(KNOWLEDGE_UPDATES),
    }
