"""Feedback without a reason (issue 25, item 3): clusters triage leaves in `other` are diagnosed by
the drafting model from their consented examples, take the named category and route, and are
drafted against the root cause; what cannot be diagnosed stays `other` and says what was missing.

The feedback is the demo world's, with every reason and comment stripped from its downvotes (the
thumbs-down-only signal real products mostly get); the simulator plays the diagnosing model from
the world's rules, clean and wild, over real HTTP."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from conftest import event, seed_world_vectors, write_jsonl
from flywheel.config import load_settings
from flywheel.feedback.store import open_store
from flywheel.improvers import diagnosis as diagnosis_module
from flywheel.improvers.diagnosis import diagnose
from flywheel.improvers.prompt import propose
from flywheel.improvers.registry import improver
from flywheel.improvers.screening import FailingExample
from flywheel.improvers.screening_step import answer_queries, failing_examples, judge_resolutions
from flywheel.loop.diagnosis_step import apply_diagnosis, diagnose_step
from flywheel.loop.triage_step import triage_step
from flywheel.runtime import runtime_for
from flywheel.schemas import CATEGORIES, FailureCluster
from flywheel.sim import roles
from flywheel.sim.rules import INTENTS, match_intent
from flywheel.sim.server import SimOptions, Simulator
from flywheel.sim.world import INITIAL_PROMPT, make_query
from nonempty import every

PER_INTENT = 24  # reason-less downvotes kept per intent: every failure mode, in seconds


def _stores(settings):
    """The settings and the stores of this process's Runtime, as the cycle hands them to the step."""
    from flywheel.runtime import runtime_for

    rt = runtime_for(settings)
    return settings, rt.state, rt.feedback


def _routing(settings):
    """A cycle's context as far as routing reads it (the settings and the process's stores)."""
    from flywheel.improvers.context import CycleContext

    return CycleContext(
        settings=settings,
        cycle_id="cyc-diag",
        resumed=False,
        champion_version="",
        champion_template="",
        golden_version="",
    )


def reasonless_downvotes(world: Path) -> list[dict[str, Any]]:
    """The world's thumbs-downs with their reason and comment removed, a deterministic sample per intent."""
    kept: Counter[str] = Counter()
    rows = []
    for line in (world / "feedback.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the world's deliberately malformed lines
        intent = match_intent(row.get("query", ""))
        if row.get("signal") != "thumbs_down" or intent is None or kept[intent.id] >= PER_INTENT:
            continue
        kept[intent.id] += 1
        row.pop("reason", None)
        row.pop("comment", None)
        rows.append(row)
    return rows


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Simulator]:
    drafting = getattr(request, "param", "clean")
    with Simulator(options=SimOptions(record=True, drafting=drafting, seed=3)) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        yield sim


def diagnosis_requests(sim: Simulator) -> list[str]:
    return [json.dumps(b["messages"]) for b in sim.state.requests if roles.route(b) == "diagnosis"]


def majority_intent(cluster: FailureCluster, by_id: dict[str, Any]) -> Any:
    return Counter(match_intent(by_id[i].query).id for i in cluster.event_ids).most_common(1)[0][0]


