"""Does one cycle turn each prompt-fixable failure mode into a fix the golden set confirms, on a model
that does not repeat itself?

Two worlds, one cycle each (fresh state, the simulator's demo world):
1. ``reword``: the product model rewords every answer (seeded), so the champion never replays a
   logged output: screening must judge resolution, not difference.
2. ``reword+wild``: the same, and the drafting model answers the way real models do (JSON in fences
   or prose, truncated, refusals, lost ``{{variables}}``), and the endpoint rejects ``json_schema``.

Printed per failure mode (the world's intents behind its golden items: yearly totals for factual,
plan JSON for format, upset customers for tone, poems for off-topic, other customers' data for
unsafe; the error codes only a fine-tune can teach and the outdated facts only an index refresh can
fix are not prompt-fixable): fixed or not by the winning prompt candidate (its mean golden score on
that mode's items reaches 0.9 where the champion's was below), and the cycle's golden delta with its
CI, the rounds and rollouts spent per cluster. Targets: every prompt-fixable mode fixed in one cycle,
no category regressing more than the policy bound, at most 300 rollouts per cluster.

World variants (``sim.world.VARIANTS``, written by the simulator, seeded), each run with the product
rewording and the drafting model wild, for up to ``--cycles`` cycles (default 4): a cycle, then
``loop.promotion.approve`` for every candidate waiting (prompt first, as a person would), then the next:

- ``identical``: the yearly-cost complaints split over several factual clusters drafting one
  template, with the error-code cluster (which that template does not fix) drafting it too;
- ``no_reason``: 80% of negative events without reason or comment, and none at all on two modes
  (upset sync, other customers' data), which triage can then only leave ``other`` or guess;
- ``multilingual``: German, French and Spanish questions among the English ones;
- ``flood``: one user's 400 downvotes on right answers about two-factor sign-in.

Per variant: the modes fixed after one approved cycle (the production champion's mean golden score on
the mode's items reaches 0.9 from below), the cycles until every mode is fixed, the drafting rollouts
of each cycle (sum, and max per cluster, from the cycle's ``clusters[].drafting``) and for ``flood``
whether any promoted candidate covers the flood's cluster (a cluster at least half of whose events
are the flood user's; the flood runs at least two cycles, the second with every other fix in).
Targets: every prompt-fixable mode fixed in one approved cycle, the flood never promoted, at most 300
rollouts per cluster.

Run one: ``PYTHONPATH=. python -m benchmarks.bench_efficacy --variant flood [--cycles 4]`` (figures in
``benchmarks/out/efficacy_flood.json``); no ``--variant`` runs the scenarios and every variant.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from benchmarks._util import given_prefect_api, parse_args, report
from benchmarks.bench_cycle import thin_golden
from flywheel.config import load_settings
from flywheel.runtime import runtime_for
from flywheel.sim.server import SimOptions, Simulator
from flywheel.sim.world import FLOOD_USER, VARIANTS, write_world

PROMPT_FIXABLE = {
    "yearly_cost": "factual",
    "plan_json": "format",
    "sync_angry": "tone",
    "poem": "off_topic",
    "other_account": "unsafe",
}
SCENARIOS = {
    "reword": SimOptions(reword=True, seed=11),
    "reword+wild": SimOptions(reword=True, seed=11, drafting="wild", reject_json_schema=True),
}
WORLD_VARIANTS = tuple(v for v in VARIANTS if v != "default")
MAX_CYCLES = 4
FIXED_AT = 0.9
APPROVER = "bench-efficacy"
FLOOD_MIN_CYCLES = 2


def variant_options() -> SimOptions:
    """Every variant runs on the hard model: rewording product, wild drafting, no json_schema."""
    return SimOptions(reword=True, seed=11, drafting="wild", reject_json_schema=True)


def one_cycle(root: Path, world: Path, options: SimOptions) -> dict[str, Any]:
    from benchmarks.bench_cycle import prepared
    from flywheel.flows.cycle import run_flow

    with Simulator(options=options) as sim:
        overrides = prepared(root, world, sim.base_url)
        cycle = run_flow(overrides=overrides)
        settings = load_settings(**overrides)
        prompts = [c for c in cycle.candidates if c.kind == "prompt" and c.golden_score is not None]
        winner = next((c for c in prompts if c.decision == "pending_approval"), None)
        champion_rows, winner_rows = _rows_by_mode(settings, world, winner)
    policy = settings.policy
    fixed = {}
    for mode, category in PROMPT_FIXABLE.items():
        before, after = _mean(champion_rows.get(mode)), _mean(winner_rows.get(mode))
        fixed[f"{category}/{mode}"] = {"champion": before, "winner": after, "fixed": after >= 0.9 > before}
    drafting = {c["cluster_id"]: c["drafting"] for c in cycle.clusters if c.get("drafting")}
    return {
        "fixed": fixed,
        "winner": winner.candidate_id if winner else None,
        "delta": winner.delta if winner else None,
        "ci": [winner.ci_low, winner.ci_high] if winner else None,
        "worst_category_delta": min(winner.category_deltas.values()) if winner else None,
        "max_category_regression": policy.max_category_regression,
        "rounds": {cid: d["rounds"] for cid, d in drafting.items()},
        "rollouts": {cid: d["rollouts"] for cid, d in drafting.items()},
        "resolved": {cid: [d["champion_resolved"], d["best_resolved"]] for cid, d in drafting.items()},
        "problems": sum(len(d["problems"]) for d in drafting.values()),
    }


def _rows_by_mode(settings: Any, world: Path, winner: Any) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Golden scores per failure mode (the intent in a golden item's id, ``g-<intent>-NNN``) of the
    champion and the winner; the cycle cached both evaluations, so this asks the endpoint nothing."""
    from flywheel.champions import champion as champion_of
    from flywheel.evals.pipeline import Variant
    from flywheel.loop.evaluate import evaluate_step
    from flywheel.state import open_state

    with open_state(settings) as state:
        index = champion_of(settings, state, "rag").current()
    champion = Variant(
        label="champion",
        prompt_template=(world / "prompt.txt").read_text().strip(),
        model=settings.target_model,
        index_version=index,
    )
    variants = [champion] + (
        [champion.model_copy(update={"label": winner.candidate_id, "prompt_template": winner.template})]
        if winner
        else []
    )
    results = evaluate_step(runtime_for(settings), variants)
    by_mode: list[dict[str, list[float]]] = []
    for result in results:
        modes: dict[str, list[float]] = {}
        for row in result.rows:
            modes.setdefault(row.id.split("-")[1], []).append(row.score or 0.0)
        by_mode.append(modes)
    return by_mode[0], (by_mode[1] if winner else by_mode[0])


