"""Approval, rejection, rollback and status: moving champion pointers, with a record of who and when.

Promotion of a prompt moves the MLflow prompt alias ``production``; the approval (who, when,
note) is written to the candidate's MLflow run and to the state store; rollback moves the alias
back to the previous champion and is itself recorded the same way.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timezone
from typing import Any

from flywheel.champion import move_model_alias, move_prompt_alias, production_model, production_prompt, use_mlflow
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.schemas import Candidate, ChampionSet
from flywheel.state import StateStore, as_datetime, open_state

KINDS = ("prompt", "rag", "model")
_KIND_OF_CANDIDATE = {"prompt": "prompt", "rag": "rag", "finetune": "model"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _tag_run(settings: Settings, run_id: str | None, tags: dict[str, str]) -> None:
    if not run_id:
        return
    from evals.tracking import set_tags

    set_tags(use_mlflow(settings), run_id, tags)


_FIELD_OF_KIND = {"prompt": "prompt", "rag": "index", "finetune": "model"}


def current_champions(settings: Settings, state: StateStore) -> ChampionSet:
    """The combination production serves now."""
    from flywheel.knowledge.index import ACTIVE

    prompt = production_prompt(settings)
    return ChampionSet(prompt=prompt.version if prompt else None, index=state.pointer(ACTIVE),
                       model=production_model(settings).version or "base")


def stale_because(settings: Settings, state: StateStore, cand: Candidate) -> list[str]:
    """What moved in production since ``cand`` was evaluated, besides its own kind (checked by its
    parent) and promotions of candidates from the same cycle, which were evaluated side by side
    against the same champion and are meant to go together."""
    if cand.evaluated_against is None:  # decided before combinations were recorded
        return []
    now = current_champions(settings, state)
    same_cycle = {_FIELD_OF_KIND[c.kind]: c.version for c in state.candidates(cycle_id=cand.cycle_id,
                                                                                decision="promoted")}
    moved = []
    for field in ("prompt", "index", "model"):
        before, current = getattr(cand.evaluated_against, field), getattr(now, field)
        if field != _FIELD_OF_KIND[cand.kind] and current != before and current != same_cycle.get(field):
            moved.append(f"{field} {before or 'none'} -> {current or 'none'}")
    return moved


def promote(settings: Settings, state: StateStore, cand: Candidate, *, by: str, note: str | None) -> Candidate:
    """Move the champion pointer to ``cand``; refuse when the champion moved since it was evaluated."""
    if cand.mlflow_run_id is None:
        raise UsageError(f"{cand.candidate_id} has no MLflow run: nothing is promoted before it is logged")
    moved = stale_because(settings, state, cand)
    if moved:
        raise UsageError(
            f"{cand.candidate_id} was evaluated against another production ({'; '.join(moved)} since); production "
            "would run a combination nobody evaluated. Run a new cycle to evaluate it against today's champion."
        )
    if cand.kind == "rag":
        return _promote_index(settings, state, cand, by=by, note=note)
    if cand.kind == "finetune":
        return _promote_model(settings, state, cand, by=by, note=note)
    current = production_prompt(settings)
    current_version = current.version if current else None
    if cand.parent != current_version:
        raise UsageError(
            f"{cand.candidate_id} was drafted from prompt v{cand.parent}, but production is now v{current_version}; "
            "its evaluation no longer applies. Run a new cycle."
        )
    assert cand.version is not None
    move_prompt_alias(settings, cand.version)
    return _record_promotion(settings, state, cand, "prompt", current_version, by, note)


def _promote_index(settings: Settings, state: StateStore, cand: Candidate, *, by: str, note: str | None) -> Candidate:
    from flywheel.knowledge.index import open_index

    index = open_index(settings, state)
    current = index.active_version()
    if cand.parent != (str(current) if current is not None else None):
        raise UsageError(
            f"{cand.candidate_id} was built on index v{cand.parent}, but v{current} is active now; "
            "its evaluation no longer applies. Run a new cycle."
        )
    assert cand.version is not None
    index.activate(int(cand.version))
    return _record_promotion(settings, state, cand, "rag", str(current) if current is not None else None, by, note)


def _promote_model(settings: Settings, state: StateStore, cand: Candidate, *, by: str, note: str | None) -> Candidate:
    """Point the registered model's alias `production` at the candidate's version."""
    current = production_model(settings)
    if cand.parent != (current.version or "base"):
        raise UsageError(
            f"{cand.candidate_id} was evaluated against model {cand.parent}, but {current.version or 'base'} "
            f"({current.provider_model}) is in production now; its evaluation no longer applies. Run a new cycle."
        )
    assert cand.version is not None
    move_model_alias(settings, cand.version)
    return _record_promotion(settings, state, cand, "model", current.version, by, note)


def _record_promotion(settings: Settings, state: StateStore, cand: Candidate, kind: str, previous: str | None,
                      by: str, note: str | None) -> Candidate:
    when = _now()
    cand.decision, cand.decided_at, cand.decided_by, cand.note = "promoted", when, by, note
    state.save_candidate(cand)
    assert cand.version is not None
    state.record_promotion(kind, "promote", previous, cand.version, cand.candidate_id, by, note)
    for cid in cand.cluster_ids:
        state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, cand.outcome_for(cid, "promoted"))
    _tag_run(settings, cand.mlflow_run_id, {"flywheel.decision": "promoted", "flywheel.approved_by": by,
                                            "flywheel.approved_at": when.isoformat(), "flywheel.approval_note": note or ""})
    return cand


def supersede_pending(settings: Settings, state: StateStore, newer: Candidate) -> None:
    """Only one candidate of a kind waits at a time: a newer one replaces older pending ones."""
    for old in state.candidates(decision="pending_approval", kind=newer.kind):
        if old.candidate_id == newer.candidate_id:
            continue
        old.decision, old.decided_at, old.decided_by = "superseded", _now(), "flywheel"
        old.reason = f"superseded by {newer.candidate_id} from cycle {newer.cycle_id}"
        state.save_candidate(old)
        _tag_run(settings, old.mlflow_run_id, {"flywheel.decision": "superseded", "flywheel.reason": old.reason})


def _pending(state: StateStore, candidate_id: str) -> Candidate:
    cand = state.candidate(candidate_id)
    if cand is None:
        raise UsageError(f"no candidate {candidate_id!r}; `flywheel pending` lists those waiting")
    if cand.decision != "pending_approval":
        raise UsageError(f"{candidate_id} is {cand.decision}, not waiting for approval")
    return cand


def approve(settings: Settings, candidate_id: str, *, by: str, note: str | None) -> Candidate:
    with open_state(settings.ensure_home()) as state:
        return promote(settings, state, _pending(state, candidate_id), by=by, note=note)


def reject(settings: Settings, candidate_id: str, *, by: str, reason: str) -> Candidate:
    if not reason.strip():
        raise UsageError("a rejection needs a --reason")
    with open_state(settings.ensure_home()) as state:
        cand = _pending(state, candidate_id)
        when = _now()
        cand.decision, cand.decided_at, cand.decided_by, cand.note = "rejected", when, by, reason
        cand.reason = f"rejected by {by}: {reason}"
        state.save_candidate(cand)
        for cid in cand.cluster_ids:
            state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, "rejected")
        _tag_run(settings, cand.mlflow_run_id, {"flywheel.decision": "rejected", "flywheel.rejected_by": by,
                                                "flywheel.rejected_at": when.isoformat(), "flywheel.reason": cand.reason})
        return cand


def pending(settings: Settings) -> list[Candidate]:
    with open_state(settings.ensure_home()) as state:
        return state.candidates(decision="pending_approval")


def _live_history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Promotions still in effect, oldest first: each rollback undoes the latest one."""
    stack: list[dict[str, Any]] = []
    for row in rows:
        if row["action"] == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(row)
    return stack


