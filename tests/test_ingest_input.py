"""Ingest takes only what SPEC.md's types say, names the field it refuses, and fails cleanly on a file it
cannot read: strict booleans, numbers and timestamps, bounded fields, a BOM, the errors list, --strict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conftest import event, write_jsonl
from flywheel.app.cli import app
from flywheel.config import IngestSettings, load_settings
from flywheel.feedback.store import open_store
from nonempty import every


def _stored() -> dict:
    with open_store(load_settings().resolved_store_url) as store:
        return {e.event_id: e for e in store.events()}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"consent": "yes"}, "consent"),
        ({"consent": 1}, "consent"),
        ({"consent": "true"}, "consent"),
        ({"ts": 1789034400}, "ts"),
        ({"signal": "rating", "value": "4"}, "value"),
        ({"signal": "rating", "value": True}, "value"),
        ({"confidence": "0.5"}, "confidence"),
        ({"signal": "rating", "value": float("nan")}, "value"),
        ({"signal": "expert_review", "value": float("inf")}, "value"),
        ({"signal": "outcome", "value": float("-inf")}, "value"),
        ({"confidence": float("nan")}, "confidence"),
        ({"metadata": {"latency": float("inf")}}, "metadata"),
        ({"arm": "beta"}, "arm"),
        ({"index_version": True}, "index_version"),
    ],
)
def test_values_outside_spec_types_are_rejected_naming_the_field(cli, tmp_path: Path, fields, field) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [event("bad", **fields)])  # json.dumps writes NaN and Infinity
    out = cli("ingest", str(src), "--json")
    assert (out["accepted"], out["rejected"]) == (0, 1), out
    assert out["errors"][0]["error"].startswith(f"{field}"), out["errors"][0]


def test_an_epoch_timestamp_is_refused_with_the_format_asked_for(cli, tmp_path: Path) -> None:
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", [event("e1", ts=1789034400)])), "--json")
    assert "ISO 8601" in out["errors"][0]["error"] and "timezone" in out["errors"][0]["error"]


def test_versions_may_be_numbers_and_index_version_and_arm_are_stored(cli, tmp_path: Path) -> None:
    rows = [event("v1", prompt_version=3, index_version=7, arm="canary"), event("v2", index_version="idx-2")]
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")
    assert out["accepted"] == 2, out
    stored = _stored()
    assert (stored["v1"].prompt_version, stored["v1"].index_version, stored["v1"].arm) == ("3", "7", "canary")
    assert (stored["v2"].index_version, stored["v2"].arm) == ("idx-2", None)


def test_a_byte_order_mark_at_the_start_of_a_file_or_stdin_is_accepted(cli, tmp_path: Path) -> None:
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(event("b1")).encode() + b"\n" + json.dumps(event("b2")).encode())
    out = cli("ingest", str(src), "--json")
    assert (out["accepted"], out["rejected"]) == (2, 0), out
    result = cli.runner.invoke(app, ["ingest", "-", "--json"], input=b"\xef\xbb\xbf" + json.dumps(event("b3")).encode())
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["accepted"] == 1


def test_the_errors_list_says_when_it_stops(cli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [f"not json {i}" for i in range(1005)])
    out = cli("ingest", str(src), "--json")
    assert (out["rejected"], len(out["errors"]), out["errors_total"], out["errors_truncated"]) == (
        1005,
        1000,
        1005,
        True,
    )
    few = cli("ingest", str(write_jsonl(tmp_path / "few.jsonl", ["nope"])), "--json")
    assert (few["errors_total"], few["errors_truncated"]) == (1, False)


def _unreadable(tmp_path: Path) -> list[str]:
    """Paths open() or read() refuses, also for root (which chmod 000 does not stop)."""
    paths = [str(tmp_path / "missing.jsonl"), str(tmp_path)]
    paths.append(str(write_jsonl(tmp_path / "a-file.jsonl", [event("x")]) / "below"))  # ENOTDIR
    if os.geteuid() != 0:
        locked = write_jsonl(tmp_path / "locked.jsonl", [event("x")])
        locked.chmod(0)
        closed = tmp_path / "closed"
        closed.mkdir()
        write_jsonl(closed / "inside.jsonl", [event("x")])
        closed.chmod(0)
        paths += [str(locked), str(closed / "inside.jsonl")]
    paths += [p for p in ("/proc/sys/vm/compact_memory", "/proc/self/mem") if os.path.exists(p)]  # EACCES, EIO
    return paths


@pytest.mark.parametrize("position", ["first", "last"])
def test_an_unreadable_file_is_a_usage_error_with_one_json_document(cli, tmp_path: Path, position: str) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [event("g1")])
    for bad in _unreadable(tmp_path):
        files = [bad, str(good)] if position == "first" else [str(good), bad]
        out = cli("ingest", *files, "--json", expect=2)
        assert bad in out["error"] and out["exit_code"] == 2, out
        assert "Traceback" not in cli.last.stderr
        plain = cli("ingest", *files, expect=2)
        assert plain.stdout == "" and len(plain.stderr.strip().splitlines()) == 1, plain.stderr


def test_a_field_longer_than_max_field_chars_is_rejected_and_the_lines_around_it_stored(
    cli, tmp_path: Path, flywheel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert IngestSettings().max_field_chars == 100_000
    monkeypatch.setenv("FLYWHEEL_INGEST__MAX_FIELD_CHARS", "1000")
    rows = [
        event("e1"),
        event("e2"),
        event("long", query="x" * 1001),
        event("meta", metadata={"note": "y" * 2000}),
        event("e3"),
    ]
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")
    assert (out["accepted"], out["rejected"]) == (3, 2), out
    assert out["errors"][0]["error"] == "query: 1001 characters, more than ingest.max_field_chars (1000)"
    assert out["errors"][1]["error"].startswith("metadata.note: 2000 characters")
    assert set(_stored()) == {"e1", "e2", "e3"}
    # The quarantine keeps a bounded, scrubbed excerpt of such a line, and says how long it was.
    kept = [json.loads(line) for q in (flywheel_home / "quarantine").glob("*.jsonl") for line in q.open()]
    assert [k["line"] for k in kept] == [3, 4]
    assert every(len(k["raw"]) <= 1000 for k in kept) and kept[0]["raw_chars"] > 1001


def test_strict_exits_2_after_storing_the_good_lines(cli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [event("e1"), "not json", event("e2")])
    out = cli("ingest", "--strict", str(src), "--json", expect=2)
    assert (out["accepted"], out["rejected"], out["exit_code"]) == (2, 1, 2)
    assert "1 line" in out["error"] and "rejected" in out["error"]
    assert set(_stored()) == {"e1", "e2"}
    clean = write_jsonl(tmp_path / "clean.jsonl", [event("e3")])
    assert cli("ingest", "--strict", str(clean), "--json")["accepted"] == 1


def test_ingest_help_lists_the_fields_and_says_consent_absent_means_false(cli) -> None:
    text = " ".join(cli("ingest", "--help").stdout.split())
    for name in ("event_id", "ts", "signal", "query", "output", "consent", "index_version", "arm", "--strict"):
        assert name in text, name
    assert "absent means false" in text
    assert "reason (wrong, outdated," in text and "missing_context" in text and "rating 1..5" in text


def test_strict_without_json_prints_the_counts_and_one_error_line(cli, tmp_path: Path, flywheel_home: Path) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [event("e1"), "not json"])
    err = cli("ingest", "--strict", str(src), expect=2).stderr
    assert err.splitlines()[0] == "accepted 1, duplicates 0, rejected 1"
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: --strict: 1 line was rejected (the others were stored)"
    ]
    (kept,) = (flywheel_home / "quarantine").glob("*.rejected.jsonl")
    assert f"rejected lines kept in {kept}" in err.splitlines()  # whole, pasteable, however long the path


@given(
    texts=st.lists(st.text(max_size=40), min_size=1, max_size=4),
    key=st.text(max_size=10),
    ascii_only=st.booleans(),
    limit=st.integers(min_value=0, max_value=120),
)
@hyp_settings(max_examples=300, deadline=None)
def test_a_line_no_longer_than_the_limit_never_holds_a_longer_field(
    texts: list[str], key: str, ascii_only: bool, limit: int
) -> None:
    """The check skips walking the fields of a line no longer than ``max_field_chars``: every decoded
    text (escapes, any script, metadata keys) is at most as long as the line it came from."""
    from flywheel.feedback.validate import _too_long
    from flywheel.schemas import FeedbackEvent

    body = event("h1", query=texts[0], comment=texts[-1], metadata={key: texts})
    raw = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        parsed = FeedbackEvent.model_validate_json(raw)
    except ValidationError:
        return  # a lone surrogate or a NUL: rejected before any length is looked at
    if _too_long(parsed, limit) is not None:
        assert len(raw) > limit