@pytest.mark.parametrize("recording", ["clean", "wild"], indirect=True)
def test_reasonless_clusters_are_diagnosed_into_their_categories_and_drafted(
    cli, world: Path, world_vectors: Path, recording: Simulator, tmp_path: Path
) -> None:
    settings = load_settings()
    seed_world_vectors(world_vectors, settings)  # the world's queries are embedded once per session
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", reasonless_downvotes(world))), "--json")
    with open_store(settings.resolved_store_url) as store:
        by_id = {e.event_id: e for e in store.events(polarity=-1)}
    intents = {i.id: i for i in INTENTS}
    clusters = triage_step(runtime_for(settings))
    other = [c for c in clusters if c.category == "other"]
    # Before: failure modes of the world sit in `other`, where no improver looks.
    failing_in_other = {majority_intent(c, by_id) for c in other} & {i.id for i in INTENTS if i.category != "general"}
    assert {"sync_angry", "other_account"} <= failing_in_other, failing_in_other
    assert not any(
        c.cluster_id in {o.cluster_id for o in other} for c in improver("prompt").select(_routing(settings), clusters)
    )

    diagnosed = diagnose_step(*_stores(settings), "cyc-diag", clusters)
    assert [c.cluster_id for c in diagnosed] == [c.cluster_id for c in clusters]  # ids and order kept
    for before, after in zip(clusters, diagnosed, strict=True):
        if before.category != "other":
            assert after == before
            continue
        intent = intents[majority_intent(before, by_id)]
        d = after.diagnosis
        assert d is not None and d.model == settings.draft_model and d.examples > 0
        if intent.category == "general":  # downvotes on right answers: nothing to name, never a made-up category
            assert after.category == "other" and not d.diagnosed
            assert d.why_not and d.why_not.startswith("the diagnosis could not name a category: "), d
        else:
            assert d.diagnosed and after.category == d.category == intent.category, (intent.id, d)
            assert after.route == ("rag" if intent.category == "outdated_knowledge" else "prompt")
            assert d.root_cause == roles.PLAYBOOK[intent.category][0]
    if recording.options.drafting == "wild":  # unusable replies were asked again, not taken
        assert sum(len(c.diagnosis.problems) for c in diagnosed if c.diagnosis) >= 1

    # A resumed cycle asks nothing again: the diagnoses are in the state store.
    asked = len(diagnosis_requests(recording))
    assert diagnose_step(*_stores(settings), "cyc-diag", clusters) == diagnosed
    assert len(diagnosis_requests(recording)) == asked

    # The prompt improver now works on them, drafting against the diagnosed root cause.
    chosen = {c.cluster_id: c for c in improver("prompt").select(_routing(settings), diagnosed)}
    fixable = [
        c
        for c in diagnosed
        if c.cluster_id in chosen
        and c.diagnosis
        and c.diagnosis.diagnosed
        and majority_intent(c, by_id) in ("sync_angry", "other_account")
    ]
    assert {c.category for c in fixable} == {"tone", "unsafe"}
    for cluster in {c.category: c for c in reversed(fixable)}.values():  # the biggest of each category
        assert cluster.diagnosis is not None
        with open_store(settings.resolved_store_url) as store:
            examples = failing_examples(
                store.get(cluster.event_ids),
                settings.improve.examples_per_cluster,
                complaint=cluster.diagnosis.root_cause,
            )
        result = propose(
            cluster_id=cluster.cluster_id,
            category=cluster.category,
            champion=INITIAL_PROMPT,
            examples=examples,
            client=OpenAI(base_url=recording.base_url, api_key="k", max_retries=0),
            model=settings.draft_model,
            run_queries=lambda t, qs: answer_queries(settings, t, qs),
            judge=lambda exs, outs: judge_resolutions(settings, runtime_for(settings).state, exs, outs),
            protected=[],
            settings=settings.improve,
        )
        assert result.kept and (result.best_screening or 0) > (result.champion_screening or 0), result.stopped
    critiques = [json.dumps(b["messages"]) for b in recording.state.requests if roles.route(b) == "critique"]
    assert any("no reason given; diagnosed: " + roles.PLAYBOOK["tone"][0] in c for c in critiques)


def test_non_consented_text_never_reaches_the_diagnosis(cli, recording: Simulator, tmp_path: Path) -> None:
    secret = "Bluebird"
    rows = [
        event(
            f"c{i}",
            user_id=f"u{i}",
            query=f"I'm so frustrated, my files won't sync again. Fix it? #{i}",
            output="Sign out of the desktop app, sign back in, and sync will restart.",
        )
        for i in range(4)
    ]
    rows += [
        event(
            f"n{i}",
            user_id=f"x{i}",
            consent=False,
            signal="correction",
            query=f"My sync is broken for project {secret}, I'm furious",
            output=f"{secret} sync: sign out.",
            comment=f"{secret} is confidential",
            correction=f"{secret} answer",
        )
        for i in range(4)
    ]
    rows += [
        event(f"h{i}", user_id=f"y{i}", consent=False, query=f"{secret} account email of the owner?") for i in range(3)
    ]
    rows += [event(f"e{i}", user_id=f"z{i}", query="", output="") for i in range(2)]
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", rows)), "--json")

    def cluster(cid: str, prefixes: str, consented: int) -> FailureCluster:
        ids = [r["event_id"] for r in rows if r["event_id"][0] in prefixes]
        return FailureCluster(
            cluster_id=cid,
            category="other",
            route="prompt",
            size=len(ids),
            users=len(ids),
            priority=float(len(ids)),
            event_ids=ids,
            summary="other: withheld",
            consented=consented,
        )

    clusters = [cluster("other-mixed", "cn", 4), cluster("other-hidden", "h", 0), cluster("other-empty", "e", 2)]
    out = {c.cluster_id: c for c in diagnose_step(*_stores(load_settings()), "cyc-privacy", clusters)}
    why_not = {cid: c.diagnosis.why_not if c.diagnosis else None for cid, c in out.items()}

    sent = diagnosis_requests(recording)
    assert len(sent) == 1  # only the cluster with consented text was sent anywhere
    assert secret not in sent[0] and "won't sync again" in sent[0]
    assert "correction 4" in sent[0] and "thumbs_down 4" in sent[0]  # non-consented events count, as numbers
    assert out["other-mixed"].category == "tone" and why_not["other-mixed"] is None
    assert out["other-hidden"].category == out["other-empty"].category == "other"
    assert (why_not["other-hidden"] or "").startswith("no consented examples: none of its 3 events")
    assert (why_not["other-empty"] or "").startswith("no text to read: its 2 consented events")