def rollback(settings: Settings, kind: str, *, by: str, note: str | None = None) -> dict[str, Any]:
    if kind not in KINDS:
        raise UsageError(f"rollback takes one of {', '.join(KINDS)}, not {kind!r}")
    with open_state(settings.ensure_home()) as state:
        live = _live_history(state.promotions(kind))
        # A model's first promotion replaced the base model, which rollback restores.
        if not live or (live[-1]["from_version"] is None and kind != "model"):
            raise UsageError(f"nothing to roll back: no earlier {kind} champion is recorded")
        undo = live[-1]
        current, target = undo["to_version"], undo["from_version"]
        if kind == "prompt":
            move_prompt_alias(settings, target)
        elif kind == "model":
            move_model_alias(settings, target)
            target = target or "base"
        else:
            from flywheel.knowledge.index import open_index

            open_index(settings, state).activate(int(target))
        state.record_promotion(kind, "rollback", current, target, undo["candidate_id"], by, note)
        when = _now()
        if undo["candidate_id"] and (cand := state.candidate(undo["candidate_id"])):
            # The fix is undone: its clusters are open again (and count as not fixed by that kind).
            for cid in cand.cluster_ids:
                state.record_attempt(cid, cand.cycle_id, cand.kind, cand.candidate_id, "rolled_back")
            cand.payload["rolled_back_at"] = when.isoformat()
            cand.payload["rolled_back_by"] = by
            state.save_candidate(cand)
            _tag_run(settings, cand.mlflow_run_id, {"flywheel.rolled_back_at": when.isoformat(),
                                                    "flywheel.rolled_back_by": by})
    return {"kind": kind, "from_version": current, "to_version": target, "undone_candidate": undo["candidate_id"],
            "by": by, "at": when.isoformat()}


