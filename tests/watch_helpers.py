"""Builders for the canary and watch tests: real prompt versions in a real MLflow (temp SQLite),
candidates in the real state store, and seeded synthetic feedback through the real ingest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from flywheel.candidates import Candidate, Decision
from flywheel.config import Settings
from flywheel.feedback.ingest import ingest_objects
from flywheel.feedback.store import open_store
from flywheel.loop.promotion import set_prompt
from flywheel.registry import register_prompt, use_mlflow
from flywheel.state import open_state


def prompt_candidate(
    settings: Settings, name: str = "c1", *, text: str = "Be precise.", clusters: dict[str, list[str]] | None = None
) -> Candidate:
    """A pending prompt candidate drafted from the production prompt (``prompt set`` first when none),
    with an MLflow run of its own, as a cycle leaves one."""
    from flywheel.registry import production_prompt

    if production_prompt(settings) is None:
        set_prompt(settings, "You are a helpful assistant.", message="start", by="test")
    parent = production_prompt(settings)
    assert parent is not None
    ref = register_prompt(settings, f"You are a helpful assistant. {text}", f"draft {name}", {})
    client = use_mlflow(settings)
    run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id, run_name=name)
    cand = Candidate(
        candidate_id=f"prompt-{name}",
        cycle_id=f"cycle-{name}",
        kind="prompt",
        cluster_ids=sorted(clusters or {}),
        parent=parent.version,
        version=ref.version,
        payload={
            "template": ref.template,
            "cluster_events": clusters or {},
            "cluster_first_seen": dict.fromkeys(clusters or {}, "2026-11-01T00:00:00+00:00"),
        },
        decision=Decision.pending_approval,
        mlflow_run_id=run.info.run_id,
        first_seen=datetime(2026, 11, 1, tzinfo=UTC),
        created_at=datetime.now(UTC),
    )
    with open_state(settings) as state:
        state.add_candidate(cand)
    return cand


def rated_events(
    seed: int,
    n: int,
    rate: float,
    *,
    users: int | None = None,
    prefix: str = "e",
    start: datetime | None = None,
    spacing: timedelta = timedelta(seconds=1),
    query: str = "How do I reset my password?",
    **fields: Any,
) -> list[dict[str, Any]]:
    """``n`` seeded thumbs up/down events, a ``rate`` share of them down, ``users`` distinct users
    (default one each)."""
    rng = np.random.default_rng(seed)
    start = start or datetime.now(UTC)
    downs = rng.random(n) < rate
    who = rng.integers(0, users, n) if users else np.arange(n)
    return [
        {
            "event_id": f"{prefix}-{seed}-{i}",
            "ts": (start + i * spacing).isoformat(),
            "signal": "thumbs_down" if down else "thumbs_up",
            "query": query,
            "output": "An answer.",
            "consent": True,
            "user_id": f"{prefix}-user-{u}",
            **fields,
        }
        for i, (down, u) in enumerate(zip(downs, who, strict=True))
    ]


def ingest(settings: Settings, events: list[dict[str, Any]]) -> int:
    """Through the real validation, scrubbing and store; returns how many were accepted."""
    with open_store(settings.resolved_store_url) as store:
        report = ingest_objects(events, "test", store, settings.quarantine_dir, settings.ingest)
    assert report.rejected == 0, report.errors
    return report.accepted


def watch_now(settings: Settings, *, dry_run: bool = False) -> Any:
    """``run_watch`` on the stores of this process's Runtime for ``settings``, as the faces call it."""
    from flywheel.loop.watch import run_watch
    from flywheel.runtime import runtime_for

    rt = runtime_for(settings)
    return run_watch(settings, rt.state, rt.feedback, dry_run=dry_run)
