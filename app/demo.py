"""`flywheel demo`: a full improvement cycle on the simulator's world, with no API key.

In a fresh state directory: write the world, start the simulator on 127.0.0.1, bring in the
world's starting prompt (`prompt set`), index its (partly outdated) knowledge (`kb sync`), ingest
its feedback (malformed lines quarantined, PII scrubbed), run the Prefect flow `improvement-cycle`,
approve what passed the policy (as a person would with `flywheel approve`), then run a second cycle:
the cluster that prompt revisions could not fix (error codes the base model does not know) now has
its history and 1000+ usable examples, so it goes to fine-tuning (a dataset, a job on the simulator,
a fine-tuned model candidate), which is approved as a canary for 20% of users. Then live traffic
(:mod:`app.demo_live`): `flywheel serve` and the simulator's users; `flywheel watch` promotes the
canary, and rolls back a bad prompt a teammate promoted by hand. Finally the champion's golden score
before and after.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flywheel.app.demo_live import LIVE_OVERRIDES, run_live_act
from flywheel.app.where_to_look import mlflow_ui_command
from flywheel.candidates import Candidate
from flywheel.config import Settings, load_settings
from flywheel.errors import FlywheelError
from flywheel.feedback.ingest import ingest_files
from flywheel.flows.ephemeral import start_ephemeral_api_early
from flywheel.runtime import runtime_for
from flywheel.schemas import FailureCluster, IngestReport
from flywheel.sim.server import Simulator
from flywheel.sim.traffic import Via
from flywheel.sim.world import write_world

if TYPE_CHECKING:
    from flywheel.loop.report import CycleReport

DEMO_APPROVER = "demo-approver"
# Golden answers each evaluated run logs as MLflow traces when `[eval] trace_items` is left unset
# (the product's default logs all 228 of the demo's, ~1,100 traces and ~8 s of CPU for the demo):
# the first 50 are enough to compare runs side by side; every answer stays in each run's table.
DEMO_TRACE_ITEMS = 50


def demo_overrides(home: Path, world: Path, base_url: str) -> dict[str, Any]:
    """The demo's own home, the world's golden set and knowledge, and the simulator as endpoint."""
    return {
        "home": str(home),
        "golden": str(world / "golden.jsonl"),
        "knowledge_source": str(world / "knowledge"),
        "openai_base_url": base_url,
        "mlflow_tracking_uri": f"sqlite:///{home.resolve()}/mlflow.db",
    }


def run_demo(home: Path | None, console: Console, via: Via = "feedback") -> dict[str, Any]:
    """The whole demo (see the module's docstring); its JSON document. ``via`` is how the live act's
    users send their feedback (``otlp``: as OpenTelemetry GenAI spans to ``POST /v1/traces``)."""
    from flywheel.loop.status import status

    home = Path(tempfile.mkdtemp(prefix="flywheel-demo-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    world = home / "world"
    console.rule("Flywheel demo (simulated LLM: no API key, nothing leaves 127.0.0.1)")
    summary = write_world(world)
    console.print(
        f"world written to {world}: {summary['feedback_events']} feedback events "
        f"(+{summary['malformed_lines']} malformed lines), {summary['golden_items']} golden items, "
        f"{summary['knowledge_documents']} knowledge documents ({summary['knowledge_updates']} outdated)",
        highlight=False,
    )
    prefect_ready = start_ephemeral_api_early()  # its few seconds of start overlap bringing in the world
    with Simulator() as sim:
        overrides = demo_overrides(home, world, sim.base_url)
        settings: Settings = load_settings(**overrides)
        if settings.eval.trace_items is None:  # not set by the user: the demo's own, smaller number
            overrides["eval"] = {"trace_items": DEMO_TRACE_ITEMS}
            settings = load_settings(**overrides)
        settings.ensure_home()
        console.print(f"simulator serving at {sim.base_url}", highlight=False)
        report = _bring_in_the_team(settings, world, summary, console)
        prefect_ready()
        cycles, promoted, canary = _cycles(settings, overrides, console)
        live: dict[str, Any] | None = None
        if canary is not None:
            live = run_live_act(
                load_settings(**overrides, **LIVE_OVERRIDES),
                canary,
                (world / "prompt.txt").read_text().strip(),
                console,
                via=via,
            )
            if live["canary"]["action"] == "promoted":
                promoted.append(canary)
        before = cycles[0].champion_score
        if before is None:
            raise FlywheelError("the first cycle scored no golden item for the champion (the endpoint failed)")
        rt = runtime_for(settings)
        final = status(settings, rt.state, rt.feedback)
        after = _champion_score_now(settings, final["champions"])
    _print_result(console, settings, home, before, after, final["champions"])
    return {
        "home": str(home),
        "before": before,
        "after": after,
        "promoted": [c.candidate_id for c in promoted],
        "mlflow_tracking_uri": settings.resolved_tracking_uri,
        "cycle_id": cycles[-1].cycle_id,
        "cycle_ids": [c.cycle_id for c in cycles],
        "ingest": report.public(),
        "routes": [_routes(c.clusters) for c in cycles],
        "candidates": [c.public() for cycle in cycles for c in cycle.candidates],
        **cycles[-1].sections,  # each improver's section (the fine-tuning jobs and dataset)
        "champions": final["champions"],
        "loop_velocity_hours": final["loop_velocity_hours"],
        "live": live,
    }


def _bring_in_the_team(settings: Settings, world: Path, summary: dict[str, Any], console: Console) -> IngestReport:
    """What a team starts from: its prompt (``prompt set``), its knowledge (``kb sync``, then the
    source corrected behind the index's back), its feedback (``ingest``); the ingest's report."""
    from flywheel.knowledge.index import open_index
    from flywheel.loop.promotion import set_prompt

    start = set_prompt(
        settings, (world / "prompt.txt").read_text().strip(), message="the team's current prompt", by=DEMO_APPROVER
    )
    console.print(f"prompt set: {start['name']} v{start['version']} is production", highlight=False)
    with runtime_for(settings).borrow_state() as state:
        kb = open_index(settings, state).sync(world / "knowledge")
    console.print(
        f"kb sync: index version {kb.version} active ({kb.added} chunks embedded locally; "
        f"{summary['knowledge_updates']} documents are outdated)",
        highlight=False,
    )
    for doc in (world / "knowledge_updates").iterdir():  # the docs team fixes the source of truth
        shutil.copy(doc, world / "knowledge" / doc.name)
    console.print(
        f"the knowledge source was corrected ({summary['knowledge_updates']} documents); the active "
        "index still serves the old text until a refresh is approved",
        highlight=False,
    )
    with runtime_for(settings).borrow_feedback() as store:
        report = ingest_files([str(world / "feedback.jsonl")], store, settings.quarantine_dir, settings.ingest)
    console.print(
        f"ingest: {report.accepted} accepted, {report.duplicates} duplicates, {report.rejected} rejected "
        f"(kept in {', '.join(report.quarantine) or '-'}), PII scrubbed in {report.scrubbed}",
        highlight=False,
    )
    for e in report.errors:
        console.print(f"  {e.file}:{e.line}: {e.error}", highlight=False)
    return report


def _cycles(
    settings: Settings, overrides: dict[str, Any], console: Console
) -> tuple[list[CycleReport], list[Candidate], Candidate | None]:
    """Two improvement cycles, each followed by a person's approvals; the second cycle's best is kept
    back for a canary. The cycles, the approved candidates, the canary's candidate."""
    from flywheel.flows.cycle import run_flow
    from flywheel.loop.promotion import approve, pending

    cycles, promoted = [], []
    canary: Candidate | None = None
    for turn in (1, 2):
        console.rule(f"improvement cycle {turn} (Prefect flow improvement-cycle)")
        cycle = run_flow(auto_approve=False, overrides=overrides)
        cycles.append(cycle)
        _print_cycle(cycle, console)
        for cand in pending(settings):
            if turn == 2 and canary is None:  # the last cycle's best goes to a canary, judged on live traffic
                canary = cand
                continue
            console.print(
                f"approving {cand.candidate_id} ({cand.kind}) as {DEMO_APPROVER!r} "
                f"(what `flywheel approve {cand.candidate_id}` does)",
                highlight=False,
            )
            approve(settings, cand.candidate_id, by=DEMO_APPROVER, note="approved in the demo")
            promoted.append(cand)
    return cycles, promoted, canary


def _print_cycle(cycle: CycleReport, console: Console) -> None:
    from flywheel.app.display import print_clusters
    from flywheel.evals.report import ci_text
    from flywheel.improvers.registry import improver

    print_clusters(
        [FailureCluster.model_validate({**c, "event_ids": []}) for c in cycle.clusters], limit=12, console=console
    )
    for kind, section in cycle.sections.items():  # e.g. the fine-tuning dataset and jobs
        for line in improver(kind).report_lines(section):
            console.print(line, highlight=False)
    for note in cycle.improver_notes:
        console.print(f"  {note}", highlight=False)
    for c in cycle.candidates:
        console.print(
            f"  {c.candidate_id} ({c.kind}, {', '.join(c.cluster_ids)}): golden {c.golden_score} "
            f"delta {ci_text(c)} -> {c.decision}",
            highlight=False,
        )


def _champion_score_now(settings: Settings, champions: dict[str, Any]) -> float:
    """The golden score of what production serves now (prompt, model and index together)."""
    from flywheel.evals.pipeline import Variant
    from flywheel.loop.evaluate import evaluate_step
    from flywheel.registry import require_production_prompt

    champion_now = Variant(
        label="champion",
        prompt_template=require_production_prompt(settings).template,
        prompt_version=champions["prompt"],
        model=champions["model"],
        index_version=champions["index"],
        pipeline="builtin",
    )
    (measured,) = evaluate_step(runtime_for(settings), [champion_now])
    if measured.mean is None:
        raise FlywheelError("the champion's evaluation scored no golden item (the endpoint failed)")
    return measured.mean


def _print_result(
    console: Console, settings: Settings, home: Path, before: float, after: float, champions: dict[str, Any]
) -> None:
    console.rule("result")
    console.print(
        f"champion golden score: before {before:.3f} -> after {after:.3f} "
        f"(production prompt v{champions['prompt']}, index v{champions['index']}, "
        f"model {champions['model']})",
        highlight=False,
    )
    console.print(f"state kept in {home}", highlight=False)
    console.print(
        f"MLflow UI:  {mlflow_ui_command(settings.resolved_tracking_uri)}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(
        "Prefect UI: prefect server start, then run `flywheel cycle` with PREFECT_API_URL set", highlight=False
    )


def _routes(clusters: list[dict[str, Any]]) -> dict[str, int]:
    routes: dict[str, int] = {}
    for c in clusters:
        routes[c["route"]] = routes.get(c["route"], 0) + 1
    return routes