def loop_velocity_hours(promoted: list[Candidate]) -> float | None:
    """Median hours from a cluster's first negative event to the promotion of its fix."""
    hours = []
    for cand in promoted:
        if cand.decided_at is None:
            continue
        for first in (cand.payload.get("cluster_first_seen") or {}).values():
            delta = cand.decided_at - datetime.fromisoformat(first)
            hours.append(delta.total_seconds() / 3600)
    return round(statistics.median(hours), 2) if hours else None


def status(settings: Settings) -> dict[str, Any]:
    from flywheel.feedback.store import open_store

    from flywheel.knowledge.index import ACTIVE

    prompt = production_prompt(settings)
    model = production_model(settings)
    with open_state(settings.ensure_home()) as state:
        index = state.pointer(ACTIVE)
        jobs = state.finetune_jobs()
        failed = state.prompt_failed_clusters()
        last_clusters = state.last_cycle_clusters()
        waiting = state.candidates(decision="pending_approval")
        promoted = state.candidates(decision="promoted")
        last = state.last_cycle_started()
        cycles = state.cycles(limit=1)
    with open_store(settings.resolved_store_url) as store:
        counts = store.counts()
        since = store.count_ingested_since(last) if last else counts["events"]
    return {
        "champions": {"prompt": prompt.version if prompt else None, "index": index, "model": model.provider_model},
        "model_version": model.version,
        "finetune": _finetune_status(last_clusters, failed, jobs, settings.triage.finetune_min_examples),
        "pending": [c.public() for c in waiting],
        "pending_approvals": len(waiting),
        "negative_feedback_rate": round(counts["negative"] / counts["events"], 4) if counts["events"] else None,
        "events": counts["events"],
        "events_since_last_cycle": since,
        "last_cycle": cycles[0] if cycles else None,
        "last_cycle_at": as_datetime(last).isoformat() if last else None,
        "loop_velocity_hours": loop_velocity_hours(promoted),
        "promotions": len(promoted),
    }


def _finetune_status(clusters: list[dict[str, Any]], failed: set[str], jobs: list[dict[str, Any]],
                     threshold: int) -> dict[str, Any]:
    """How far each persistent cluster (prompts could not fix it) is from fine-tuning, as of the
    last cycle's triage, and the fine-tune jobs with their state."""
    persistent = [{"cluster_id": c["cluster_id"], "category": c["category"], "route": c["route"],
                   "usable_examples": c.get("usable_examples", 0),
                   "missing": max(0, threshold - c.get("usable_examples", 0))}
                  for c in clusters if c["cluster_id"] in failed]
    return {"threshold": threshold, "persistent_clusters": persistent,
            "jobs": [{k: j.get(k) for k in ("job_id", "status", "dataset_version", "fine_tuned_model",
                                            "model_version", "error")} for j in jobs]}


def set_prompt(settings: Settings, template: str, *, message: str | None, by: str) -> dict[str, Any]:
    """Bring a team's prompt in: a new registry version, pointed at by ``production``, recorded."""
    from flywheel.champion import register_prompt

    if not template.strip():
        raise UsageError("the prompt file is empty")
    current = production_prompt(settings)
    ref = register_prompt(settings, template, message or "set by flywheel prompt set", {"flywheel.set_by": by})
    move_prompt_alias(settings, ref.version)
    with open_state(settings.ensure_home()) as state:
        state.record_promotion("prompt", "set", current.version if current else None, ref.version, None, by, message)
    return {"name": ref.name, "version": ref.version}
