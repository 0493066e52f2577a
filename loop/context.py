"""What a cycle starts from: opening (or resuming) the cycle and the champion it improves on.

The context every step shares, and its helpers, are :mod:`improvers.context` (improvers run on it).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from flywheel.candidates import Candidate, ChampionKind
from flywheel.champions import champion
from flywheel.evals.golden import load_golden
from flywheel.improvers.context import (  # noqa: F401 - the cycle's context, as the steps import it
    CLUSTER_EVENTS_KEPT,
    CycleContext,
    EndpointFailed,
    cluster_events,
    earliest_seen,
    endpoint_errors,
    short_hash,
)
from flywheel.llm import endpoint
from flywheel.registry import production_model, require_production_prompt
from flywheel.runtime import Runtime


def begin(rt: Runtime) -> CycleContext:
    """Check what the cycle needs (endpoint, champion, golden set) and open or resume a cycle on the
    process's Runtime ``rt`` (the context hands out its stores)."""
    settings = rt.settings
    endpoint(settings, purpose="`flywheel cycle`")
    prompt = require_production_prompt(settings)
    golden = load_golden(settings.golden_file)
    with rt.borrow_state() as state:
        cycle_id = state.unfinished_cycle()
        resumed = cycle_id is not None
        if cycle_id is None:
            cycle_id = f"cyc-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        state.start_cycle(cycle_id)
        index_version = champion(settings, state, ChampionKind.rag).current()
    model = production_model(settings)
    ctx = CycleContext(
        settings=settings,
        cycle_id=cycle_id,
        resumed=resumed,
        champion_version=prompt.version,
        champion_template=prompt.template,
        golden_version=golden.version,
        index_version=index_version,
        champion_model=model.provider_model,
        champion_model_version=model.version,
    )
    ctx._runtime = rt
    return ctx


def record_candidates(ctx: CycleContext, candidates: Sequence[Candidate]) -> None:
    """Every proposed candidate in the state store, where the gate, approval and a resumed cycle
    read it (an improver need not store its own; one it stored already is left as it is)."""
    with ctx.state() as state:
        for cand in candidates:
            if state.candidate(cand.candidate_id) is None:
                state.add_candidate(cand)