def _mean(values: list[float] | None) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def _by_mode(rows: Any) -> dict[str, list[float]]:
    """Golden scores per mode: the intent in an item's id (``g-<intent>-NNN``, ``g-<intent>-<lang>-NNN``)."""
    modes: dict[str, list[float]] = {}
    for row in rows:
        modes.setdefault(row.id.split("-")[1], []).append(row.score or 0.0)
    return modes


def champion_by_mode(settings: Any) -> dict[str, float]:
    """The production champion's mean golden score per prompt-fixable mode (what users get now)."""
    from flywheel.champions import champion as champion_of
    from flywheel.evals.pipeline import Variant
    from flywheel.loop.evaluate import evaluate_step
    from flywheel.registry import require_production_prompt
    from flywheel.state import open_state

    with open_state(settings) as state:
        index = champion_of(settings, state, "rag").current()
    prompt = require_production_prompt(settings)
    (result,) = evaluate_step(
        runtime_for(settings),
        [
            Variant(
                label="champion",
                prompt_template=prompt.template,
                prompt_version=prompt.version,
                model=settings.target_model,
                index_version=index,
            )
        ],
    )
    modes = _by_mode(result.rows)
    return {mode: _mean(modes.get(mode)) for mode in PROMPT_FIXABLE}


def approve_waiting(settings: Any) -> list[Any]:
    """Approve every candidate waiting, prompt candidates first, as a person would with `flywheel approve`;
    the pending list is read again after each approval (an approval may settle another candidate)."""
    from flywheel.errors import UsageError
    from flywheel.loop.promotion import approve, pending

    approved: list[Any] = []
    for _ in range(20):
        waiting = sorted(pending(settings), key=lambda c: (c.kind != "prompt", c.candidate_id))
        if not waiting:
            break
        try:
            approved.append(approve(settings, waiting[0].candidate_id, by=APPROVER, note="bench_efficacy"))
        except UsageError:
            continue
    return approved


def flood_clusters(settings: Any) -> set[str]:
    """Clusters at least half of whose events are the flood user's, from the same triage the cycle runs
    (deterministic: same events, same settings, so the same cluster ids)."""
    from flywheel.feedback.store import open_store
    from flywheel.loop.triage_step import triage_step

    clusters = triage_step(runtime_for(settings))
    with open_store(settings.resolved_store_url) as store:
        found = set()
        for c in clusters:
            users = Counter(e.user_id for e in store.get(c.event_ids))
            if users.get(FLOOD_USER, 0) * 2 >= c.size:
                found.add(c.cluster_id)
    return found


