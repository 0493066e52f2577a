"""The improvement cycle and its decisions: ``cycle``, ``pending``, ``approve``, ``reject``,
``rollback`` and ``status``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.app.context import _runtime, _settings, _who
from flywheel.app.display import print_candidates, print_outcomes, print_status
from flywheel.app.output import JsonFlag, answer, err, handles_errors
from flywheel.config import Settings
from flywheel.wording import plural

if TYPE_CHECKING:
    from flywheel.candidates import Candidate
    from flywheel.loop.report import CycleReport


@handles_errors
def cycle(
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Promote on the policy alone.")] = False,
    canary: Annotated[
        bool,
        typer.Option(
            "--canary",
            help="Start the winners as canaries at watch.canary_percent, one at a time, for `flywheel watch` "
            'to promote or roll back (policy.auto_approve = "canary" for this run, also when given with '
            "--auto-approve).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run one improvement cycle (the Prefect flow `improvement-cycle`); never waits for a person."""
    from flywheel.app.setup_commands import stop_on_errors
    from flywheel.loop.checks import preflight

    # Config, prompt variables, golden set and knowledge source are checked before any Prefect
    # work: a mistake there is one line now, not a failed flow after retries.
    settings = _settings(policy={"auto_approve": "canary"} if canary else None)
    stop_on_errors(preflight(settings, network=False))
    from flywheel.app.where_to_look import mlflow_ui_command
    from flywheel.flows.cycle import run_flow

    report = run_flow(auto_approve="canary" if canary else auto_approve)
    answer(as_json, report.public(), lambda: _print_cycle(report, mlflow_ui_command(settings.resolved_tracking_uri)))


