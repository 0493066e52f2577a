"""The traffic generator (sim/traffic.py) against a real `flywheel serve` on 127.0.0.1: the arms and
negative rates it produces follow the service's split and the quality map, and `flywheel watch`,
fed only by it through the service, promotes a better canary and rolls back a worse promotion."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from conftest import event
from flywheel.arms import arm_for
from flywheel.client import FlywheelClient
from flywheel.config import load_settings
from flywheel.feedback.store import open_store
from flywheel.identifiers import identifier_problem
from flywheel.loop.canary import approve_canary
from flywheel.loop.promotion import set_prompt
from flywheel.registry import production_prompt
from flywheel.sim.otlp_traffic import export_request, stored_event_id
from flywheel.sim.quality import QualityMap, Variant, rate_for_golden
from flywheel.sim.traffic import VIAS, TrafficGenerator, TrafficOptions
from flywheel.sim.world import INITIAL_PROMPT
from live_server import LiveServer, make_key, stored_ids
from tests.watch_helpers import prompt_candidate, watch_now


@pytest.fixture
def keys(cli, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.setenv("FLYWHEEL_SERVE__CHAMPION_TTL_SECONDS", "0.3")
    return make_key(cli, "product", "read"), make_key(cli, "events", "ingest")


def _serves(client: FlywheelClient, user: str, version: str, seconds: float = 60) -> str:
    """Poll until the service serves ``version`` to ``user`` (its cache follows a move within its TTL)."""
    deadline = time.monotonic() + seconds
    while (got := client.champion(user).prompt.version) != version and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_quality_map_most_specific_entry_wins_and_golden_maps_monotonically() -> None:
    q = QualityMap.parse(["prompt=2:0.1", "prompt=2,model=ft:0.02", "model=ft:0.3"], default_rate=0.25)
    assert q.rate(Variant(prompt_version="2", model="base")) == 0.1
    assert q.rate(Variant(prompt_version="2", model="ft")) == 0.02
    assert q.rate(Variant(prompt_version="1", model="ft")) == 0.3
    assert q.rate(Variant(prompt_version="1", model="base")) == 0.25
    assert rate_for_golden(1.0) == 0.05 and rate_for_golden(0.0) == 0.65
    assert rate_for_golden(0.9) < rate_for_golden(0.5) < rate_for_golden(0.2)


def test_arms_and_negative_rates_follow_the_service_and_the_quality_map(keys) -> None:
    settings = load_settings()
    read, ingest = keys
    cand = prompt_candidate(settings)  # production v1, the candidate v2
    approve_canary(settings, cand.candidate_id, percent=30, by="dana", note=None)
    quality = QualityMap.parse([f"prompt={cand.parent}:0.30", f"prompt={cand.version}:0.10"])
    with LiveServer(settings) as live:
        gen = TrafficGenerator(
            live.url,
            read_key=read,
            ingest_key=ingest,
            quality=quality,
            options=TrafficOptions(users=600, requests=2400, seed=5, batch=300),
        )
        with gen:
            report = gen.run()
    assert report.accepted == 2400 and report.rejected == 0 and report.duplicates == 0
    canary, production = report.by_arm["canary"], report.by_arm["production"]
    assert abs(canary.rate - 0.10) < 0.04 and abs(production.rate - 0.30) < 0.04
    # What the service said is what the events carry, and the stored events are the ones sent.
    with open_store(settings.resolved_store_url) as store:
        events = list(store.events())
    assert len(events) == 2400
    for e in events:
        assert e.arm == arm_for(e.user_id, 30)
        assert e.prompt_version == (cand.version if e.arm == "canary" else cand.parent)
        assert e.model == settings.target_model and e.index_version is None
        assert (e.reason is not None) == (e.signal == "thumbs_down")
    # A realistic mix: some users far more active than the median one.
    per_user = Counter(e.user_id for e in events)
    assert max(per_user.values()) >= 8 * statistics.median(per_user.values())
    assert 0.7 < sum(e.consent for e in events) / len(events) < 0.95


def test_watch_on_generated_traffic_promotes_a_better_canary_and_rolls_back_a_worse_promotion(
    keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_WATCH__AUTO_PROMOTE", "true")
    settings = load_settings()
    read, ingest = keys
    cand = prompt_candidate(settings, text="Be precise and kind.")
    approve_canary(settings, cand.candidate_id, percent=20, by="dana", note=None)
    good, old = cand.version, cand.parent
    bad = "3"
    quality = QualityMap.parse([f"prompt={old}:0.30", f"prompt={good}:0.10", f"prompt={bad}:0.45"])
    with LiveServer(settings) as live, FlywheelClient(live.url, read) as client:
        gen = TrafficGenerator(
            live.url,
            read_key=read,
            ingest_key=ingest,
            quality=quality,
            options=TrafficOptions(users=1500, requests=2500, seed=11),
        )
        with gen:
            during = gen.run()
            (row,) = [r for r in watch_now(settings).watches if r.scope == "canary"]
            assert (row.comparison.verdict, row.action) == ("better", "promoted")
            assert row.comparison.negative_rate < row.comparison.baseline_rate and row.comparison.ci_high < 0
            assert production_prompt(settings).version == good
            assert _serves(client, "anyone", good) == good
            after = gen.run(1000, seed=12)
            assert after.by_arm["production"].rate < during.by_arm["production"].rate - 0.1

            assert set_prompt(settings, "Answer in one word.", message="a hand edit", by="sam")["version"] == bad
            assert _serves(client, "anyone", bad) == bad
            gen.run(1000, seed=13)
            rows = [r for r in watch_now(settings).watches if r.version == bad]
            assert [(r.kind, r.against, r.comparison.verdict, r.action) for r in rows] == [
                ("prompt", good, "worse", "rolled_back")
            ]
            assert rows[0].comparison.ci_low > 0 and rows[0].comparison.baseline_events >= 200
    assert production_prompt(settings).version == good


def test_the_cli_plays_traffic_with_an_admin_key_and_says_why_a_read_key_is_not_enough(cli) -> None:
    settings = load_settings()
    set_prompt(settings, "You answer support questions.", message="a real product", by="test")
    admin, read = make_key(cli, "ops", "admin"), make_key(cli, "product", "read")
    with LiveServer(settings) as live:
        # a service that serves another product's prompt: simulated feedback would pollute its store
        foreign = cli("sim", "traffic", "--url", live.url, "--key", admin, "--requests", "50", "--json", expect=2)
        assert "not the simulator world's" in foreign["error"] and "--force" in foreign["error"]
        assert stored_ids(settings) == []
        forced = cli(
            "sim",
            "traffic",
            "--url",
            live.url,
            "--key",
            admin,
            "--users",
            "5",
            "--requests",
            "7",
            "--seed",
            "4",
            "--force",
            "--json",
        )
        assert forced["accepted"] == 7 and len(stored_ids(settings)) == 7

        set_prompt(settings, INITIAL_PROMPT, message="the demo world's", by="test")
        live.service.champions.load()  # past the champion cache
        doc = cli(
            "sim",
            "traffic",
            "--url",
            live.url,
            "--key",
            admin,
            "--users",
            "30",
            "--requests",
            "120",
            "--rate",
            "prompt=2:1.0",
            "--seed",
            "3",
            "--json",
        )
        assert doc["accepted"] == 120 and doc["by_arm"]["production"]["negative_rate"] == 1.0
        assert doc["by_variant"][0]["true_rate"] == 1.0 and doc["users"] <= 30
        # the same CLI, the feedback as OpenTelemetry GenAI spans on POST /v1/traces
        before = set(stored_ids(settings))
        spans = cli(*("sim", "traffic", "--url", live.url, "--key", admin, "--users", "9", "--requests", "40"),
                    *("--via", "otlp", "--seed", "2", "--json"))  # fmt: skip
        assert (spans["accepted"], spans["rejected"], spans["duplicates"]) == (40, 0, 0)
        new = set(stored_ids(settings)) - before
        assert len(new) == 40 and all(i.startswith("otlp:") and i.endswith("/user_feedback") for i in new)
        grpc = cli("sim", "traffic", "--url", live.url, "--key", admin, "--via", "grpc", "--json", expect=2)
        assert "--via must be one of feedback, otlp" in grpc["error"]
        refused = cli("sim", "traffic", "--url", live.url, "--key", read, "--requests", "5", "--json", expect=1)
        assert "403" in refused["error"]
    cli("sim", "traffic", "--url", "http://127.0.0.1:9", "--key", "k", "--rate", "prompt:0.2", expect=2)


def _ticking(start: datetime) -> Callable[[], datetime]:
    """A clock that moves one millisecond a call: two generators given one play identical timestamps."""
    ticks = itertools.count()
    return lambda: start + timedelta(milliseconds=next(ticks))


def _stored(url: str) -> dict[str, dict[str, Any]]:
    with open_store(url) as store:
        return {e.event_id: dataclasses.asdict(e) for e in store.events()}


def test_the_same_traffic_sent_as_otlp_spans_stores_the_same_feedback_as_sent_as_events(
    keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--via otlp` is the same traffic through POST /v1/traces: each stored event matches, field by
    field, the one POST /v1/feedback stored, but for two documented differences: ``event_id`` is the
    receiver's ``otlp:<trace>/<span>/user_feedback`` of the spans derived from the feedback event's id,
    and ``metadata`` is the receiver's (the generator's source and intent do not travel in spans)."""
    monkeypatch.setenv("FLYWHEEL_IMPORTS__OTLP__CONSENT_KEY", "app.user_consent")  # the configured attribute
    read, ingest = keys
    base = load_settings()
    cand = prompt_candidate(base)
    approve_canary(base, cand.candidate_id, percent=30, by="dana", note=None)  # two arms, two prompt versions
    quality = QualityMap.parse([f"prompt={cand.parent}:0.30", f"prompt={cand.version}:0.10"])
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    reports, stores = {}, {}
    for via in VIAS:  # the same state (keys, pointers), a fresh feedback store each
        stores[via] = f"sqlite:///{tmp_path / f'{via}.sqlite'}"
        settings = load_settings(store_url=stores[via])
        options = TrafficOptions(
            users=80, requests=300, seed=21, batch=64, via=via, consent_key=settings.imports.otlp.consent_key
        )
        with LiveServer(settings) as live:
            gen = TrafficGenerator(
                live.url, read_key=read, ingest_key=ingest, quality=quality, options=options, clock=_ticking(start)
            )
            with gen:
                reports[via] = gen.run()
    assert reports["feedback"].public() == reports["otlp"].public()  # same users, arms, negatives
    assert reports["otlp"].accepted == 300 and reports["otlp"].rejected == 0
    sent, traced = _stored(stores["feedback"]), _stored(stores["otlp"])
    assert len(sent) == len(traced) == 300
    assert set(traced) == {stored_event_id(event_id) for event_id in sent}
    for event_id, stored in sent.items():
        via_spans = dict(traced[stored_event_id(event_id)])
        assert stored.pop("metadata") == {"source": "flywheel sim traffic", "intent": ANY}
        assert via_spans.pop("metadata") == {"otlp_evaluation": "user_feedback"}
        stored.pop("event_id"), via_spans.pop("event_id")
        assert via_spans == stored, event_id
    rows = list(sent.values())
    # the comparison is not vacuous: both arms and versions, both polarities, reasons, consent both ways
    assert {(e["arm"], e["prompt_version"]) for e in rows} == {("production", cand.parent), ("canary", cand.version)}
    assert {e["polarity"] for e in rows} == {-1, 1} and {e["consent"] for e in rows} == {True, False}
    assert len({e["reason"] for e in rows}) > 2 and len({e["user_id"] for e in rows}) > 30