def _rollouts(cycle: Any) -> dict[str, int]:
    return {c["cluster_id"]: c["drafting"]["rollouts"] for c in cycle.clusters if c.get("drafting")}


def _cluster_line(c: dict[str, Any]) -> str:
    """A cluster in one line: id, size, users, route, an example and what drafting made of it."""
    d = c.get("drafting") or {}
    example = (c.get("example_queries") or [""])[0][:60]
    drafted = (
        f"; {d['rollouts']} rollouts, resolved {d['champion_resolved']} -> {d['best_resolved']}: {d['outcome']}"
        if d
        else ""
    )
    return f"{c['cluster_id']} {c['size']} events/{c['users']} users, {c['route']}: {example!r}{drafted}"


def _shared_templates(cycle: Any) -> dict[str, dict[str, Any]]:
    """Drafted (not merged) prompt candidates that several clusters drafted identically, with the
    clusters among them the template does not fix (absorbed without evidence of a fix)."""
    return {
        c.candidate_id: {
            "decision": str(c.decision),
            "clusters": c.cluster_ids,
            "unfixed": sorted(set(c.cluster_ids) - set(c.payload.fixes or [])),
        }
        for c in cycle.candidates
        if str(c.kind) == "prompt" and len(c.cluster_ids) > 1 and not c.payload.merged_from
    }