def _print_cycle(report: CycleReport, ui: str) -> None:
    err.print(
        f"cycle {report.cycle_id}: champion golden score {report.champion_score}", highlight=False, soft_wrap=True
    )
    print_outcomes(report.outcomes)
    if report.candidates:
        print_candidates(report.candidates, f"candidates of {report.cycle_id}")
    else:  # an empty table says nothing; the outcomes above say why
        why = "the table above says what stopped each cluster" if report.outcomes else "no failure clusters"
        err.print(f"no candidates in {report.cycle_id}: {why}", highlight=False, soft_wrap=True)
    if report.judge is not None:
        kappa = "undefined" if report.judge.kappa is None else f"{report.judge.kappa:.2f}"
        err.print(
            f"judge calibration: {report.judge.items} items, kappa {kappa} "
            f"({'trusted' if report.judge.trusted else 'not trusted alone'})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for note in report.notes:
        err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    err.print(f"runs, scores and prompt versions in the MLflow UI: {ui}", highlight=False, markup=False, soft_wrap=True)


@handles_errors
def pending(as_json: JsonFlag = False) -> None:
    """Candidates waiting for approval, with their scores and MLflow run ids."""
    from flywheel.loop.promotion import pending as waiting

    cands = waiting(_settings())
    answer(
        as_json,
        {"pending": [c.public() for c in cands]},
        lambda: print_candidates(cands, f"{plural(len(cands), 'candidate')} waiting for approval"),
    )


@handles_errors
def approve(
    candidate_id: Annotated[str, typer.Argument(help="The candidate to promote.")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who approves (default: $FLYWHEEL_USER or your login).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why, for the record.")] = None,
    canary: Annotated[
        float | None,
        typer.Option(
            "--canary",
            metavar="PERCENT",
            help="Serve it to PERCENT % of users first (production stays); `flywheel watch` compares the arms.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a pending candidate: it is promoted (or, with --canary, served to a share of users), and
    who/when/note go on its MLflow run."""
    from flywheel.loop.promotion import approve as do_approve

    settings = _settings()
    if canary is not None:
        from flywheel.loop.canary import approve_canary

        cand = approve_canary(settings, candidate_id, percent=canary, by=_who(by), note=note)
    else:
        cand = do_approve(settings, candidate_id, by=_who(by), note=note)
    _resume_waiting_flow(settings)
    answer(as_json, cand.public(), lambda: _print_approved(cand))


def _print_approved(cand: Candidate) -> None:
    if cand.canary is not None:
        err.print(
            f"{cand.candidate_id} is a {cand.canary.percent:g}% canary ({cand.kind} v{cand.version}) by "
            f"{cand.decided_by}; production stays. `flywheel watch` compares the arms.",
            highlight=False,
        )
    else:
        what = f"{cand.slot.noun} v{cand.version}"
        err.print(f"{cand.candidate_id} promoted ({what}) by {cand.decided_by}", highlight=False)


def _resume_waiting_flow(settings: Settings) -> None:
    """A cycle paused for approval in the Prefect UI goes on once all its candidates are decided."""
    from flywheel.flows.approval import resume_if_decided

    try:
        resumed = resume_if_decided(settings)
    except Exception as exc:  # the decision stands; the paused run times out or is resumed in the UI
        err.print(f"[yellow]warning:[/] could not resume the flow run waiting for approval: {exc}", highlight=False)
        return
    for run_id in resumed:
        err.print(f"resumed the flow run {run_id} that was waiting for approval", highlight=False)


@handles_errors
def reject(
    candidate_id: Annotated[str, typer.Argument(help="The candidate to reject.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    by: Annotated[str | None, typer.Option("--by", help="Who rejects.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a pending candidate, with a reason that is recorded on its MLflow run."""
    from flywheel.loop.promotion import reject as do_reject

    settings = _settings()
    cand = do_reject(settings, candidate_id, by=_who(by), reason=reason)
    _resume_waiting_flow(settings)
    answer(
        as_json, cand.public(), lambda: err.print(f"{cand.candidate_id} rejected by {cand.decided_by}", highlight=False)
    )


@handles_errors
def rollback(
    kind: Annotated[str, typer.Argument(help="prompt, rag or model; or canary (then optionally its kind).")],
    canary_kind: Annotated[
        str | None, typer.Argument(metavar="[KIND]", help="With `canary`: the running canary's kind, as a check.")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who rolls back.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Restore the previous champion of a kind, or end the running canary (`rollback canary`); recorded."""
    from flywheel.errors import UsageError

    if kind == "canary":
        from flywheel.loop.canary import end_canary

        rt = _runtime()
        out = end_canary(rt.settings, rt.state, canary_kind, promote=False, by=_who(by), note=note)
        answer(
            as_json,
            out,
            lambda: err.print(
                f"{out['kind']} canary v{out['version']} rolled back; production serves v{out['production']}",
                highlight=False,
            ),
        )
        return
    if canary_kind is not None:
        raise UsageError(f"rollback {kind} takes no second argument (only `rollback canary [KIND]` does)")
    from flywheel.loop.promotion import rollback as do_rollback

    out = do_rollback(_settings(), kind, by=_who(by), note=note)
    answer(as_json, out, lambda: err.print(f"{kind}: v{out['from_version']} -> v{out['to_version']}", highlight=False))


@handles_errors
def promote_canary(
    kind: Annotated[str | None, typer.Argument(metavar="[KIND]", help="The running canary's kind, as a check.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who promotes.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Promote the running canary to production (for every user) and end the canary; recorded."""
    from flywheel.loop.canary import end_canary

    rt = _runtime()
    out = end_canary(rt.settings, rt.state, kind, promote=True, by=_who(by), note=note)
    answer(
        as_json,
        out,
        lambda: err.print(
            f"{out['kind']} canary v{out['version']} promoted: production serves v{out['production']}", highlight=False
        ),
    )


@handles_errors
def status(as_json: JsonFlag = False) -> None:
    """Champions, pending approvals, negative-feedback rate, events since the last cycle, loop velocity."""
    from flywheel.loop.status import status as get_status

    rt = _runtime()
    doc = get_status(rt.settings, rt.state, rt.feedback)
    answer(as_json, doc, lambda: print_status(doc))
