"""What becomes of a cycle's winners when no person decides: ``policy.auto_approve`` (or the run's
``--auto-approve``) chooses between waiting for a person, promoting on the policy alone, and
starting a canary that ``flywheel watch`` then promotes or rolls back.

The canary mode is what lets a scheduled cycle run with nobody in the loop and still be safe:
a winner reaches only ``watch.canary_percent`` of users until live feedback shows it is not worse.
Canaries run one at a time (the arms split users between production and a single canary), so a
winner whose canary cannot start now waits as ``pending_approval``, and its reason says why and
what starts it. Every action is recorded the way a person's is (:mod:`loop.promotion`,
:mod:`loop.canary`), by :data:`BY_POLICY` or :data:`BY_CANARY`, with the gate's reason as the note.
"""

from __future__ import annotations

from flywheel.candidates import Candidate
from flywheel.champions import Canary, running_canary
from flywheel.config import Settings
from flywheel.config_sections import ApprovalMode
from flywheel.errors import UsageError
from flywheel.loop.canary import record_start, start_canary
from flywheel.loop.promotion import promote, tag_run
from flywheel.state import StateStore

BY_POLICY = "policy (auto-approve)"
BY_CANARY = "policy (auto-approve canary)"


def run_mode(auto_approve: bool, configured: ApprovalMode) -> ApprovalMode:
    """The mode of one run: its own ``auto_approve`` (``flywheel cycle --auto-approve``) promotes
    whatever the config says; false leaves it to ``policy.auto_approve``."""
    return ApprovalMode.production if auto_approve else configured


def release(settings: Settings, state: StateStore, winner: Candidate, mode: ApprovalMode) -> Candidate:
    """Act on one winner of the gate (pending, logged to MLflow) as ``mode`` says."""
    if mode is ApprovalMode.person:
        return winner
    if mode is ApprovalMode.production:
        return promote(settings, state, winner, by=BY_POLICY, note=winner.reason)
    running = running_canary(settings, state)
    if running is not None and running.candidate_id == winner.candidate_id:  # a rerun after a crash
        return record_start(settings, state, winner, share=running.percent, by=BY_CANARY, note=winner.reason)
    if running is not None:
        return _wait(settings, state, winner, _one_at_a_time(running, winner, settings.watch.canary_percent))
    try:
        return start_canary(
            settings, state, winner, share=settings.watch.canary_percent, by=BY_CANARY, note=winner.reason
        )
    except UsageError as exc:  # refused with a reason (e.g. production moved): a person decides
        return _wait(settings, state, winner, f"not started as a canary: {exc}")


def _one_at_a_time(running: Canary, winner: Candidate, percent: float) -> str:
    same = running.kind is winner.slot
    return (
        f'waits: policy.auto_approve = "canary" runs one canary at a time, and a {running.kind} canary '
        f"(version {running.version}, {running.candidate_id or 'started by hand'}) runs "
        f"{'already' if same else 'now'}; once `flywheel watch` (or a person) ends it, the next cycle drafts "
        f"again, or `flywheel approve {winner.candidate_id} --canary {percent:g}` starts this one"
    )


def _wait(settings: Settings, state: StateStore, winner: Candidate, why: str) -> Candidate:
    """The winner stays ``pending_approval``; its reason (and its MLflow run's) says why."""
    winner.reason = f"{winner.reason}; {why}" if winner.reason else why
    state.save_candidate(winner)
    tag_run(settings, winner.mlflow_run_id, {"flywheel.reason": winner.reason})
    return winner
