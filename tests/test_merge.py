"""Every complementary fix reaches the approver (issue 25 items 1-2): a merge is held to each
cluster's own evidence, with the noise of a few examples in mind, and a winner no merge can keep is
deferred to the next cycle instead of silently superseded.

The steps run without Prefect against a product the simulator was not written for (Pantry Pal, its
answers worded afresh for every prompt and question); the drafting model and the judges are the
simulator's, wild in the second test (JSON in fences or prose, cut off, refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import outside_product
from conftest import write_jsonl
from flywheel.candidates import Candidate, Decision, PromptPayload
from flywheel.config import load_settings
from flywheel.improvers.merge_evidence import FixVerdict, check_fix
from flywheel.loop.context import CycleContext, begin
from flywheel.runtime import runtime_for
from flywheel.schemas import FailureCluster
from flywheel.sim.server import SimOptions, Simulator
from nonempty import every

KNOWN = list(outside_product.RECIPES)
UNKNOWN = ["tiramisu", "paella", "ramen"]


def test_a_difference_of_an_example_is_noise_a_lost_fix_is_not() -> None:
    yes, no = True, False
    # 3/6 against the winner's 4/6 (the "50% < 67%"): one example, unsure; kept when no more can be drawn.
    w, m, c = [yes, yes, yes, yes, no, no], [yes, yes, no, yes, no, no], [no] * 6
    assert check_fix("c", "w", w, m, c, alpha=0.1).verdict is FixVerdict.unsure
    assert check_fix("c", "w", w, m, c, alpha=0.1, final=True).verdict is FixVerdict.kept
    # Every fix gone: no better than the champion, lost whatever the sample size.
    assert check_fix("c", "w", [yes, yes, yes], [no, no, no], [no, no, no], alpha=0.1).verdict is FixVerdict.lost
    # Many examples worse: the sign test says so.
    lost = check_fix("c", "w", [yes] * 20, [yes] * 5 + [no] * 15, [no] * 19 + [yes], alpha=0.1)
    assert lost.verdict is FixVerdict.lost and lost.p_value is not None and lost.p_value < 0.001
    assert "5/20" in lost.text() and "20/20" in lost.text()
    # Better than the winner is never a loss.
    assert check_fix("c", "w", [no, yes], [yes, yes], [no, no], alpha=0.1).verdict is FixVerdict.kept
    with pytest.raises(ValueError, match="judged on the same examples"):
        check_fix("c", "w", [yes], [yes, no], [no], alpha=0.1)


def _events(prefix: str, queries: list[str], reason: str, comment: str) -> list[dict[str, Any]]:
    class Champion:
        prompt_template = outside_product.CHAMPION

    return [
        {
            "event_id": f"{prefix}-{n}",
            "ts": f"2026-11-{10 + n % 10:02d}T10:00:00+00:00",
            "signal": "thumbs_down",
            "reason": reason,
            "comment": comment,
            "query": q,
            "output": outside_product.answer(Champion, q, "logged"),
            "user_id": f"{prefix}-user-{n}",
            "consent": True,
        }
        for n, q in enumerate(queries)
    ]


def _cluster(cid: str, category: str, events: list[dict[str, Any]], priority: float) -> FailureCluster:
    return FailureCluster(
        cluster_id=cid,
        category=category,
        route="prompt",
        size=len(events),
        users=len(events),
        priority=priority,
        event_ids=[e["event_id"] for e in events],
        summary=cid,
        consented=len(events),
    )


def _start(
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    base_url: str,
    pipeline: str,
    events: list[dict[str, Any]],
) -> CycleContext:
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(write_jsonl(tmp_path / "golden.jsonl", outside_product.golden_items())))
    monkeypatch.setenv("FLYWHEEL_EVAL__PIPELINE", pipeline)
    monkeypatch.setenv("FLYWHEEL_POLICY__MIN_GOLDEN_SIZE", "20")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(outside_product.CHAMPION)
    cli("prompt", "set", str(prompt), "--json")
    assert cli("ingest", str(write_jsonl(tmp_path / "feedback.jsonl", events)), "--json")["rejected"] == 0
    return begin(runtime_for(load_settings()))


def _draft(ctx: CycleContext, clusters: list[FailureCluster]) -> list[Candidate]:
    from flywheel.improvers.prompt_step import improve_prompt_step, unique_candidates

    drafted = [cand for c in clusters for cand in improve_prompt_step(ctx, c, ctx.protected_texts())]
    return unique_candidates(ctx, drafted)


def test_identical_drafts_keep_each_clusters_evidence_and_the_merge_is_held_to_it(
    cli, simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two format clusters draft the same prompt; it resolves every JSON request of the first but only
    the known dish of the second. Held to the first cluster's 100% on the second (one share per
    candidate), the merge with the tone fix was refused; held to what it resolved there, it is kept."""
    from flywheel.improvers.merge_step import merge_step

    json_asks = _events(
        "json",
        [f"Send me the {d} recipe in JSON so my app can read it." for d in KNOWN],
        "format",
        "I need machine-readable JSON",
    )
    mixed = _events(
        "mixed",
        [f"My meal planner imports JSON: give me {d} as JSON." for d in [KNOWN[0], *UNKNOWN]],
        "format",
        "not JSON",
    )
    upset = _events(
        "upset", [f"This is useless, my {d} is ruined and I'm annoyed. Help!" for d in KNOWN[:4]], "tone", "so cold"
    )
    ctx = _start(cli, tmp_path, monkeypatch, simulator.base_url, "outside_product:answer", json_asks + mixed + upset)
    clusters = [
        _cluster("fmt-json", "format", json_asks, 9.0),
        _cluster("fmt-mixed", "format", mixed, 5.0),
        _cluster("tone", "tone", upset, 7.0),
    ]
    candidates = _draft(ctx, clusters)

    (folded,) = [c for c in candidates if {"fmt-json", "fmt-mixed"} <= set(c.cluster_ids)]
    assert isinstance(folded.payload, PromptPayload)
    shares = {cid: s.share for cid, s in folded.payload.by_cluster.items()}
    assert shares == {"fmt-json": 1.0, "fmt-mixed": 0.25}, shares  # one template, each cluster its own evidence

    merged = merge_step(ctx, candidates, clusters, ctx.protected_texts())
    assert merged is not None and isinstance(merged.payload, PromptPayload) and merged.payload.merge is not None
    checks = {c["cluster_id"]: c for c in merged.payload.merge.checks}
    assert set(checks) == {"fmt-json", "fmt-mixed", "tone"}
    assert (checks["fmt-mixed"]["winner_resolved"], checks["fmt-mixed"]["examples"]) == (1, 4)
    assert every(c["verdict"] == "kept" and c["merged_resolved"] >= c["winner_resolved"] for c in checks.values())
    assert set(merged.payload.fixes or []) == {"fmt-json", "fmt-mixed", "tone"}
    assert merged.payload.merge.left_out == {}
    doc = merged.public()  # what `cycle --json` and `pending --json` print
    assert doc["resolved_by_cluster"]["fmt-mixed"] == {"resolved": 1, "champion": 0, "examples": 4}
    assert {c["cluster_id"] for c in doc["merge"]["checks"]} == {"fmt-json", "fmt-mixed", "tone"}


