"""PII nowhere it is not scrubbed (issue 27 part 2): marked PII planted in every field of the event
format, ingested over the CLI and HTTP, triaged; no marker may appear in the store, the quarantine's
records (but for the raw line kept as it came), the answers, the output or the logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli, event, write_jsonl
from flywheel.schemas import FeedbackEvent
from live_server import LiveServer, make_key
from nonempty import every

IBAN = "DE89370400440532013000"


def _mark(field: str) -> str:
    """A distinct e-mail marker per field (what a search finds), with a phone number and an IBAN."""
    return f"jane.roe+PII{field.replace('_', '')}@example.com"


def _planted() -> list[dict[str, Any]]:
    """One accepted event with PII in every text field, and one event per other field with PII in it."""
    texts = {
        name: f"call {_mark(name)} or +1 415 555 0199, IBAN {IBAN}"
        for name in ("query", "output", "comment", "correction", "final_text")
    }
    good = event(
        "pii-good",
        signal="correction",
        user_id=_mark("user_id"),
        session_id=_mark("session_id"),
        metadata={"note": _mark("metadatavalue"), "nested": {"deep": [_mark("metadatalist")]}},
        **texts,
    )
    bad: list[dict[str, Any]] = [
        event(_mark("event_id")),
        event("pii-ts", ts=_mark("ts")),
        event("pii-signal", signal=_mark("signal")),
        event("pii-consent", consent=_mark("consent")),
        event("pii-prompt", prompt_version=_mark("prompt_version")),
        event("pii-model", model=_mark("model")),
        event("pii-index", index_version=_mark("index_version")),
        event("pii-arm", arm=_mark("arm")),
        event("pii-confidence", confidence=_mark("confidence")),
        event("pii-reason", reason=_mark("reason")),
        event("pii-value", value=_mark("value")),
        event("pii-context", context_ids=["doc-1#0", _mark("context_ids")]),
        event("pii-context-iban", context_ids=[f"IBAN {IBAN}"]),
        event("pii-model-phone", model="+1 415 555 0199"),
        event("pii-key", metadata={_mark("metadata_key"): 1}),
        event("pii-deep-key", metadata={"a": {_mark("metadata_deep_key"): 1}}),
        event("pii-extra", **{_mark("extra_field"): 1}),
        event("pii-query-type", query={_mark("query_object"): 1}),
    ]
    return [good, *bad]


MARKERS = sorted(
    {
        _mark(n)
        for n in [
            *FeedbackEvent.model_fields,
            "metadatavalue",
            "metadatalist",
            "metadata_key",
            "metadata_deep_key",
            "extra_field",
            "query_object",
        ]
    }
    | {IBAN, "415 555 0199"}
)


def _found(text: str) -> list[str]:
    return [m for m in MARKERS if m in text or m.replace("+", "\\u002b") in text]


def _home_files(home: Path) -> dict[str, str]:
    """Every file under FLYWHEEL_HOME as text; a quarantine record without the raw line it keeps."""
    out: dict[str, str] = {}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", "replace")
        if path.name.endswith(".rejected.jsonl"):
            text = "\n".join(
                json.dumps({k: v for k, v in json.loads(line).items() if k != "raw"}) for line in text.splitlines()
            )
        out[str(path.relative_to(home))] = text
    return out


def test_marked_pii_in_every_field_is_stored_nowhere(cli: Cli, settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events = _planted()
    assert {k for e in events for k in e} >= set(FeedbackEvent.model_fields)  # every field of the format
    seen: list[str] = []

    report = cli("ingest", str(write_jsonl(Path("planted.jsonl"), events)), "--json")
    seen += [cli.last.stdout, cli.last.stderr]
    assert (report["accepted"], report["rejected"]) == (1, len(events) - 1)
    errors = [e["error"] for e in report["errors"]]
    assert every(_found(e) == [] for e in errors), errors
    assert any("event_id: must be an identifier" in e and "e-mail" in e for e in errors)
    assert any("an unknown field" in e for e in errors)

    key = make_key(cli, "product", "ingest")
    renamed = [{**e, "event_id": f"http-{e['event_id']}"} if e["event_id"].startswith("pii-") else e for e in events]
    with LiveServer(settings) as live:
        http = live.http(key)
        batch = http.post("/v1/feedback", json={"events": renamed})
        single = http.post("/v1/feedback", json=renamed[1])
    assert batch.status_code == 200 and batch.json()["accepted"] == 1 and single.status_code == 422
    seen += [batch.text, single.text]

    cli("triage", "--json")
    seen += [cli.last.stdout, cli.last.stderr, caplog.text]
    leaks = {
        where: _found(text)
        for where, text in [*_home_files(settings.home).items(), *((f"output {i}", t) for i, t in enumerate(seen))]
    }
    assert {where: found for where, found in leaks.items() if found} == {}
    # The raw lines are kept, so the quarantine did receive the planted values.
    raws = "".join(
        json.loads(line)["raw"]
        for p in settings.quarantine_dir.glob("*.rejected.jsonl")
        for line in p.read_text().splitlines()
    )
    assert "pii-ts" in raws and "http-pii-ts" in raws


@pytest.mark.parametrize(
    "value",
    [
        "4fc3770e-ce76-4e89-bffa-87ac404fc605",
        "ft:gpt-4o-mini:org::abc",
        "prompt-v3",
        "meta-llama/Llama-3.1-8B-Instruct",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "claude-3-5-sonnet@20240620",
        "traffic-7-1731234567890-12",
        "1700000000123",
        "01HV8Z3K4Q9XN5T2M7B6C1D0EF",
        "v2024.06.01",
    ],
)
def test_real_identifiers_are_accepted(value: str) -> None:
    parsed = FeedbackEvent.model_validate(
        event(
            value,
            model=value,
            prompt_version=value,
            index_version=value,
            metadata={value: 1},
            context_ids=[f"{value}#0"],
        )
    )
    assert parsed.event_id == parsed.model == parsed.prompt_version == value


def test_chunk_ids_of_files_with_spaces_are_document_ids() -> None:
    ids = ["Refund policy (2024).md#0", "billing/café & co.md#3", "doc-outdated-3#1"]
    assert FeedbackEvent.model_validate(event("e", context_ids=ids)).context_ids == ids


def test_the_sim_world_passes_the_identifier_grammar(tmp_path: Path) -> None:
    from flywheel.sim.world import write_world

    write_world(tmp_path)
    rows = [
        json.loads(line)
        for line in (tmp_path / "feedback.jsonl").read_text().splitlines()
        if '"event_id": "bad-' not in line
    ]  # the world's deliberately broken lines
    assert len(rows) > 1000
    for row in rows:
        FeedbackEvent.model_validate(row)