def run_variant(root: Path, variant: str, max_cycles: int = MAX_CYCLES, events: int = 4000) -> dict[str, Any]:
    """Cycles on one world variant, approving what waits after each, until every mode is fixed."""
    from benchmarks.bench_cycle import prepared
    from flywheel.flows.cycle import run_flow

    started = time.perf_counter()
    world = root / "world"
    write_world(world, variant=variant, n_events=events)
    cycles: list[dict[str, Any]] = []
    with Simulator(options=variant_options()) as sim:
        overrides = prepared(root / "home", world, sim.base_url)
        settings = load_settings(**overrides)
        flood = flood_clusters(settings) if variant == "flood" else set()
        start = champion_by_mode(settings)
        broken = {m for m, score in start.items() if score < FIXED_AT}
        for k in range(1, max_cycles + 1):
            t = time.perf_counter()
            cycle = run_flow(overrides=overrides)
            approved = approve_waiting(settings)
            now = champion_by_mode(settings)
            rollouts = _rollouts(cycle)
            cycles.append(
                {
                    "cycle": k,
                    "seconds": round(time.perf_counter() - t, 1),
                    "clusters_by_category": dict(Counter(c["category"] for c in cycle.clusters)),
                    "drafted_clusters": len(rollouts),
                    "clusters": [_cluster_line(c) for c in cycle.clusters],
                    "rollouts_sum": sum(rollouts.values()),
                    "rollouts_max": max(rollouts.values(), default=0),
                    "decisions": dict(Counter(str(c.decision) for c in cycle.candidates)),
                    "approved": [
                        {
                            "id": c.candidate_id,
                            "kind": str(c.kind),
                            "clusters": c.cluster_ids,
                            "fixes": getattr(c.payload, "fixes", None),
                        }
                        for c in approved
                    ],
                    "champion_by_mode": now,
                    "fixed": sorted(m for m in broken if now[m] >= FIXED_AT),
                    "flood_candidates": {
                        c.candidate_id: str(c.decision) for c in cycle.candidates if flood & set(c.cluster_ids)
                    },
                    "shared_templates": _shared_templates(cycle),
                }
            )
            # The flood runs one cycle past the fixes: with them in, its cluster is the loudest one left.
            if all(now[m] >= FIXED_AT for m in broken) and (variant != "flood" or k >= FLOOD_MIN_CYCLES):
                break
    first = cycles[0]
    promoted_clusters = {cid for c in cycles for a in c["approved"] for cid in a["clusters"]}
    all_fixed = next((c["cycle"] for c in cycles if len(c["fixed"]) == len(broken)), None)
    return {
        "modes": len(broken),
        "start_by_mode": start,
        "fixed_after_1": len(first["fixed"]),
        "fixed_after_1_modes": first["fixed"],
        "cycles_until_all_fixed": all_fixed,
        "cycles_run": len(cycles),
        "max_cycles": max_cycles,
        "rollouts_cycle1": {"sum": first["rollouts_sum"], "max_per_cluster": first["rollouts_max"]},
        "rollouts_all_cycles": sum(c["rollouts_sum"] for c in cycles),
        "rollouts_max_per_cluster": max(c["rollouts_max"] for c in cycles),
        "flood_clusters": sorted(flood),
        "flood_promoted": bool(flood & promoted_clusters) if variant == "flood" else None,
        "seconds": round(time.perf_counter() - started, 1),
        "cycles": cycles,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """One line per variant: the figures the issue asks for."""
    lines = [
        (
            f"{'variant':13s} | fixed after 1 cycle | cycles until all fixed | rollouts cycle 1 (sum / max) "
            "| flood promoted? | seconds"
        )
    ]
    for name, r in results.items():
        until = r["cycles_until_all_fixed"] or f"not in {r['cycles_run']}"
        flood = "-" if r["flood_promoted"] is None else ("YES" if r["flood_promoted"] else "no")
        lines.append(
            f"{name:13s} | {r['fixed_after_1']} of {r['modes']:<14d} | {until!s:22s} | "
            f"{r['rollouts_cycle1']['sum']} / {r['rollouts_cycle1']['max_per_cluster']:<22} | "
            f"{flood:15s} | {r['seconds']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant",
        action="append",
        choices=[*SCENARIOS, *WORLD_VARIANTS],
        help="Run only this scenario or world variant (repeatable); default: all of them.",
    )
    parser.add_argument("--cycles", type=int, default=MAX_CYCLES, help="Most cycles per world variant.")
    parser.add_argument("--events", type=int, default=4000, help="Feedback events of each world.")
    parser.add_argument("--golden-every", type=int, default=1, help="Keep every Nth golden item (1: all).")
    args = parse_args(parser, argv, variant=["reword"], events=600, golden_every=6)
    if args.smoke:  # each golden answer logged as a trace costs ~8 ms; the smoke run logs two, as tests do
        os.environ.setdefault("FLYWHEEL_EVAL__TRACE_ITEMS", "2")
    chosen = args.variant or [*SCENARIOS, *WORLD_VARIANTS]
    figures: dict[str, Any] = {}
    targets: dict[str, bool] = {}
    with given_prefect_api() or nullcontext(), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scenarios = [n for n in chosen if n in SCENARIOS]
        if scenarios:
            world = root / "world"
            write_world(world, n_events=args.events)
            thin_golden(world, args.golden_every)
        for name in scenarios:
            out = one_cycle(root / name.replace("+", "-"), world, SCENARIOS[name])
            figures[name] = out
            for mode, f in out["fixed"].items():
                print(
                    f"{name:12s} {mode:24s} champion {f['champion']:.3f} -> winner {f['winner']:.3f} "
                    f"{'FIXED' if f['fixed'] else 'not fixed'}"
                )
            targets[f"{name}: every prompt-fixable mode fixed in one cycle"] = all(
                f["fixed"] for f in out["fixed"].values()
            )
            targets[f"{name}: no category regresses beyond the policy"] = (
                out["worst_category_delta"] is not None
                and out["worst_category_delta"] >= -out["max_category_regression"]
            )
            targets[f"{name}: at most 300 rollouts per cluster"] = all(r <= 300 for r in out["rollouts"].values())
        variants: dict[str, dict[str, Any]] = {}
        for name in (n for n in chosen if n in WORLD_VARIANTS):
            out = run_variant(root / f"variant-{name}", name, args.cycles, args.events)
            variants[name] = figures[f"variant:{name}"] = out
            print(
                f"{name}: {out['fixed_after_1']} of {out['modes']} modes fixed after one approved cycle "
                f"({', '.join(out['fixed_after_1_modes']) or 'none'}); {out['seconds']} s",
                flush=True,
            )
            targets[f"{name}: every prompt-fixable mode fixed in one approved cycle"] = (
                out["fixed_after_1"] == out["modes"]
            )
            targets[f"{name}: at most 300 rollouts per cluster"] = out["rollouts_max_per_cluster"] <= 300
            if name == "flood":
                targets["flood: the flood's cluster never promoted"] = not out["flood_promoted"]
        if variants:
            print(table(variants))
    everything = set(chosen) == {*SCENARIOS, *WORLD_VARIANTS}
    name = "efficacy" if everything or args.smoke else "efficacy_" + "_".join(chosen).replace("+", "-")
    return report(name, figures, targets)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
