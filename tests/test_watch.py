"""flywheel watch on seeded synthetic feedback through the real ingest and store: canaries promoted
or rolled back, a full promotion rolled back, nothing decided on too little or by one loud user,
and an interrupted watch finished by the next one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flywheel.candidates import Decision
from flywheel.champions import MoveAction, PromptChampion, champion
from flywheel.config import load_settings
from flywheel.loop.canary import approve_canary
from flywheel.loop.promotion import approve
from flywheel.loop.watch_actions import pending_intents
from flywheel.registry import CANARY, PRODUCTION, prompt_at, use_mlflow
from flywheel.state import open_state
from nonempty import every
from tests.watch_helpers import ingest, prompt_candidate, rated_events, watch_now

SPEC_FIELDS = [
    "kind",
    "version",
    "against",
    "events",
    "negative_rate",
    "baseline_rate",
    "difference",
    "ci_low",
    "ci_high",
    "verdict",
    "action",
]


def _canary(settings, percent: float = 20, **kw):
    cand = prompt_candidate(settings, **kw)
    approve_canary(settings, cand.candidate_id, percent=percent, by="dana", note=None)
    return cand


def _arms(settings, cand, n: int, canary_rate: float, production_rate: float, seed: int = 1, **kw) -> None:
    ingest(
        settings,
        rated_events(seed, n, production_rate, prefix=f"p{seed}", arm="production", prompt_version=cand.parent, **kw)
        + rated_events(seed + 1000, n, canary_rate, prefix=f"c{seed}", arm="canary", prompt_version=cand.version, **kw),
    )


def test_a_better_canary_is_promoted_when_auto_promote_is_on(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_WATCH__AUTO_PROMOTE", "true")
    settings = load_settings()
    cand = _canary(settings, clusters={"cl-1": []})
    _arms(settings, cand, 2500, canary_rate=0.10, production_rate=0.25)
    out = cli("watch", "--json")
    (row,) = out["watches"]
    assert list(row)[: len(SPEC_FIELDS)] == SPEC_FIELDS
    assert (row["kind"], row["version"], row["against"]) == ("prompt", cand.version, cand.parent)
    assert row["verdict"] == "better" and row["action"] == "promoted" and row["ci_high"] < 0
    assert row["events"] == 2500 and row["baseline_events"] == 2500
    assert prompt_at(settings, PRODUCTION).version == cand.version and prompt_at(settings, CANARY) is None
    with open_state(settings) as state:
        after = state.candidate(cand.candidate_id)
        promote = [p for p in state.promotions("prompt") if p["action"] == "promote"]
    assert after.decision is Decision.promoted and after.verified_at is not None
    assert promote[-1]["by"] == "flywheel-watch" and "better" in promote[-1]["note"]
    tags = use_mlflow(settings).get_run(cand.mlflow_run_id).data.tags
    assert (
        tags["flywheel.canary_promoted_by"] == "flywheel-watch"
        and '"verdict": "better"' in tags["flywheel.watch_figures"]
    )
    status = cli("status", "--json")
    assert status["loop_velocity"]["verified_hours"] is not None and status["canary"] is None
    assert set(status["drift"]) >= {"negative_rate_trend", "golden_trend", "alarm", "why"}
    assert out["mlflow_run_id"] and "drift" in out


def test_a_worse_canary_is_rolled_back_without_auto_promote(cli) -> None:
    settings = load_settings()
    cand = _canary(settings)
    _arms(settings, cand, 2500, canary_rate=0.35, production_rate=0.20)
    (row,) = cli("watch", "--json")["watches"]
    assert (row["verdict"], row["action"]) == ("worse", "rolled_back") and row["ci_low"] > 0
    assert prompt_at(settings, CANARY) is None and prompt_at(settings, PRODUCTION).version == cand.parent
    with open_state(settings) as state:
        after = state.candidate(cand.candidate_id)
    assert after.decision is Decision.rejected and after.canary.ended_by == "flywheel-watch"
    assert after.canary.figures["verdict"] == "worse"
    assert cli("watch", "--json")["watches"] == []  # nothing left to watch, nothing done twice


def test_an_inconclusive_canary_is_left_alone_until_min_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_WATCH__AUTO_PROMOTE", "true")
    settings = load_settings()
    cand = _canary(settings)
    _arms(settings, cand, 150, canary_rate=0.2, production_rate=0.2, seed=1)
    (row,) = watch_now(settings).watches
    assert (row.comparison.verdict, row.action) == ("inconclusive", "none") and "waiting" in row.why
    assert prompt_at(settings, CANARY).version == cand.version
    _arms(settings, cand, 150, canary_rate=0.2, production_rate=0.2, seed=2)  # 300 a side: past min_events
    (row,) = watch_now(settings).watches
    assert row.comparison.verdict == "inconclusive" and row.action == "promoted"  # not worse: promoted (auto_promote)
    assert prompt_at(settings, PRODUCTION).version == cand.version


def test_a_full_promotion_that_raises_the_rate_is_rolled_back(cli) -> None:
    settings = load_settings()
    cand = prompt_candidate(settings, clusters={"cl-1": []})
    before = datetime.now(UTC) - timedelta(days=1)
    ingest(settings, rated_events(1, 2500, 0.20, prefix="old", start=before, prompt_version=cand.parent))
    approve(settings, cand.candidate_id, by="dana", note=None)
    ingest(
        settings,
        rated_events(
            2, 2500, 0.35, prefix="new", start=datetime.now(UTC) + timedelta(seconds=1), prompt_version=cand.version
        ),
    )
    (row,) = cli("watch", "--json")["watches"]
    assert (row["version"], row["against"], row["verdict"], row["action"]) == (
        cand.version,
        cand.parent,
        "worse",
        "rolled_back",
    )
    assert prompt_at(settings, PRODUCTION).version == cand.parent
    with open_state(settings) as state:
        after = state.candidate(cand.candidate_id)
        last = state.promotions("prompt")[-1]
        assert state.cluster_history("cl-1")[-1]["outcome"] == "rolled_back"
    assert after.payload.rolled_back_by == "flywheel-watch" and (last["action"], last["by"]) == (
        "rollback",
        "flywheel-watch",
    )
    tags = use_mlflow(settings).get_run(cand.mlflow_run_id).data.tags
    assert tags["flywheel.rolled_back_by"] == "flywheel-watch" and "worse" in tags["flywheel.rollback_note"]


def test_one_loud_user_cannot_trigger_a_rollback() -> None:
    settings = load_settings()
    cand = _canary(settings)
    _arms(settings, cand, 1500, canary_rate=0.2, production_rate=0.2)
    loud = [
        {**e, "signal": "thumbs_down"}
        for e in rated_events(7, 600, 1.0, prefix="loud", users=1, arm="canary", prompt_version=cand.version)
    ]
    ingest(settings, loud)
    (row,) = watch_now(settings).watches
    assert row.comparison.events == 2100 and row.comparison.users == 1501
    assert row.comparison.capped_events == 1500 + settings.triage.per_user_cap  # six hundred complaints weigh five
    assert row.comparison.verdict != "worse" and row.action != "rolled_back"
    assert prompt_at(settings, CANARY).version == cand.version
    # Without the cap the same complaints would have decided it (what the cap is for).
    settings_uncapped = load_settings(triage={"per_user_cap": 10_000})
    (uncapped,) = watch_now(settings_uncapped, dry_run=True).watches
    assert uncapped.comparison.verdict == "worse"


def test_no_action_at_all_on_a_store_with_too_few_events() -> None:
    settings = load_settings()
    full = prompt_candidate(settings, "full")
    before = datetime.now(UTC) - timedelta(hours=3)
    ingest(settings, rated_events(1, 60, 0.05, prefix="old", start=before, prompt_version=full.parent))
    approve(settings, full.candidate_id, by="dana", note=None)
    cand = _canary(settings, text="Be brief.")
    _arms(settings, cand, 60, canary_rate=0.9, production_rate=0.05)
    rows = watch_now(settings).watches
    assert {r.scope for r in rows} == {"canary", "promotion"}
    assert every(r.action == "none" and r.comparison.verdict == "inconclusive" for r in rows), rows
    assert (
        prompt_at(settings, CANARY).version == cand.version and prompt_at(settings, PRODUCTION).version == full.version
    )


def test_a_crash_between_decision_and_pointer_move_is_finished_on_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    cand = _canary(settings)
    _arms(settings, cand, 2500, canary_rate=0.35, production_rate=0.20)

    def crash(self, version) -> None:
        raise RuntimeError("killed")

    with monkeypatch.context() as patched:
        patched.setattr(PromptChampion, "_point_canary", crash)
        with pytest.raises(RuntimeError, match="killed"):
            watch_now(settings)
    with open_state(settings) as state:
        (intent,) = pending_intents(state)  # decided and written down, not done
        assert intent.action == "rolled_back" and state.candidate(cand.candidate_id).decision is Decision.canary
    assert prompt_at(settings, CANARY).version == cand.version
    rows = watch_now(settings).watches
    assert [(r.scope, r.action) for r in rows] == [("canary", "rolled_back")]
    assert "interrupted" in rows[0].why
    assert prompt_at(settings, CANARY) is None and prompt_at(settings, PRODUCTION).version == cand.parent
    assert watch_now(settings).watches == []
    with open_state(settings) as state:
        assert pending_intents(state) == []
        ends = [p for p in state.promotions("prompt") if p["action"] == MoveAction.canary_rolled_back]
        assert len(ends) == 1 and state.candidate(cand.candidate_id).decision is Decision.rejected


def test_a_crash_after_the_pointer_moved_records_the_candidate_on_rerun(monkeypatch: pytest.MonkeyPatch) -> None:
    import flywheel.loop.watch_actions as actions

    settings = load_settings()
    cand = _canary(settings)
    _arms(settings, cand, 2500, canary_rate=0.35, production_rate=0.20)

    def pointers_then_crash(s, state, kind, **kwargs) -> None:  # the pointers move, then the process dies
        champion(s, state, kind).end_canary(promote=False, by="flywheel-watch")
        raise RuntimeError("killed")

    with monkeypatch.context() as patched:
        patched.setattr(actions, "end_canary", pointers_then_crash)
        with pytest.raises(RuntimeError, match="killed"):
            watch_now(settings)
    assert prompt_at(settings, CANARY) is None
    (row,) = watch_now(settings).watches
    assert row.action == "rolled_back"
    with open_state(settings) as state:
        after = state.candidate(cand.candidate_id)
        assert pending_intents(state) == [] and after.decision is Decision.rejected
        assert len([p for p in state.promotions("prompt") if p["action"] == "canary_rolled_back"]) == 1


def test_a_clusters_own_queries_are_compared_before_and_after_its_fix() -> None:
    settings = load_settings()
    query = "Can I pay by invoice?"
    own = rated_events(3, 20, 1.0, prefix="own", query=query, start=datetime.now(UTC) - timedelta(days=2))
    ingest(settings, own)
    cand = _canary(settings, clusters={"cl-pay": [e["event_id"] for e in own]})
    _arms(settings, cand, 200, canary_rate=0.1, production_rate=0.5, query=query)
    _arms(settings, cand, 500, canary_rate=0.2, production_rate=0.2, seed=5)
    report = watch_now(settings, dry_run=True)
    (cluster,) = report.public()["clusters"]  # the document's names: before and after the fix
    assert (cluster["cluster_id"], cluster["candidate_id"], cluster["queries"]) == ("cl-pay", cand.candidate_id, 1)
    assert cluster["events_after"] == 200 and cluster["events_before"] == 200  # its own 20 events left out
    assert cluster["negative_rate_after"] < cluster["negative_rate_before"] and cluster["verdict"] == "better"


def test_a_promotion_is_judged_only_until_another_kind_moves(cli) -> None:
    """A better prompt, then a worse model: the model's complaints are not the prompt's (the prompt's
    side ends when the model moved), so only the model is rolled back."""
    from flywheel.champions import ChampionKind
    from flywheel.registry import production_model, register_model_version

    settings = load_settings()
    cand = prompt_candidate(settings)
    approve(settings, cand.candidate_id, by="dana", note=None)
    client = use_mlflow(settings)
    run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id, run_name="ft")
    version = register_model_version(settings, "ft:worse-1", run.info.run_id, {"flywheel.job_id": "job-w"})
    with open_state(settings) as state:
        champion(settings, state, ChampionKind.model).move_to(version, MoveAction.promote, by="sam")
        prompt_at_ = state.promotions("prompt")[-1]["at"]
        model_at_ = state.promotions("model")[-1]["at"]
    t_prompt, t_model = (datetime.fromtimestamp(float(t), UTC) for t in (prompt_at_, model_at_))
    base, n = settings.target_model, 600
    ingest(
        settings,
        rated_events(
            1, n, 0.30, prefix="old", start=t_prompt - timedelta(hours=2), prompt_version=cand.parent, model=base
        )
        + rated_events(
            2,
            n,
            0.10,
            prefix="new",
            start=t_prompt + (t_model - t_prompt) / (2 * n),
            spacing=(t_model - t_prompt) / (2 * n),
            prompt_version=cand.version,
            model=base,
        )
        + rated_events(
            3,
            n,
            0.45,
            prefix="ft",
            start=t_model + timedelta(seconds=1),
            prompt_version=cand.version,
            model="ft:worse-1",
        ),
    )
    rows = {r["kind"]: r for r in cli("watch", "--json")["watches"]}
    assert rows["prompt"]["events"] == n and (rows["prompt"]["verdict"], rows["prompt"]["action"]) == ("better", "none")
    assert rows["model"]["baseline_events"] == n and (rows["model"]["verdict"], rows["model"]["action"]) == (
        "worse",
        "rolled_back",
    )
    assert prompt_at(settings, PRODUCTION).version == cand.version and production_model(settings).version is None
