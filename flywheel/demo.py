"""`flywheel demo`: the loop on the simulator's world, in a fresh state directory, with no API key.

What runs today: the world is written, the simulator is started on 127.0.0.1, the feedback is
ingested (malformed lines quarantined, PII scrubbed), and triage prints the failure clusters
with their routes. The improvement cycle plugs in after triage.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from flywheel.config import Settings, load_settings
from flywheel.feedback.ingest import ingest_files
from flywheel.feedback.store import open_store
from flywheel.sim.server import Simulator
from flywheel.sim.world import write_world


def demo_settings(home: Path, world: Path, base_url: str) -> Settings:
    """Settings for the demo: its own home, the world's golden set and knowledge, the simulator."""
    return load_settings(
        home=home,
        golden=world / "golden.jsonl",
        knowledge_source=world / "knowledge",
        openai_base_url=base_url,
        mlflow_tracking_uri=f"sqlite:///{home.resolve()}/mlflow.db",
    )


def run_demo(home: Path | None, console: Console) -> dict[str, Any]:
    from flywheel.cli import print_clusters, run_triage

    home = Path(tempfile.mkdtemp(prefix="flywheel-demo-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    world = home / "world"
    console.rule("Flywheel demo (simulated product model: no API key, nothing leaves 127.0.0.1)")
    summary = write_world(world)
    console.print(
        f"world written to {world}: {summary['feedback_events']} feedback events "
        f"(+{summary['malformed_lines']} malformed lines), {summary['golden_items']} golden items, "
        f"{summary['knowledge_documents']} knowledge documents ({summary['knowledge_updates']} outdated)",
        highlight=False,
    )
    with Simulator() as sim:
        settings = demo_settings(home, world, sim.base_url)
        settings.ensure_home()
        console.print(f"simulator serving at {sim.base_url}", highlight=False)
        with open_store(settings.resolved_store_url) as store:
            report = ingest_files([str(world / "feedback.jsonl")], store, settings.quarantine_dir, settings.ingest)
        console.print(
            f"ingest: {report.accepted} accepted, {report.duplicates} duplicates, {report.rejected} rejected "
            f"(kept in {', '.join(report.quarantine) or '-'}), PII scrubbed in {report.scrubbed}",
            highlight=False,
        )
        for e in report.errors:
            console.print(f"  {e.file}:{e.line}: {e.error}", highlight=False)
        console.print("triage: embedding queries with the local all-MiniLM-L6-v2 model ...")
        clusters = run_triage(settings)
        print_clusters(clusters, limit=15, console=console)
    routes: dict[str, int] = {}
    for c in clusters:
        routes[c.route] = routes.get(c.route, 0) + 1
    console.print(f"state kept in {home}", highlight=False)
    return {
        "home": str(home),
        "ingest": report.public(),
        "clusters": len(clusters),
        "routes": routes,
        "top_clusters": [c.model_dump(mode="json", exclude={"event_ids"}) for c in clusters[:5]],
        "mlflow_tracking_uri": settings.resolved_tracking_uri,
    }
