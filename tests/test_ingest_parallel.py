"""A long file checked in worker processes (flywheel/feedback/checking.py) ends as one process would
end it: the same events stored, the same report, the same quarantine; a worker that dies costs nothing."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import event, write_jsonl
from flywheel.config import IngestSettings, load_settings
from flywheel.feedback import checking
from flywheel.feedback.sources import SourceItem
from flywheel.feedback.store import open_store
from flywheel.feedback.validate import check


def _mixed_lines(n: int) -> list[Any]:
    """Good events with PII to scrub, and every way a line goes wrong, spread over many chunks."""
    rows: list[Any] = []
    for i in range(n):
        if i % 17 == 3:
            rows.append('{"event_id": "broken-' + str(i))  # not JSON
        elif i % 19 == 5:
            rows.append(event(f"e{i}", signal="no-such-signal"))
        elif i % 23 == 7:
            rows.append(event(f"e{i}", query="x" * 1001))  # over max_field_chars (1000 here)
        elif i % 29 == 11:
            rows.append(event(f"e{i - 1}"))  # a duplicate of an id seen before, maybe in another chunk
        elif i % 31 == 13:
            rows.append("")  # blank: skipped, counted as a line
        else:
            rows.append(
                event(
                    f"e{i}",
                    signal="thumbs_down" if i % 2 else "thumbs_up",
                    comment=f"mail me at user{i}@example.com" if i % 5 == 0 else None,
                    consent=i % 7 != 0,
                    user_id=f"u{i % 13}",
                )
            )
    return rows


def _ingest(cli, home: Path, source: Path, workers: int, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, list, list]:
    monkeypatch.setenv("FLYWHEEL_HOME", str(home))
    monkeypatch.setenv("FLYWHEEL_INGEST__WORKERS", str(workers))
    out = cli("ingest", str(source), "--json")
    with open_store(load_settings().resolved_store_url) as store:
        stored = sorted(({**asdict(e), "ingested_at": None} for e in store.events()), key=str)
    quarantined = [json.loads(line) for q in (home / "quarantine").glob("*.rejected.jsonl") for line in q.open()]
    kept = sorted(quarantined, key=lambda k: k["line"])
    out.pop("quarantine")  # file names hold the time and pid
    return out, stored, kept


def test_a_file_checked_in_worker_processes_ends_as_one_process_ends_it(
    cli, tmp_path: Path, flywheel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_INGEST__MAX_FIELD_CHARS", "1000")
    monkeypatch.setattr(checking, "PARALLEL_MIN_BYTES", 0)  # this small file too
    monkeypatch.setattr(checking, "CHUNK", 37)  # many chunks, ids duplicated across them
    source = write_jsonl(tmp_path / "fb.jsonl", _mixed_lines(900))
    serial = _ingest(cli, tmp_path / "serial", source, 1, monkeypatch)
    parallel = _ingest(cli, tmp_path / "parallel", source, 3, monkeypatch)
    report, stored, kept = parallel
    assert len(stored) == report["accepted"] and stored[0]["pii_scrubbed"] is not None
    assert report["accepted"] > 600 and report["duplicates"] > 20 and report["rejected"] > 100
    assert report["scrubbed"] > 100 and len(kept) == report["rejected"]
    assert [e["line"] for e in report["errors"]] == sorted(e["line"] for e in report["errors"])
    assert parallel == serial


def test_workers_are_used_for_long_files_only() -> None:
    settings = IngestSettings()
    assert checking.workers_for(settings, None) == 1  # stdin: unknown length
    assert checking.workers_for(settings, checking.PARALLEL_MIN_BYTES - 1) == 1
    auto = min(checking.MAX_AUTO_WORKERS, checking.cores())
    assert checking.workers_for(settings, checking.PARALLEL_MIN_BYTES) == auto
    assert checking.workers_for(IngestSettings(workers=1), 10**9) == 1
    assert checking.workers_for(IngestSettings(workers=6), 10**9) == 6


def _pool_workers() -> list[psutil.Process]:
    """This process's checking workers: the fork server's children (they share its command line)."""

    def forked(p: psutil.Process) -> bool:
        return "multiprocessing.forkserver" in " ".join(p.cmdline())

    workers = [p for p in psutil.Process().children(recursive=True) if forked(p) and forked(p.parent())]
    assert workers, "no worker processes found"
    return workers


def test_workers_killed_midway_cost_nothing(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Every worker killed after the first results: the rest is checked in this process, in order."""
    monkeypatch.setattr(checking, "CHUNK", 20)
    settings = IngestSettings()
    items = [
        SourceItem(i + 1, json.dumps(event(f"k{i}", comment=f"call +1 415 555 {i:04d}")).encode()) for i in range(400)
    ]
    expected = [check(item, settings) for item in items]
    got = []
    for n, (item, outcome) in enumerate(checking.checked(items, settings, workers=2)):
        got.append((item, outcome))
        if n == 5:
            for p in _pool_workers():
                os.kill(p.pid, signal.SIGKILL)
    assert [i for i, _ in got] == items
    assert [o for _, o in got] == expected
    assert "checked in this one" in caplog.text  # the rest was checked here, not lost
