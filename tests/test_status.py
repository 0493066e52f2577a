"""`flywheel --version` and `flywheel status`: what a person reads, and the one JSON document of
`--json` with its times as ISO 8601."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import event, write_jsonl
from flywheel.candidates import Candidate
from flywheel.config import load_settings
from flywheel.state import open_state
from flywheel.wording import ago, iso_and_ago


def test_version_prints_the_installed_package_version(cli) -> None:
    expected = f"flywheel {importlib.metadata.version('flywheel')}"
    assert cli("--version").stdout.strip() == expected
    assert cli("-V").stdout.strip() == expected


def test_relative_times_read_as_a_person_says_them() -> None:
    now = datetime(2026, 12, 5, 7, 13, 30, tzinfo=UTC)
    assert iso_and_ago(now - timedelta(minutes=3, seconds=30), now) == "2026-12-05T07:10:00Z (3 min ago)"
    assert ago(now - timedelta(seconds=20), now) == "just now"
    assert ago(now - timedelta(hours=5), now) == "5 h ago"
    assert ago(now - timedelta(days=3, hours=1), now) == "3 days ago"
    assert ago(now + timedelta(minutes=10), now) == "in 10 min"


def _state_with_a_cycle_and_a_pending_candidate(cli, tmp_path: Path) -> datetime:
    """Three events (two negative), a prompt, a cycle that started 3 h 30 min ago, one pending candidate."""
    src = write_jsonl(tmp_path / "fb.jsonl", [event("e1"), event("e2", user_id="u-2"), event("e3", signal="thumbs_up")])
    cli("ingest", str(src), "--json")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are the support assistant of Nimbus.")
    cli("prompt", "set", str(prompt), "--json")
    settings = load_settings()
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3, minutes=30)
    with open_state(settings) as state:
        state.start_cycle("cyc-1")
        state.finish_cycle("cyc-1", "done", "g1", 0.625, {})
        cand = Candidate(
            candidate_id="prompt-abc",
            cycle_id="cyc-1",
            kind="prompt",
            cluster_ids=["format-1"],
            parent="1",
            version="2",
            decision="pending_approval",
            payload={"template": "x"},
        )
        state.add_candidate(cand)
        state.save_candidate(cand)
    with sqlite3.connect(settings.home / "state.sqlite") as db:  # as if the cycle had run earlier
        db.execute(
            "UPDATE cycles SET started_at = ?, finished_at = ?",
            (started.timestamp(), (started + timedelta(minutes=2)).timestamp()),
        )
    return started


def test_status_json_has_iso_times_and_every_key(cli, tmp_path: Path) -> None:
    started = _state_with_a_cycle_and_a_pending_candidate(cli, tmp_path)
    doc = cli("status", "--json")
    assert doc["champions"] == {"prompt": "1", "index": None, "model": doc["champions"]["model"]}
    assert (doc["pending_approvals"], doc["pending"][0]["candidate_id"]) == (1, "prompt-abc")
    assert (doc["negative_feedback_rate"], doc["negative_events"], doc["events"]) == (round(2 / 3, 4), 2, 3)
    assert set(doc) >= {"events_since_last_cycle", "loop_velocity_hours", "last_cycle_at", "promotions"}
    last = doc["last_cycle"]
    assert last["cycle_id"] == "cyc-1" and last["champion_score"] == 0.625
    assert datetime.fromisoformat(last["started_at"]) == started  # ISO with its offset, not an epoch
    assert datetime.fromisoformat(last["finished_at"]) == started + timedelta(minutes=2)
    assert datetime.fromisoformat(last["started_at"]).tzinfo is not None


def test_status_without_json_is_a_readable_summary(cli, tmp_path: Path) -> None:
    started = _state_with_a_cycle_and_a_pending_candidate(cli, tmp_path)
    out = cli("status").stdout
    try:
        json.loads(out)
        raise AssertionError("status printed JSON without --json")
    except json.JSONDecodeError:
        pass
    lines = {line.split("  ")[0]: " ".join(line.split()) for line in out.splitlines() if line.strip()}
    assert lines["champion prompt"].endswith("v1")
    assert lines["champion index"].startswith("champion index none")
    assert lines["pending approvals"] == "pending approvals 1: prompt-abc"
    assert lines["negative feedback"] == "negative feedback 66.7% (2 of 3 events)"
    assert lines["loop velocity"] == "loop velocity no fix promoted yet"
    assert re.fullmatch(
        rf"last cycle cyc-1, done, started {re.escape(started.strftime('%Y-%m-%dT%H:%M:%SZ'))} \(3 h ago\), "
        r"champion score 0\.625",
        lines["last cycle"],
    ), lines["last cycle"]


def test_the_printed_mlflow_ui_command_runs_as_printed(monkeypatch, tmp_path: Path) -> None:
    import shlex
    import subprocess
    import sys

    from flywheel.app.where_to_look import mlflow_ui_command

    venv_bin = Path(sys.executable).absolute().parent
    uri = f"sqlite:///{tmp_path}/my home/mlflow.db"
    # From the project directory (the venv below it): the path as a person would type it.
    project = venv_bin.parent.parent
    monkeypatch.chdir(project)
    words = shlex.split(mlflow_ui_command(uri))
    assert words[0] == str((venv_bin / "mlflow").relative_to(project)) and "/" in words[0]  # not a bare `mlflow`
    assert words[1:] == ["ui", "--backend-store-uri", uri, "--workers", "1"]  # the space survives the shell
    assert subprocess.run([words[0], "--version"], capture_output=True, text=True, cwd=project).returncode == 0
    # From anywhere else: the absolute path.
    monkeypatch.chdir(tmp_path)
    words = shlex.split(mlflow_ui_command(uri))
    assert words[0] == str(venv_bin / "mlflow")
    assert subprocess.run([words[0], "--version"], capture_output=True, text=True, cwd=tmp_path).returncode == 0
