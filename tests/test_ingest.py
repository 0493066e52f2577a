"""Ingest through the CLI and the Python API: validation, quarantine, idempotency, PII, consent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import event, write_jsonl
from flywheel.config import IngestSettings, load_settings
from flywheel.feedback.ingest import ingest_files
from flywheel.feedback.scrub import scrub_text
from flywheel.feedback.store import open_store


def test_bad_lines_are_reported_with_line_numbers_and_quarantined(cli, tmp_path: Path, flywheel_home: Path) -> None:
    src = write_jsonl(
        tmp_path / "fb.jsonl",
        [
            event("e1"),
            '{"event_id": "e2", "ts": "2026-11-10T10:00:00Z", "signal": "thumbs_down", "query": "trunc',
            event("e3", signal="thumbs_up"),
            event("e4", signal="rating"),  # rating without value
            "",
            event("e5", ts="2026-11-10 10:00:00"),  # no timezone
            event("e6", signal="shrug"),
            event("e7", signal="edit", final_text="Completely different text that the user wrote instead."),
        ],
    )
    out = cli("ingest", str(src), "--json")
    assert out["accepted"] == 3 and out["rejected"] == 4 and out["duplicates"] == 0
    assert [(e["line"], e["file"]) for e in out["errors"]] == [
        (2, str(src)),
        (4, str(src)),
        (6, str(src)),
        (7, str(src)),
    ]
    assert "not valid JSON" in out["errors"][0]["error"]
    assert "rating" in out["errors"][1]["error"] and "value" in out["errors"][1]["error"]
    assert out["errors"][2]["error"].startswith("ts:")
    assert out["errors"][3]["error"].startswith("signal:")
    # Nothing lost: every rejected line is kept, PII scrubbed, with where it came from (the scrubber
    # over-scrubs rather than leaks: line 6's "2026-11-10 10:00:00" looks like a phone number to it).
    (qfile,) = (flywheel_home / "quarantine").glob("*.rejected.jsonl")
    kept = [json.loads(line) for line in qfile.read_text().splitlines()]
    assert [k["line"] for k in kept] == [2, 4, 6, 7]
    original = src.read_text().splitlines()
    assert [k["raw"] for k in kept] == [scrub_text(original[i - 1]) for i in (2, 4, 6, 7)]


def test_reingest_is_idempotent_by_event_id(cli, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [event(f"e{i}", user_id=f"u{i}") for i in range(50)] + [event("e0")])
    first = cli("ingest", str(src), "--json")
    assert (first["accepted"], first["duplicates"]) == (50, 1)  # the repeated e0 inside the file
    second = cli("ingest", str(src), "--json")
    assert (second["accepted"], second["duplicates"], second["rejected"]) == (0, 51, 0)
    with open_store(load_settings().resolved_store_url) as store:
        assert store.counts()["events"] == 50


def test_missing_file_is_a_usage_error_naming_it(cli, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "ok.jsonl", [event("e1")])
    out = cli("ingest", str(good), str(tmp_path / "nope.jsonl"), "--json", expect=2)
    assert "nope.jsonl" in out["error"]
    # Checked before anything is read: the good file was not half-ingested.
    with open_store(load_settings().resolved_store_url) as store:
        assert store.counts()["events"] == 0


PII = {
    "email": "jane.doe@example.com",
    "phone": "+1 415 555 0132",
    "card": "4111 1111 1111 1111",
    "ip": "203.0.113.77",
    "key": "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2",
    "aws": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "jwt_payload": "eyJzdWIiOiJqYW5lLmRvZSIsImFkbWluIjp0cnVlfQ",
    "jwt_signature": "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ssn": "219099999",
    "ssn_dashed": "219-09-9999",
    "address": "221B Baker Street",
    "name": "Maria Garcia",
    "introduced": "Xavier Quill",
}
JWT = f"eyJhbGciOiJIUzI1NiJ9.{PII['jwt_payload']}.{PII['jwt_signature']}"


def test_pii_is_absent_from_the_store_files_after_ingest(cli, tmp_path: Path, flywheel_home: Path) -> None:
    rows = [
        event("p1", query=f"my email is {PII['email']}, call {PII['phone']}", comment=f"card {PII['card']}"),
        event("p2", output=f"from {PII['ip']}", correction=f"use key {PII['key']}", signal="correction"),
        event("p3", signal="edit", final_text=f"Write to {PII['email']}", metadata={"note": f"ip {PII['ip']}"}),
        event("p4", user_id=PII["email"]),
        event("p5", query=f"my aws secret is {PII['aws']} and my token {JWT}", comment=f"IBAN {PII['iban']}"),
        event(
            "p6",
            query=f"SSN {PII['ssn']}, or social security number {PII['ssn_dashed']}",
            output=f"Ship it to {PII['address']}, London",
            metadata={"from": f"{PII['name']} wrote"},
        ),
        event("p7", signal="correction", correction=f"Hello, my name is {PII['introduced']}. Why is sync slow?"),
    ]
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")
    assert out["accepted"] == 7 and out["scrubbed"] == 7
    with open_store(load_settings().resolved_store_url) as store:
        events = {e.event_id: e for e in store.events()}
    assert set(events["p1"].pii_scrubbed) == {"email", "phone", "card"}
    assert "[EMAIL]" in events["p1"].query and "[CARD]" in (events["p1"].comment or "")
    assert events["p4"].user_id and events["p4"].user_id.startswith("pii-")
    assert set(events["p5"].pii_scrubbed) == {"secret", "iban"} and events["p5"].query.count("[SECRET]") == 2
    assert set(events["p6"].pii_scrubbed) == {"ssn", "address", "name"} and events["p6"].query.count("[SSN]") == 2
    assert events["p7"].pii_scrubbed == ["name"]
    # Byte-level: no PII string in the database, its WAL, or anywhere under FLYWHEEL_HOME.
    blobs = b"".join(p.read_bytes() for p in flywheel_home.rglob("*") if p.is_file())
    for value in PII.values():
        assert value.encode() not in blobs, value


def test_consent_flag_is_stored_and_defaults_to_false(tmp_path: Path, settings) -> None:
    src = write_jsonl(
        tmp_path / "fb.jsonl", [event("c1"), event("c2", consent=False), {**event("c3"), "consent": None}]
    )
    settings.ensure_home()
    with open_store(settings.resolved_store_url) as store:
        report = ingest_files([str(src)], store, settings.quarantine_dir, IngestSettings())
        assert report.rejected == 1  # consent must be a bool when present
        src2 = write_jsonl(tmp_path / "fb2.jsonl", [{k: v for k, v in event("c4").items() if k != "consent"}])
        ingest_files([str(src2)], store, settings.quarantine_dir, IngestSettings())
        consent = {e.event_id: e.consent for e in store.events()}
    assert consent == {"c1": True, "c2": False, "c4": False}


@pytest.mark.parametrize(
    ("fields", "polarity", "strength"),
    [
        ({"signal": "thumbs_up"}, 1, 1.0),
        ({"signal": "thumbs_down", "reason": "wrong"}, -1, 1.0),
        ({"signal": "rating", "value": 1}, -1, 1.0),
        ({"signal": "rating", "value": 2}, -1, 0.5),
        ({"signal": "rating", "value": 3}, 0, 0.0),
        ({"signal": "rating", "value": 5}, 1, 1.0),
        ({"signal": "correction", "correction": "It costs $12."}, -1, 1.0),
        ({"signal": "accept"}, 1, 0.6),
        ({"signal": "copy"}, 1, 0.5),
        ({"signal": "dismiss"}, -1, 0.4),
        ({"signal": "dismiss", "reason": "already_done"}, 0, 0.0),
        ({"signal": "outcome", "value": 0}, -1, 0.8),
        ({"signal": "outcome", "value": 1}, 1, 0.8),
        ({"signal": "expert_review", "value": 0.1}, -1, 0.8),
        ({"signal": "expert_review", "value": 0.9}, 1, 0.8),
        ({"signal": "edit", "final_text": "The Pro plan costs $10 per month!"}, 1, 0.3),
        (
            {"signal": "edit", "final_text": "Pricing changed: Pro is twelve dollars a month now, billed yearly."},
            -1,
            None,
        ),
    ],
)
def test_signals_normalise_to_polarity_and_strength(tmp_path: Path, settings, fields, polarity, strength) -> None:
    src = write_jsonl(tmp_path / "fb.jsonl", [event("s1", **fields)])
    settings.ensure_home()
    with open_store(settings.resolved_store_url) as store:
        ingest_files([str(src)], store, settings.quarantine_dir, IngestSettings())
        (stored,) = list(store.events())
    assert stored.polarity == polarity
    if strength is not None:
        assert stored.strength == pytest.approx(strength)
    else:
        assert 0.5 <= stored.strength <= 1.0
