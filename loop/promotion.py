"""Approval, rejection, rollback and status: deciding on candidates and moving their champions
(``flywheel.champions``), with who and when on the candidate, its MLflow run and the state store.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from flywheel.candidates import Candidate, ChampionKind, Decision, Outcome
from flywheel.champions import Move, MoveAction, champion, current_set
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.improvers.registry import improver
from flywheel.registry import use_mlflow
from flywheel.runtime import runtime_for
from flywheel.state import StateStore


def _now() -> datetime:
    return datetime.now(UTC)


def tag_run(settings: Settings, run_id: str | None, tags: dict[str, str]) -> None:
    if not run_id:
        return
    from flywheel.evals.tracking import set_tags

    set_tags(use_mlflow(settings), run_id, tags)


def stale_because(settings: Settings, state: StateStore, cand: Candidate) -> list[str]:
    """What moved in production since ``cand`` was evaluated, besides its own kind (checked by its
    parent) and promotions of candidates from the same cycle, which were evaluated side by side
    against the same champion and are meant to go together."""
    if cand.evaluated_against is None:  # decided before combinations were recorded
        return []
    now = current_set(settings, state)
    same_cycle = {c.slot: c.version for c in state.candidates(cycle_id=cand.cycle_id, decision=Decision.promoted)}
    moved = []
    for slot in ChampionKind:
        before, current = cand.evaluated_against.of(slot), now.of(slot)
        if slot is not cand.slot and current != before and current != same_cycle.get(slot):
            moved.append(f"{slot.noun} {before or 'none'} -> {current or 'none'}")
    return moved


def check_fresh(settings: Settings, state: StateStore, cand: Candidate) -> str | None:
    """Refuse ``cand`` when production moved since it was evaluated (its evaluation no longer applies);
    returns what production serves of its kind now."""
    if cand.mlflow_run_id is None:
        raise UsageError(f"{cand.candidate_id} has no MLflow run: nothing is promoted before it is logged")
    moved = stale_because(settings, state, cand)
    if moved:
        raise UsageError(
            f"{cand.candidate_id} was evaluated against another production ({'; '.join(moved)} since); production "
            "would run a combination nobody evaluated. Run a new cycle to evaluate it against today's champion."
        )
    current = champion(settings, state, cand.slot).current()
    if cand.parent != current:
        raise UsageError(
            f"{cand.candidate_id} was {improver(cand.kind).built_on} {cand.slot} {cand.parent}, but {current} is in "
            "production now; its evaluation no longer applies. Run a new cycle."
        )
    return current


def promote(settings: Settings, state: StateStore, cand: Candidate, *, by: str, note: str | None) -> Candidate:
    """Move the champion pointer to ``cand``; refuse when the champion moved since it was evaluated."""
    current = check_fresh(settings, state, cand)
    pointer = champion(settings, state, cand.slot)
    assert cand.version is not None
    pointer.move_to(
        cand.version, MoveAction.promote, by=by, candidate_id=cand.candidate_id, note=note, previous=current
    )
    when = _now()
    cand.decision, cand.decided_at, cand.decided_by, cand.note = Decision.promoted, when, by, note
    state.save_candidate(cand)
    for cid in cand.cluster_ids:
        state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, cand.outcome_for(cid, Outcome.promoted))
    tag_run(
        settings,
        cand.mlflow_run_id,
        {
            "flywheel.decision": "promoted",
            "flywheel.approved_by": by,
            "flywheel.approved_at": when.isoformat(),
            "flywheel.approval_note": note or "",
        },
    )
    return cand


def supersede_pending(settings: Settings, state: StateStore, newer: Candidate) -> None:
    """Only one candidate per champion slot waits at a time: a newer one replaces older pending ones. An
    older one that fixes something the newer does not is deferred, not superseded: its clusters are
    drafted first in the next cycle."""
    gain = settings.policy.category_gain
    for old in state.candidates(decision=Decision.pending_approval):
        if old.candidate_id == newer.candidate_id or old.slot is not newer.slot:
            continue
        extra = sorted(old.gains(gain) - newer.gains(gain))
        old.decided_at, old.decided_by = _now(), "flywheel"
        if extra:
            old.decision = Decision.deferred
            old.reason = (
                f"deferred: fixes {', '.join(extra)}, which {newer.candidate_id} from cycle "
                f"{newer.cycle_id} (waiting now) does not; redrafted in the next cycle"
            )
        else:
            old.decision = Decision.superseded
            old.reason = f"superseded by {newer.candidate_id} from cycle {newer.cycle_id}"
        state.save_candidate(old)
        tag_run(settings, old.mlflow_run_id, {"flywheel.decision": str(old.decision), "flywheel.reason": old.reason})


def _pending(state: StateStore, candidate_id: str) -> Candidate:
    cand = state.candidate(candidate_id)
    if cand is None:
        raise UsageError(f"no candidate {candidate_id!r}; `flywheel pending` lists those waiting")
    if cand.decision is not Decision.pending_approval:
        raise UsageError(f"{candidate_id} is {cand.decision}, not waiting for approval")
    return cand


def approve(settings: Settings, candidate_id: str, *, by: str, note: str | None) -> Candidate:
    with runtime_for(settings).borrow_state() as state:
        return promote(settings, state, _pending(state, candidate_id), by=by, note=note)


def reject(settings: Settings, candidate_id: str, *, by: str, reason: str) -> Candidate:
    if not reason.strip():
        raise UsageError("a rejection needs a --reason")
    with runtime_for(settings).borrow_state() as state:
        cand = _pending(state, candidate_id)
        when = _now()
        cand.decision, cand.decided_at, cand.decided_by, cand.note = Decision.rejected, when, by, reason
        cand.reason = f"rejected by {by}: {reason}"
        state.save_candidate(cand)
        for cid in cand.cluster_ids:
            state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, Outcome.rejected)
        tag_run(
            settings,
            cand.mlflow_run_id,
            {
                "flywheel.decision": "rejected",
                "flywheel.rejected_by": by,
                "flywheel.rejected_at": when.isoformat(),
                "flywheel.reason": cand.reason,
            },
        )
        return cand


def pending(settings: Settings) -> list[Candidate]:
    with runtime_for(settings).borrow_state() as state:
        return state.candidates(decision=Decision.pending_approval)


def rollback(settings: Settings, kind: str, *, by: str, note: str | None = None) -> dict[str, Any]:
    """Restore what the latest move still in effect replaced; the candidate it promoted (if any) is
    marked rolled back and its clusters are open again."""
    with runtime_for(settings).borrow_state() as state:
        move: Move = champion(settings, state, kind).rollback(by=by, note=note)
        when = _now()
        if move.candidate_id and (cand := state.candidate(move.candidate_id)):
            record_rollback(settings, state, cand, by=by, when=when)
    return {
        "kind": str(move.kind),
        "from_version": move.from_version,
        "to_version": move.to_version,
        "undone_candidate": move.candidate_id,
        "by": by,
        "at": when.isoformat(),
    }


def record_rollback(
    settings: Settings,
    state: StateStore,
    cand: Candidate,
    *,
    by: str,
    when: datetime,
    extra_tags: dict[str, str] | None = None,
) -> None:
    """The fix is undone: its clusters are open again (and count as not fixed by that kind)."""
    for cid in cand.cluster_ids:
        state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, Outcome.rolled_back)
    cand.payload.rolled_back_at, cand.payload.rolled_back_by = when, by
    state.save_candidate(cand)
    tag_run(
        settings,
        cand.mlflow_run_id,
        {"flywheel.rolled_back_at": when.isoformat(), "flywheel.rolled_back_by": by, **(extra_tags or {})},
    )


def loop_velocity_hours(promoted: list[Candidate]) -> float | None:
    """Median hours from a cluster's first negative event to the promotion of its fix."""
    hours = []
    for cand in promoted:
        if cand.decided_at is None:
            continue
        for first in cand.payload.cluster_first_seen.values():
            delta = cand.decided_at - datetime.fromisoformat(first)
            hours.append(delta.total_seconds() / 3600)
    return round(statistics.median(hours), 2) if hours else None


