"""What ingest writes and counts: exact per-process counts, batches committed by size, by age and before an
expensive line, and a quarantine that keeps rejected lines scrubbed and once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import event, write_jsonl
from flywheel.app.cli import app
from flywheel.config import IngestSettings, load_settings
from flywheel.feedback.ingest import ingest_lines
from flywheel.feedback.store import open_store
from flywheel.schemas import IngestReport

FLYWHEEL = Path(sys.executable).parent / "flywheel"


def _line(row: dict) -> bytes:
    return json.dumps(row).encode() + b"\n"


def _stored_count() -> int:
    with open_store(load_settings().resolved_store_url) as store:
        return store.counts()["events"]


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_negative_counts_only_what_this_process_stored(tmp_path: Path, flywheel_home: Path) -> None:
    """Two ingests into one store, interleaved: each reports its own new negatives, not the other's."""
    env = {**os.environ, "FLYWHEEL_INGEST__BATCH_SIZE": "1"}
    slow = subprocess.Popen(
        [str(FLYWHEEL), "ingest", "-", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert slow.stdin is not None
    slow.stdin.write(b"".join(_line(event(f"a{i}", user_id=f"a{i}")) for i in range(3)))
    slow.stdin.flush()
    _wait_for(lambda: _stored_count() == 3)
    other = write_jsonl(tmp_path / "other.jsonl", [event(f"b{i}", user_id=f"b{i}") for i in range(5)] + [event("a0")])
    fast = subprocess.run([str(FLYWHEEL), "ingest", str(other), "--json"], capture_output=True, env=env, check=True)
    slow.stdin.write(_line(event("a3", signal="thumbs_up")) + _line(event("a4")) + _line(event("b0")))
    out, errors = slow.communicate(timeout=120)
    assert slow.returncode == 0, errors
    first, second = json.loads(out), json.loads(fast.stdout)
    assert (first["accepted"], first["duplicates"], first["negative"]) == (5, 1, 4)
    assert (second["accepted"], second["duplicates"], second["negative"]) == (5, 1, 5)


def test_scrubbed_counts_only_newly_stored_events(cli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [event("p1", query="mail me at jane.doe@example.com")])
    assert cli("ingest", str(src), "--json")["scrubbed"] == 1
    again = cli("ingest", str(src), "--json")
    assert (again["accepted"], again["duplicates"], again["scrubbed"]) == (0, 1, 0)


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ingest(lines: Iterator[bytes], settings, clock=None) -> IngestReport:
    settings.ensure_home()
    report = IngestReport()
    with open_store(settings.resolved_store_url) as store:
        kwargs = {"clock": clock} if clock else {}
        ingest_lines(lines, "gen", store, settings.quarantine_dir, IngestSettings(), report, **kwargs)
    return report


def test_a_batch_open_for_a_second_is_committed_before_the_next_line(settings) -> None:
    clock = _Clock()
    seen_before: list[int] = []

    def lines() -> Iterator[bytes]:
        yield _line(event("e1"))
        yield _line(event("e2"))
        clock.now += 1.5  # the next line is slow to arrive (or the previous one slow to scrub)
        yield _line(event("e3"))
        seen_before.append(_stored_count())  # asked for line 4: what is committed already?
        yield _line(event("e4"))

    report = _ingest(lines(), settings, clock)
    assert report.accepted == 4
    assert seen_before == [2]  # e1 and e2, committed before e3 was processed; e3 waits in the new batch


def test_the_lines_before_an_expensive_line_are_committed_before_it_is_processed(settings) -> None:
    seen_before: list[int] = []

    def lines() -> Iterator[bytes]:
        yield _line(event("e1"))
        yield _line(event("e2"))
        yield _line(event("big", comment="word " * 20_000))  # 100 KB: scrubbing it takes a while
        seen_before.append(_stored_count())
        yield _line(event("e3"))

    report = _ingest(lines(), settings, _Clock())
    assert report.accepted == 4 and seen_before == [2]


PII = {"email": "quarantined.jane@example.com", "phone": "+1 415 555 0177", "card": "4111 1111 1111 1111"}


def _quarantined_lines(home: Path) -> list[str]:
    return [line for f in sorted((home / "quarantine").glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_rejected_lines_are_quarantined_scrubbed_and_once(cli, tmp_path: Path, flywheel_home: Path) -> None:
    rows = [
        event("q1", ts="yesterday", query=f"I am {PII['email']}, call {PII['phone']}"),
        '{"event_id": "q2", "comment": "card ' + PII["card"] + '", "trunc',
        event("ok"),
    ]
    src = write_jsonl(tmp_path / "fb.jsonl", rows)
    first = cli("ingest", str(src), "--json")
    assert (first["accepted"], first["rejected"]) == (1, 2)
    kept = [json.loads(line) for line in _quarantined_lines(flywheel_home)]
    assert [k["line"] for k in kept] == [1, 2] and "[EMAIL]" in kept[0]["raw"] and "[CARD]" in kept[1]["raw"]
    blobs = b"".join(p.read_bytes() for p in flywheel_home.rglob("*") if p.is_file())
    for value in PII.values():
        assert value.encode() not in blobs, value
    # A re-ingest of the same file (even under another name) reports the lines again but keeps no second copy.
    again = cli("ingest", str(src), "--json")
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 1, 2)
    assert [e["line"] for e in again["errors"]] == [1, 2]
    src.rename(tmp_path / "renamed.jsonl")
    cli("ingest", str(tmp_path / "renamed.jsonl"), "--json")
    assert len(_quarantined_lines(flywheel_home)) == 2


def test_stdin_rejections_are_kept_in_a_file_named_stdin(cli, flywheel_home: Path) -> None:
    result = cli.runner.invoke(app, ["ingest", "-", "--json"], input="not json\n")
    assert result.exit_code == 0, result.stderr
    (kept,) = (flywheel_home / "quarantine").glob("*.jsonl")
    assert kept.name.startswith("stdin.") and json.loads(result.stdout)["quarantine"] == [str(kept)]