def test_otlp_spans_carry_what_the_traffic_does_not_draw_comments_values_sessions_and_documents(
    keys, tmp_path: Path
) -> None:
    """The encoder's other fields, sent both ways from the same hand-written events; and two events
    whose span ids read as a card number and an IBAN, which the receiver stores under a hash of the id
    rather than refusing them."""
    read, ingest = keys
    now = datetime.now(UTC).replace(microsecond=123456)
    card, iban = "traffic-0-1796600000000-14901", "traffic-0-1796600000000-6144"
    for event_id, looks_like in ((card, "a card number"), (iban, "an IBAN")):
        digest = hashlib.sha256(f"flywheel-sim-traffic:{event_id}".encode()).hexdigest()
        first = f"otlp:{digest[:32]}/{digest[32:48]}/user_feedback"
        assert (identifier_problem(first) or "").endswith(f"looks like {looks_like}")
        assert stored_event_id(event_id) != first and identifier_problem(stored_event_id(event_id)) is None
    events = [
        event(card, ts=now.isoformat(), context_ids=["pricing.md#0", "export.md#2"], session_id="s-1"),
        event(iban, ts=now.isoformat(), reason="outdated", comment="that price changed", consent=False),
        event("e-rating", ts=now.isoformat(), signal="rating", value=4, model="m-1", index_version="7"),
        event("e-review", ts=now.isoformat(), signal="expert_review", value=0.25, arm="canary", prompt_version="2"),
    ]
    stores = {}
    for via in VIAS:
        stores[via] = f"sqlite:///{tmp_path / f'{via}.sqlite'}"
        with LiveServer(load_settings(store_url=stores[via])) as live, FlywheelClient(live.url, ingest) as client:
            if via == "otlp":
                assert client.traces(export_request(events, consent_key="user.consent")).rejected_spans == 0
            else:
                assert client.feedback(events).accepted == 4
    sent, traced = _stored(stores["feedback"]), _stored(stores["otlp"])
    for event_id, stored in sent.items():
        via_spans = traced[stored_event_id(event_id)]
        for name in ("event_id", "metadata"):
            stored.pop(name), via_spans.pop(name)
        assert via_spans == stored, event_id
    assert len(sent) == len(traced) == 4
    assert sent[card]["context_ids"] == ["pricing.md#0", "export.md#2"]
    assert sent[iban]["comment"] == "that price changed" and sent["e-rating"]["value"] == 4
    assert read  # the read key is the fixture's; this test only ingests
