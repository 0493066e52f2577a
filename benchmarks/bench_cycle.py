"""The time of a cycle, and the evaluation cache across cycles.

1. A cycle (demo world, simulator) as the Prefect flow ``improvement-cycle`` (the one orchestration
   of a cycle) in a fresh state directory, in one process with the model loaded and the Prefect API
   up (the ephemeral API's one-time start is reported apart).
2. A second cycle with the champion unchanged: the champion's evaluation makes no LLM calls.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from benchmarks._util import Target, given_prefect_api, parse_args, report
from flywheel.app.demo import demo_overrides
from flywheel.config import load_settings
from flywheel.feedback.ingest import ingest_files
from flywheel.feedback.store import open_store
from flywheel.sim.server import Simulator
from flywheel.sim.world import write_world


def thin_golden(world: Path, keep_every: int) -> int:
    """Keep every ``keep_every``-th golden item of the world (a smoke run's cycle: each category still
    there, a sixth of the evaluation, still over the policy's 30); the items kept."""
    path = world / "golden.jsonl"
    lines = path.read_text().splitlines()[::keep_every]
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)


def prepared(root: Path, world: Path, base_url: str) -> dict:
    from flywheel.loop.promotion import set_prompt

    overrides = demo_overrides(root, world, base_url)
    settings = load_settings(**overrides)
    settings.ensure_home()
    set_prompt(settings, (world / "prompt.txt").read_text().strip(), message="start", by="bench")
    with open_store(settings.resolved_store_url) as store:
        ingest_files([str(world / "feedback.jsonl")], store, settings.quarantine_dir, settings.ingest)
    return overrides


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--one-cycle", action="store_true", help="Skip the second cycle (the evaluation cache's check)."
    )
    parser.add_argument("--events", type=int, default=4000, help="Feedback events of the world.")
    parser.add_argument("--golden-every", type=int, default=1, help="Keep every Nth golden item (1: all).")
    args = parse_args(parser, argv, one_cycle=True, events=600, golden_every=6)
    if args.smoke:  # each golden answer logged as a trace costs ~8 ms; the smoke run logs two, as tests do
        os.environ.setdefault("FLYWHEEL_EVAL__TRACE_ITEMS", "2")
    from prefect import flow

    from flywheel.config import EmbeddingSettings
    from flywheel.embeddings import LocalEmbedder
    from flywheel.flows.cycle import run_flow

    @flow(name="warm-up")
    def warm_up() -> int:
        return 1

    given = given_prefect_api()
    with given or nullcontext(), tempfile.TemporaryDirectory() as tmp, Simulator() as sim:
        tmp_path = Path(tmp)
        world = tmp_path / "world"
        write_world(world, n_events=args.events)
        golden_items = thin_golden(world, args.golden_every)
        LocalEmbedder(EmbeddingSettings()).embed(["warm up"])
        t = time.perf_counter()
        warm_up()
        prefect_start = time.perf_counter() - t

        flow_over = prepared(tmp_path / "flow", world, sim.base_url)
        t = time.perf_counter()
        flowed = run_flow(overrides=flow_over)
        flow_s = time.perf_counter() - t

        figures: dict[str, object] = {
            "flow_seconds": round(flow_s, 2),
            # the first flow's start: the ephemeral API's, or a given server's (PREFECT_ENV) first run
            "ephemeral_api_start_seconds" if given is None else "given_api_first_flow_seconds": round(prefect_start, 2),
            "candidates": len(flowed.candidates),
            "golden_items": golden_items,
        }
        if args.one_cycle:
            return report("cycle", figures, [])
        calls_before = sim.counts().get("chat.product", 0)
        again = run_flow(overrides=flow_over)
        second_calls = sim.counts().get("chat.product", 0) - calls_before
        from flywheel.registry import use_mlflow

        client = use_mlflow(load_settings(**flow_over))
        exp = client.get_experiment_by_name("flywheel")
        (champ,) = client.search_runs(
            [exp.experiment_id],
            filter_string=(f"tags.`flywheel.cycle_id` = '{again.cycle_id}' and tags.`flywheel.kind` = 'champion'"),
        )
    figures["second_cycle_product_calls"] = second_calls  # what remains: drafting-time screening of new drafts
    figures["second_cycle_champion_eval_cached"] = champ.data.params.get("eval_cached")
    return report(
        "cycle", figures, [Target.check("champion not re-evaluated", champ.data.params.get("eval_cached") == "True")]
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
