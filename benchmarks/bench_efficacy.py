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
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import flywheel  # noqa: F401 - offline switches
from benchmarks._util import report
from flywheel.config import load_settings
from sim.server import SimOptions, Simulator
from sim.world import write_world

PROMPT_FIXABLE = {"yearly_cost": "factual", "plan_json": "format", "sync_angry": "tone", "poem": "off_topic",
                  "other_account": "unsafe"}
SCENARIOS = {
    "reword": SimOptions(reword=True, seed=11),
    "reword+wild": SimOptions(reword=True, seed=11, drafting="wild", reject_json_schema=True),
}


def one_cycle(root: Path, world: Path, options: SimOptions) -> dict[str, Any]:
    from benchmarks.bench_cycle import prepared
    from flows.cycle import run_flow

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
    from evals.pipeline import Variant
    from flywheel.champions import champion as champion_of
    from flywheel.state import open_state
    from loop.evaluate import evaluate_step

    with open_state(settings.home) as state:
        index = champion_of(settings, state, "rag").current()
    champion = Variant(label="champion", prompt_template=(world / "prompt.txt").read_text().strip(),
                       model=settings.target_model, index_version=index)
    variants = [champion] + ([champion.model_copy(update={"label": winner.candidate_id,
                                                          "prompt_template": winner.template})]
                             if winner else [])
    results = evaluate_step(settings, variants)
    by_mode: list[dict[str, list[float]]] = []
    for result in results:
        modes: dict[str, list[float]] = {}
        for row in result.rows:
            modes.setdefault(row.id.split("-")[1], []).append(row.score or 0.0)
        by_mode.append(modes)
    return by_mode[0], (by_mode[1] if winner else by_mode[0])


def _mean(values: list[float] | None) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def main() -> bool:
    figures: dict[str, Any] = {}
    targets: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = root / "world"
        write_world(world)
        for name, options in SCENARIOS.items():
            out = one_cycle(root / name.replace("+", "-"), world, options)
            figures[name] = out
            for mode, f in out["fixed"].items():
                print(f"{name:12s} {mode:24s} champion {f['champion']:.3f} -> winner {f['winner']:.3f} "
                      f"{'FIXED' if f['fixed'] else 'not fixed'}")
            targets[f"{name}: every prompt-fixable mode fixed in one cycle"] = all(
                f["fixed"] for f in out["fixed"].values())
            targets[f"{name}: no category regresses beyond the policy"] = (
                out["worst_category_delta"] is not None
                and out["worst_category_delta"] >= -out["max_category_regression"])
            targets[f"{name}: at most 300 rollouts per cluster"] = all(r <= 300 for r in out["rollouts"].values())
    return report("efficacy", figures, targets)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
