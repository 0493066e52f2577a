"""Feedback for the golden-lifecycle tests: open failure clusters with corrections, expert reviews,
an edit, text without consent that carries a marker no proposal may ever show, and PII."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Cli, event, write_jsonl

# Text of users who did not consent: it must never reach a proposal, the golden file or a model.
SECRET_MARKERS = ("ZEBRA-7781", "QUOKKA-5512", "WOMBAT-3141")
SYNC_FIX = "I'm sorry about the trouble with syncing. Sign out of the desktop app, sign back in, and sync will restart."
TEAM_JSON = '{"plan": "team", "price_per_seat_usd": 8, "storage_tb_per_seat": 1}'


def _at(n: int) -> str:
    return f"2026-11-{10 + n // 24:02d}T{n % 24:02d}:00:00+00:00"


def feedback_rows() -> list[dict[str, Any]]:
    angry = "Sync is broken again and I'm furious. How do I fix it?"
    rows = [
        # tone: consented corrections from three users, one near-duplicate of the first, one without consent
        event(
            "t1",
            ts=_at(1),
            user_id="u-1",
            signal="correction",
            reason="tone",
            query=angry,
            output="Sign out and back in.",
            correction=SYNC_FIX,
        ),
        event(
            "t2",
            ts=_at(2),
            user_id="u-2",
            signal="correction",
            reason="tone",
            query="My files keep failing to sync and I'm really angry, what do I do?",
            output="Sign out and back in.",
            correction=SYNC_FIX,
        ),
        event(
            "t3",
            ts=_at(3),
            user_id="u-3",
            signal="edit",
            reason="tone",
            query="Third sync failure today, I'm so frustrated with this app. Help!",
            output="Sign out and back in.",
            final_text="I'm so sorry, that is frustrating. " + SYNC_FIX,
        ),
        event(
            "t4",
            ts=_at(4),
            user_id="u-4",
            signal="correction",
            reason="tone",
            consent=False,
            query=f"Sync broke again {SECRET_MARKERS[0]} and I'm livid, fix it now",
            output="Sign out.",
            correction=f"{SECRET_MARKERS[0]}: sorry! " + SYNC_FIX,
        ),
        event(
            "t5",
            ts=_at(5),
            user_id="u-5",
            signal="correction",
            reason="tone",
            query="Sync is broken and I'm upset. My email is jane.doe@example.com, write me.",
            output="Sign out.",
            correction=SYNC_FIX,
        ),
        event(
            "t6",
            ts=_at(6),
            user_id="u-6",
            signal="correction",
            reason="tone",
            query="Hi! " + angry + " Thanks.",
            output="Sign out and back in.",
            correction=SYNC_FIX,
        ),
        event(
            "t7",
            ts=_at(7),
            user_id="u-7",
            signal="thumbs_down",
            reason="tone",
            query="Syncing failed again, I'm angry. What now?",
            output="Sign out.",
        ),
        # outdated knowledge: one already in the golden set of the duplicate test, one new
        event(
            "o1",
            ts=_at(8),
            user_id="u-1",
            signal="correction",
            reason="outdated",
            query="How much does the Pro plan cost?",
            output="The Pro plan costs $10 per month.",
            correction="The Pro plan costs $12 per month.",
        ),
        event(
            "o2",
            ts=_at(9),
            user_id="u-2",
            signal="correction",
            reason="outdated",
            query="How much does the Pro plan cost per month?",
            output="The Pro plan costs $10 per month.",
            correction="The Pro plan costs $12 per month. Call +1 415 555 0134 for annual billing.",
        ),
        event(
            "o3",
            ts=_at(10),
            user_id="u-3",
            signal="thumbs_down",
            reason="outdated",
            query="What does Nimbus Pro cost?",
            output="The Pro plan costs $10 per month.",
        ),
        # format: an expert's correction, an expert's approval of a similar answer, a refused approval
        event(
            "f1",
            ts=_at(11),
            user_id="expert-1",
            signal="expert_review",
            value=0.1,
            reason="format",
            query="Send me the Team plan as JSON",
            output="The Team plan costs $8 per seat.",
            correction=TEAM_JSON,
        ),
        event(
            "f2",
            ts=_at(12),
            user_id="u-8",
            signal="thumbs_down",
            reason="format",
            query="Send me the Business plan as JSON please",
            output="The Business plan costs $15 per seat.",
        ),
        event(
            "f3",
            ts=_at(13),
            user_id="expert-2",
            signal="expert_review",
            value=0.95,
            query="Can I get the Team plan price and storage in JSON format?",
            output=TEAM_JSON,
        ),
        event(
            "f4",
            ts=_at(14),
            user_id="expert-3",
            signal="expert_review",
            value=0.9,
            consent=False,
            query=f"Send me the Team plan as JSON {SECRET_MARKERS[1]}",
            output=f'{{"plan": "{SECRET_MARKERS[1]}"}}',
        ),
        event(
            "f5",
            ts=_at(15),
            user_id="u-9",
            signal="thumbs_down",
            reason="format",
            consent=False,
            query=f"Team plan as JSON {SECRET_MARKERS[2]}",
            output="The Team plan costs $8.",
            comment=SECRET_MARKERS[2],
        ),
        # happy users: positive, never proposed
        event(
            "p1",
            ts=_at(16),
            user_id="u-10",
            signal="thumbs_up",
            query="How do I reset my password?",
            output="Go to Settings > Security and choose Reset password.",
        ),
    ]
    return rows


def seed_feedback(cli: Cli, directory: Path | None = None) -> Path:
    path = write_jsonl((directory or Path(".")) / "golden-feedback.jsonl", feedback_rows())
    out = cli("ingest", str(path), "--json")
    assert out["accepted"] == len(feedback_rows()) and out["rejected"] == 0
    return path
