"""The weekly feedback review: worst-rated outputs by cluster, the negative-rate trend, consent,
and the flow that publishes it as Prefect artifacts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import event, write_jsonl

UNTIL = datetime(2026, 11, 22, 12, tzinfo=UTC)


def _week(rows: list, weeks_back: int, total: int, negative: int, tag: str) -> None:
    """``total`` events ``weeks_back`` weeks before UNTIL, the first ``negative`` of them negative."""
    for i in range(total):
        ts = (UNTIL - timedelta(days=7 * weeks_back + 1, hours=i)).isoformat()
        if i < negative:
            signal = {"signal": "thumbs_down", "reason": "format"} if i % 2 else {"signal": "dismiss"}
            rows.append(
                event(
                    f"{tag}-{i}",
                    ts=ts,
                    user_id=f"{tag}u{i}",
                    query=f"Give me the plan {i} as JSON please",
                    output=f"Plan {i} costs $8.",
                    comment=f"{tag} not JSON",
                    **signal,
                )
            )
        else:
            rows.append(
                event(
                    f"{tag}-{i}",
                    ts=ts,
                    user_id=f"{tag}u{i}",
                    signal="thumbs_up",
                    query="How do I reset my password?",
                    output="Settings > Security.",
                )
            )


def _feedback(tmp_path: Path) -> Path:
    rows: list = []
    _week(rows, 2, 10, 2, "w2")
    _week(rows, 1, 10, 5, "w1")
    _week(rows, 0, 10, 8, "w0")
    rows += [
        event(
            f"nc{i}",
            ts=(UNTIL - timedelta(hours=3 + i)).isoformat(),
            user_id=f"x{i}",
            consent=False,
            signal="thumbs_down",
            reason="format",
            query="Give me the plan for project Bluebird as JSON",
            output="Bluebird plan costs $8.",
        )
        for i in range(2)
    ]
    return write_jsonl(tmp_path / "fb.jsonl", rows)


def test_review_groups_the_weeks_worst_outputs_and_shows_the_trend(cli, tmp_path: Path) -> None:
    cli("ingest", str(_feedback(tmp_path)), "--json")
    doc = cli("review", "--until", UNTIL.isoformat(), "--weeks", "3", "--json")
    assert "Bluebird" not in cli.last.stdout  # counted, never shown
    assert [w["rate"] for w in doc["trend"]] == [0.2, 0.5, round(10 / 12, 4)]
    assert doc["direction"].startswith("rising") and doc["negative"] == 10 and doc["events"] == 12
    shown = [e for c in doc["clusters"] for e in c["worst"]]
    assert {e["event_id"].split("-")[0] for e in shown} == {"w0"}  # only this week's events
    assert sum(c["withheld"] for c in doc["clusters"]) == 2 and sum(c["negative"] for c in doc["clusters"]) == 10
    for c in doc["clusters"]:
        strengths = [e["strength"] for e in c["worst"]]
        assert strengths == sorted(strengths, reverse=True) and len(c["worst"]) <= 5
    assert any(e["signal"] == "thumbs_down" for c in doc["clusters"] for e in c["worst"][:1])
    table = cli("review", "--until", UNTIL.isoformat(), "--weeks", "3").stdout
    assert "Worst-rated outputs" in table and "Bluebird" not in table and "83.3%" in table
    cli("review", "--until", "last tuesday", "--json", expect=2)


def test_the_review_flow_publishes_its_artifacts(cli, tmp_path: Path, prefect_api: str) -> None:
    from prefect.artifacts import Artifact

    from flywheel.flows.review import ReviewParameters, weekly_feedback_review

    cli("ingest", str(_feedback(tmp_path)), "--json")
    out = weekly_feedback_review(ReviewParameters(until=UNTIL, weeks=3))
    assert out["negative"] == 10
    report = Artifact.get("flywheel-weekly-review")
    assert report is not None and report.type == "markdown"
    assert "w0 not JSON" in report.data and "Bluebird" not in report.data and "2 without consent" in report.data
    trend = Artifact.get("flywheel-negative-rate-trend")
    rows = json.loads(trend.data) if isinstance(trend.data, str) else trend.data
    assert [r["negative"] for r in rows] == [2, 5, 10]


def _one_user_edit(tmp_path: Path) -> Path:
    """One user's edit this week, long enough that a table row is wider than 80 columns."""
    long_query = "Give me the full migration plan for the analytics workspace with every step listed as JSON please"
    return write_jsonl(
        tmp_path / "edit.jsonl",
        [
            event(
                "ed1",
                ts=(UNTIL - timedelta(hours=5)).isoformat(),
                user_id="solo",
                signal="edit",
                query=long_query,
                output="Plan: migrate things.",
                final_text="Completely different text that the user wrote instead.",
            ),
        ],
    )