def test_a_fix_no_merge_can_keep_is_deferred_and_redrafted_next_cycle(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JSON fix and the tone fix cannot live in one prompt on this model. Both pass the gate
    alone; one waits, the other is deferred (never superseded: they fix different things), listed by
    status, drafted first in the next cycle against the new champion and marked carried there."""
    from flywheel.evals.report import approval_markdown, merge_lines
    from flywheel.evals.runner import EvalResult
    from flywheel.improvers.deferral import mark_carried
    from flywheel.improvers.merge_step import merge_step
    from flywheel.improvers.prompt_step import improve_prompt_step
    from flywheel.improvers.registry import improver
    from flywheel.loop.evaluate import evaluate_step, variant_for
    from flywheel.loop.gate import gate_step
    from flywheel.loop.promotion import approve
    from flywheel.loop.report import finish
    from flywheel.loop.status import status

    json_asks = _events(
        "json",
        [f"Send me the {d} recipe in JSON so my app can read it." for d in KNOWN],
        "format",
        "I need machine-readable JSON",
    )
    upset = _events(
        "upset", [f"This is useless, my {d} is ruined and I'm annoyed. Help!" for d in KNOWN], "tone", "so cold"
    )
    wild = SimOptions(drafting="wild", reject_json_schema=True, seed=25)
    with Simulator(options=wild) as sim:
        ctx = _start(cli, tmp_path, monkeypatch, sim.base_url, "merge_product:answer", json_asks + upset)
        clusters = [_cluster("fmt", "format", json_asks, 8.0), _cluster("tone", "tone", upset, 6.0)]
        candidates = _draft(ctx, clusters)
        assert merge_step(ctx, candidates, clusters, ctx.protected_texts()) is None
        left_out = [c for c in candidates if isinstance(c.payload, PromptPayload) and c.payload.fixes]
        assert len(left_out) == 2
        with ctx.state() as state:
            why = [state.candidate(c.candidate_id).payload.left_out_of_merge for c in left_out]  # type: ignore[union-attr]
        blocked = [w for w in why if w]
        assert len(blocked) == 1 and "loses a fix: fmt: the merge resolved 0/" in blocked[0], (
            why
        )  # which cluster, by how much
        with ctx.state() as state:
            docs = [state.candidate(c.candidate_id).public() for c in left_out]  # type: ignore[union-attr]
        assert [d["left_out_of_merge"] for d in docs if "left_out_of_merge" in d] == blocked  # in the cycle document

        results = evaluate_step(
            ctx.runtime, [variant_for(ctx, None)] + [variant_for(ctx, c) for c in candidates], golden=ctx.golden
        )
        champion: EvalResult = results[0]
        report = gate_step(
            ctx, champion, {c.candidate_id: r for c, r in zip(candidates, results[1:], strict=True)}, auto_approve=False
        )
        decided = {
            c.decision: c for c in report.candidates if c.decision in (Decision.pending_approval, Decision.deferred)
        }
        assert set(decided) == {Decision.pending_approval, Decision.deferred}, [
            (c.candidate_id, c.decision, c.reason) for c in report.candidates
        ]
        waiting, deferred = decided[Decision.pending_approval], decided[Decision.deferred]
        assert not any(c.decision is Decision.superseded for c in report.candidates if c.payload.fixes)  # type: ignore[union-attr]
        assert deferred.reason.startswith("deferred: fixes cluster ") and waiting.candidate_id in deferred.reason
        assert "loses a fix: fmt: the merge resolved 0/" in deferred.reason  # the approver reads why, with figures
        assert [
            d["candidate_id"] for d in status(ctx.settings, ctx.runtime.state, ctx.runtime.feedback)["deferred"]
        ] == [deferred.candidate_id]
        form = approval_markdown([waiting], report.champion_score, deferred=[deferred])
        assert "deferred to the next cycle" in form and deferred.reason in form  # the approver sees the other fix
        assert any(line.startswith(f"- `{deferred.candidate_id}`") for line in merge_lines(report.candidates))
        finish(ctx, report)

        # The next cycle: the waiting fix was approved; the deferred cluster goes first and is redrafted.
        promoted = approve(ctx.settings, waiting.candidate_id, by="tester", note=None)
        (carried_cluster,) = [c for c in clusters if c.cluster_id in deferred.cluster_ids]
        others = [c for c in clusters if c is not carried_cluster]
        assert improver("prompt").select(ctx, [*others, carried_cluster])[0] is carried_cluster
        ctx2 = begin(runtime_for(load_settings()))
        assert ctx2.cycle_id != ctx.cycle_id and ctx2.champion_version == promoted.version
        redrafted = improve_prompt_step(ctx2, carried_cluster, ctx2.protected_texts())
        assert every(c.parent == promoted.version for c in redrafted)
        with ctx2.state() as state:
            assert [c.candidate_id for c in mark_carried(state, ctx2.cycle_id)] == [deferred.candidate_id]
            assert state.candidate(deferred.candidate_id).carried_to == ctx2.cycle_id  # type: ignore[union-attr]
        assert status(ctx.settings, ctx.runtime.state, ctx.runtime.feedback)["deferred"] == []