def test_a_refused_or_unknown_diagnosis_leaves_other_with_a_reason(
    recording: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that refuses, stops mid-JSON, names a category off the list or answers `other`: asked
    again a bounded number of times, then `other` with the reason; never a made-up category."""
    client = OpenAI(base_url=recording.base_url, api_key="k", max_retries=0)
    example = [
        FailingExample(
            query="Give me the Team plan details as JSON.", output="The Team plan costs $8.", signal="thumbs_down"
        )
    ]
    replies: list[str] = []

    def model(body: dict[str, Any], style: Any = None) -> str:  # a hand-written diagnosing model
        return replies.pop(0)

    monkeypatch.setitem(roles.ROLES, "diagnosis", model)
    replies[:] = [
        "I'm sorry, but I can't diagnose user feedback.",
        '{"category": "format", "root_ca',
        '{"category": "Formatting problem", "root_cause": "prose instead of JSON"}',
    ]
    d = diagnose(client, "gpt-4o", example, {"thumbs_down": 1})
    assert not d.diagnosed and d.category is None and d.attempts == 3 and not replies
    assert d.why_not is not None and d.why_not.startswith("the diagnosis could not name a category: 3 unusable")
    assert "'Formatting problem' is not one of" in d.why_not
    assert [p.split(":")[0] for p in d.problems] == [
        "the model refused",
        "the model's reply was cut off before its JSON closed",
        "the model's category 'Formatting problem' is not one of " + ", ".join(CATEGORIES),
    ]
    left = apply_diagnosis(
        FailureCluster(
            cluster_id="other-1",
            category="other",
            route="prompt",
            size=1,
            users=1,
            priority=1.0,
            event_ids=["e"],
            summary="other: 1",
        ),
        d,
    )
    assert (left.category, left.route, left.diagnosis) == ("other", "prompt", d)  # never a made-up category
    replies[:] = ['Sure:\n```json\n{"category": "other", "root_cause": "The answers look right."}\n```']
    d = diagnose(client, "gpt-4o", example, {"thumbs_down": 1})
    assert not d.diagnosed and d.attempts == 1 and d.root_cause == "The answers look right."
    assert d.why_not == "the diagnosis could not name a category: gpt-4o answered `other` (The answers look right.)"
    replies[:] = ['{"category": "format"}', 'Here it is: {"category": "format", "root_cause": "Prose, not JSON."} ok?']
    d = diagnose(client, "gpt-4o", example, {"thumbs_down": 1})
    assert d.diagnosed and (d.category, d.root_cause, d.attempts) == ("format", "Prose, not JSON.", 2)


def test_a_wild_diagnosing_model_names_the_same_categories_as_a_clean_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fenced, in prose, cut off, refused or off the list: asked again, the wild simulator's diagnoses
    are the clean one's; asked once, many are left `other`, never given a made-up category."""
    rng = random.Random(5)
    intents = [INTENTS[k % len(INTENTS)] for k in range(130)]
    sets = [
        [FailingExample(query=make_query(i, rng)[0], output="-", signal="thumbs_down") for _ in range(3)]
        for i in intents
    ]

    def categories(options: SimOptions) -> tuple[list[str | None], int]:
        with Simulator(options=options) as sim:
            client = OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)
            found = [diagnose(client, "gpt-4o", s, {"thumbs_down": 3}) for s in sets]
            return [d.category for d in found], sum(len(d.problems) for d in found)

    clean, _ = categories(SimOptions())
    assert clean == [i.category if i.category != "general" else None for i in intents]
    wild, asked_again = categories(SimOptions(drafting="wild", seed=5))
    assert asked_again >= 10
    assert sum(w is None and c is not None for w, c in zip(wild, clean, strict=True)) <= 2
    assert every(w == c for w, c in zip(wild, clean, strict=True) if w is not None)
    monkeypatch.setattr(diagnosis_module, "DIAGNOSE_ATTEMPTS", 1)
    once, _ = categories(SimOptions(drafting="wild", seed=5))
    assert sum(o is None and c is not None for o, c in zip(once, clean, strict=True)) >= 10
    assert every(o == c for o, c in zip(once, clean, strict=True) if o is not None)