def test_the_printed_review_keeps_rows_whole_pluralises_and_shows_an_edits_final_text(cli, tmp_path: Path) -> None:
    cli("ingest", str(_one_user_edit(tmp_path)), "--json")
    doc = cli("review", "--until", UNTIL.isoformat(), "--json")
    (cluster,) = doc["clusters"]
    assert cluster["worst"][0]["final_text"] == "Completely different text that the user wrote instead."
    text = cli("review", "--until", UNTIL.isoformat()).stdout  # stdout is not a terminal here
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows and all(line.endswith("|") for line in rows)  # one row a line, never wrapped at 80 columns
    row = next(line for line in rows if "migration plan" in line)
    assert len(row) > 80 and "Completely different text that the user wrote instead." in row
    assert "1 negative of 1 event this week" in text and "from 1 user" in text
    assert "1 users" not in text and "1 events" not in text


def test_an_empty_window_says_where_the_data_is(cli, tmp_path: Path) -> None:
    later = UNTIL + timedelta(days=60)
    text = cli("review", "--until", later.isoformat()).stdout
    assert "the store holds no events yet" in text
    cli("ingest", str(_one_user_edit(tmp_path)), "--json")
    text = cli("review", "--until", later.isoformat()).stdout
    newest = "2026-11-22T07:00:00Z"
    assert (
        f"No feedback between 2027-01-14T12:00:00Z and 2027-01-21T12:00:00Z; the newest event is from {newest}: "
        f"pass --until {newest}"
    ) in text.splitlines()
    assert "0 of 0" not in text and "0 negative of 0" not in text
    assert cli("review", "--until", newest, "--json")["negative"] == 1  # the suggested window holds it


def test_the_review_gives_loop_velocity_to_the_promotion_and_to_the_verified_fix(cli, settings) -> None:
    from flywheel.candidates import Candidate, Decision, PromptPayload
    from flywheel.state import open_state

    first = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    assert "no fix promoted yet" in cli("review").stdout

    def promoted(cid: str, hours: float, verified: float | None) -> Candidate:
        return Candidate(
            candidate_id=cid,
            cycle_id="cyc-1",
            kind="prompt",
            cluster_ids=[f"c-{cid}"],
            payload=PromptPayload(template="t", cluster_first_seen={f"c-{cid}": first.isoformat()}),
            decision=Decision.promoted,
            decided_at=first + timedelta(hours=hours),
            verified_at=None if verified is None else first + timedelta(hours=verified),
        )

    with open_state(settings) as state:
        state.add_candidate(promoted("a", 10, None))
    doc = cli("review", "--json")
    assert doc["loop_velocity"] == {"promoted_hours": 10.0, "verified_hours": None, "verified_fixes": 0}
    assert "no fix verified on live traffic yet" in cli("review").stdout
    with open_state(settings) as state:
        state.add_candidate(promoted("b", 20, 50))
        state.add_candidate(promoted("c", 30, 70))
    assert cli("review", "--json")["loop_velocity"] == {
        "promoted_hours": 20.0,
        "verified_hours": 60.0,
        "verified_fixes": 2,
    }
    text = cli("review").stdout
    assert "median 20 h" in text and "60 h to its verification" in text and "2 fixes verified" in text