def verified_hours(cands: list[Candidate]) -> float | None:
    """Median hours from a cluster's first negative event to a `better` verdict of `flywheel watch`
    on its fix (the fix verified on live traffic, not only promoted)."""
    hours = [
        (cand.verified_at - datetime.fromisoformat(first)).total_seconds() / 3600
        for cand in cands
        if cand.verified_at is not None
        for first in cand.payload.cluster_first_seen.values()
    ]
    return round(statistics.median(hours), 2) if hours else None


def loop_velocity(promoted: list[Candidate]) -> dict[str, float | int | None]:
    """Loop velocity as `status` and the weekly review give it: to the promotion, and to the fix
    verified on live traffic."""
    return {
        "promoted_hours": loop_velocity_hours(promoted),
        "verified_hours": verified_hours(promoted),
        "verified_fixes": sum(1 for c in promoted if c.verified_at is not None),
    }


def set_prompt(settings: Settings, template: str, *, message: str | None, by: str) -> dict[str, Any]:
    """Bring a team's prompt in: a new registry version, pointed at by ``production``, recorded."""
    from flywheel.registry import register_prompt

    if not template.strip():
        raise UsageError("the prompt file is empty")
    ref = register_prompt(settings, template, message or "set by flywheel prompt set", {"flywheel.set_by": by})
    with runtime_for(settings).borrow_state() as state:
        champion(settings, state, ChampionKind.prompt).move_to(ref.version, MoveAction.set, by=by, note=message)
    return {"name": ref.name, "version": ref.version}