@pytest.fixture
def reasonless_loop(
    cli,
    world: Path,
    world_vectors: Path,
    sim_env: Simulator,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Path:
    """The `loop` fixture's state directory, but every downvote of the world's feedback without its
    reason and comment (corrections and edits keep their text)."""
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(world / "golden.jsonl"))
    monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "0")
    monkeypatch.setenv("FLYWHEEL_LLM_MAX_RETRIES", "1")
    seed_world_vectors(world_vectors, load_settings())
    cli("prompt", "set", str(world / "prompt.txt"), "--json")
    rows = []
    for line in (world / "feedback.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row["signal"] in ("thumbs_down", "rating", "correction", "edit", "dismiss", "expert_review"):
            row.pop("reason", None)
            row.pop("comment", None)
        rows.append(row)
    cli("ingest", str(write_jsonl(tmp_path / "reasonless.jsonl", rows)), "--json")
    return world


def test_a_cycle_on_feedback_without_reasons_diagnoses_drafts_and_reports(cli, reasonless_loop: Path) -> None:
    from prefect.artifacts import Artifact

    out = cli("cycle", "--json")
    clusters = {c["cluster_id"]: c for c in out["clusters"]}
    outcomes = {o["cluster_id"]: o for o in out["outcomes"]}
    diagnosed = {cid for cid, c in clusters.items() if c["diagnosis"] and c["diagnosis"]["diagnosed"]}
    left = {cid for cid, c in clusters.items() if c["diagnosis"] and not c["diagnosis"]["diagnosed"]}
    assert diagnosed and left
    for cid in diagnosed:
        c, o = clusters[cid], outcomes[cid]
        assert c["category"] != "other" and c["diagnosis"]["category"] == c["category"] == o["category"]
        assert c["diagnosis"]["model"] and o["diagnosis"] == c["diagnosis"]
    # The prompt improver drafted on diagnosed clusters, and a candidate covers one of them.
    drafted = {cid for cid in diagnosed if clusters[cid]["route"] == "prompt" and clusters[cid]["drafting"]}
    assert {clusters[cid]["category"] for cid in drafted} >= {"tone", "unsafe"}
    assert any(set(k["cluster_ids"]) & drafted for k in out["candidates"])
    for cid in left:  # skipped, saying what was missing; never a made-up category
        assert clusters[cid]["category"] == "other" and outcomes[cid]["status"] == "skipped"
        assert outcomes[cid]["why"] == clusters[cid]["diagnosis"]["why_not"]
        assert outcomes[cid]["why"].split(":")[0] in (
            "the diagnosis could not name a category",
            "no consented examples",
            "no text to read",
        )
    report = Artifact.get("flywheel-cycle-report")
    assert report is not None and "Feedback without a reason: diagnosed clusters" in str(report.data)
    # The weekly review shows the last cycle's diagnoses, and flags what it had to skip (asking nothing).
    review = cli("review", "--until", "2026-11-20T00:00:00+00:00", "--json")
    reviewed = {c["cluster_id"]: c for c in review["clusters"]}
    assert any(reviewed[cid]["diagnosis"]["why_not"] for cid in left if cid in reviewed)
    assert "Skipped by the last cycle, left `other`" in cli("review", "--until", "2026-11-20T00:00:00+00:00").stdout
