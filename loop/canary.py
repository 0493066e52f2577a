"""Canary releases: approve a candidate for a share of users, then promote it or roll it back, by
hand (``approve --canary``, ``promote-canary``, ``rollback canary``) or by ``flywheel watch``.

The pointers move in :mod:`flywheel.champions`; here the candidate's record follows them: its
``canary`` record (percent, who, when, how it ended), its decision (``canary`` while it runs, then
``promoted`` or ``rejected``), its clusters' outcomes and the tags on its MLflow run. The record
steps are written so that repeating them (a rerun after a crash between the pointer move and the
record) changes nothing twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flywheel.candidates import CanaryOutcome, CanaryRecord, Candidate, ChampionKind, Decision, Outcome
from flywheel.champions import Canary, champion, running_canary
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.loop.promotion import _pending, check_fresh, tag_run
from flywheel.runtime import runtime_for
from flywheel.state import StateStore


def _now() -> datetime:
    return datetime.now(UTC)


def approve_canary(
    settings: Settings, candidate_id: str, *, percent: float | None, by: str, note: str | None
) -> Candidate:
    """Serve a pending candidate to ``percent`` % of users (default ``watch.canary_percent``); production stays."""
    share = settings.watch.canary_percent if percent is None else percent
    if not 0 < share < 100:
        raise UsageError(f"--canary takes a percent between 0 and 100 (exclusive), not {share:g}")
    with runtime_for(settings).borrow_state() as state:
        cand = _pending(state, candidate_id)
        if (running := running_canary(settings, state)) is not None:
            raise UsageError(
                f"a {running.kind} canary ({running.version}, {running.candidate_id or 'no candidate'}) runs already; "
                "one canary at a time: `flywheel promote-canary` or `flywheel rollback canary` first"
            )
        return start_canary(settings, state, cand, share=share, by=by, note=note)


def start_canary(
    settings: Settings, state: StateStore, cand: Candidate, *, share: float, by: str, note: str | None
) -> Candidate:
    """Move the canary pointer of ``cand``'s kind to it and record who, when and why, on the
    candidate, its clusters and its MLflow run. The caller checked that no canary runs and passes its
    own ``state`` (the gate starts canaries on the connection it decides with)."""
    check_fresh(settings, state, cand)
    assert cand.version is not None
    champion(settings, state, cand.slot).start_canary(
        cand.version, share, by=by, candidate_id=cand.candidate_id, note=note
    )
    return record_start(settings, state, cand, share=share, by=by, note=note)


def record_start(
    settings: Settings, state: StateStore, cand: Candidate, *, share: float, by: str, note: str | None
) -> Candidate:
    """The candidate's side of a canary's start (also what a rerun finishes after a crash that left
    the pointer moved and the candidate not yet recorded)."""
    when = _now()
    cand.decision, cand.decided_at, cand.decided_by, cand.note = Decision.canary, when, by, note
    cand.canary = CanaryRecord(percent=share, started_at=when, started_by=by)
    state.save_candidate(cand)
    for cid in cand.cluster_ids:
        state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, Outcome.canary)
    tag_run(
        settings,
        cand.mlflow_run_id,
        {
            "flywheel.decision": "canary",
            "flywheel.canary_percent": f"{share:g}",
            "flywheel.canary_by": by,
            "flywheel.canary_at": when.isoformat(),
            "flywheel.approval_note": note or "",
        },
    )
    return cand


def _running(settings: Settings, state: StateStore, kind: str | None) -> Canary:
    canary = running_canary(settings, state)
    if canary is None:
        raise UsageError("no canary is running (`flywheel approve ID --canary PERCENT` starts one)")
    if kind is not None and ChampionKind(kind) is not canary.kind:
        raise UsageError(f"the running canary is a {canary.kind} canary, not {kind}")
    return canary


def end_canary(
    settings: Settings,
    state: StateStore,
    kind: str | None,
    *,
    promote: bool,
    by: str,
    note: str | None = None,
    figures: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Promote the running canary to production, or roll it back (production never moved)."""
    if kind is not None and kind not in tuple(ChampionKind):
        raise UsageError(f"a canary is one of {', '.join(ChampionKind)}, not {kind!r}")
    canary = _running(settings, state, kind)
    cand = state.candidate(canary.candidate_id) if canary.candidate_id else None
    if promote and cand is not None:
        _check_still_fresh(settings, state, cand, canary)
    move = champion(settings, state, canary.kind).end_canary(promote=promote, by=by, note=note)
    if cand is not None:
        record_end(settings, state, cand, promote=promote, by=by, note=note, figures=figures)
    return {
        "kind": str(canary.kind),
        "version": canary.version,
        "percent": canary.percent,
        "action": "promoted" if promote else "rolled_back",
        "production": move.to_version,
        "candidate_id": canary.candidate_id,
        "by": by,
        "note": note,
    }


def _check_still_fresh(settings: Settings, state: StateStore, cand: Candidate, canary: Canary) -> None:
    """Production of the canary's kind must still be what the candidate was built on (unless a crash
    left it at the canary's version already)."""
    if canary.production != canary.version:
        check_fresh(settings, state, cand)


def record_end(
    settings: Settings,
    state: StateStore,
    cand: Candidate,
    *,
    promote: bool,
    by: str,
    note: str | None,
    figures: dict[str, Any] | None = None,
) -> Candidate:
    """The candidate's side of a canary's end; does nothing when it is recorded already."""
    if cand.canary is not None and cand.canary.outcome is not None:
        return cand
    when = _now()
    outcome = CanaryOutcome.promoted if promote else CanaryOutcome.rolled_back
    if cand.canary is None:
        cand.canary = CanaryRecord(percent=0.0, started_at=cand.decided_at or when, started_by=cand.decided_by or by)
    cand.canary.ended_at, cand.canary.ended_by, cand.canary.outcome = when, by, outcome
    cand.canary.figures = figures
    cand.decided_at, cand.decided_by, cand.note = when, by, note
    if promote:
        cand.decision = Decision.promoted
    else:
        cand.decision = Decision.rejected
        cand.reason = f"canary rolled back by {by}" + (f": {note}" if note else "")
    state.save_candidate(cand)
    for cid in cand.cluster_ids:
        state.record_attempt(
            cid,
            cand.cycle_id,
            cand.kind,
            cand.candidate_id,
            cand.outcome_for(cid, Outcome.promoted) if promote else Outcome.rolled_back,
        )
    tags = {
        "flywheel.decision": "promoted" if promote else "rejected",
        f"flywheel.canary_{outcome}_by": by,
        f"flywheel.canary_{outcome}_at": when.isoformat(),
        "flywheel.canary_note": note or "",
    }
    if promote:
        tags |= {"flywheel.approved_by": by, "flywheel.approved_at": when.isoformat()}
    else:
        tags |= {"flywheel.reason": cand.reason}
    if figures:
        tags["flywheel.watch_figures"] = json.dumps(figures, default=str)[:5000]
    tag_run(settings, cand.mlflow_run_id, tags)
    return cand
