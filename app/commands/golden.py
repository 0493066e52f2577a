"""``flywheel golden``: the golden set's lifecycle (propose, review, accept, reject, coverage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flywheel.app.context import _settings, _who
from flywheel.app.output import JsonFlag, answer, err, handles_errors, human_console
from flywheel.errors import UsageError

if TYPE_CHECKING:
    from flywheel.config import Settings
    from flywheel.loop.golden.coverage import CoverageReport
    from flywheel.loop.golden.propose import ProposeReport
    from flywheel.loop.golden.versions import AcceptReport

golden_app = typer.Typer(
    help="Grow the golden set from feedback: propose items, review them, see coverage.", no_args_is_help=True
)


def _print_proposals(proposals: list[Any], title: str) -> None:
    if not proposals:
        Console().print(f"{title}: none", highlight=False)
        return
    table = Table(title=title)
    for col in ("proposal", "category", "scorer", "input", "expected", "source"):
        table.add_column(col, overflow="fold")
    for p in proposals:
        source = p.source.kind + (f" {p.source.cluster_id}" if p.source.cluster_id else "")
        source += f" ({', '.join(p.source.event_ids[:3])})" if p.source.event_ids else ""
        source += f" ({p.source.model})" if p.source.model else ""
        # Feedback text is never read as Rich markup.
        table.add_row(p.proposal_id, Text(p.category), p.scorer, Text(p.input), Text(p.expected), Text(source))
    human_console().print(table)


@golden_app.command("propose")
@handles_errors
def propose(
    synthetic: Annotated[
        int,
        typer.Option(
            "--synthetic",
            min=0,
            max=1000,
            help="Also draft up to N items with the drafting model, for categories under golden_set.min_per_category.",
        ),
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Propose golden items from consented corrections and expert reviews of open failure clusters.

    Proposals never hold PII placeholders or text without consent, and near-duplicates of golden items (or of other proposals) are dropped. They wait for `flywheel golden review`.
    """  # noqa: E501 (--help text: Rich keeps line breaks, so a paragraph is one line it reflows)
    from flywheel.loop.golden.propose import propose as do_propose

    report = do_propose(_settings(), synthetic=synthetic)
    answer(as_json, report.public(), lambda: _print_proposed(report))


def _print_proposed(report: ProposeReport) -> None:
    _print_proposals(
        report.proposals, f"{len(report.proposals)} new proposals from {report.open_clusters} open clusters"
    )
    dropped = {k: v for k, v in report.dropped.model_dump().items() if v}
    if dropped:
        err.print("dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items()), highlight=False)
    for note in report.notes:
        err.print(Text(f"note: {note}"), soft_wrap=True)
    if report.proposals:
        err.print(
            "accept with `flywheel golden accept ID...`, reject with `flywheel golden reject ID --reason TEXT`",
            highlight=False,
        )


@golden_app.command("review")
@handles_errors
def review(as_json: JsonFlag = False) -> None:
    """List the pending proposals."""
    from flywheel.loop.golden.versions import pending

    proposals = pending(_settings())
    answer(
        as_json,
        {"proposals": [p.public() for p in proposals]},
        lambda: _print_proposals(proposals, f"{len(proposals)} pending proposals"),
    )


@golden_app.command("accept")
@handles_errors
def accept(
    ids: Annotated[list[str] | None, typer.Argument(help="Proposal ids to accept.", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who accepts (recorded in MLflow).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add proposals to the golden set: a new version, written atomically, the previous one kept, logged to MLflow."""
    from flywheel.loop.golden.versions import accept as do_accept

    report = do_accept(_settings(), ids or [], by=_who(by))
    answer(as_json, report.model_dump(mode="json"), lambda: _print_accepted(report))


def _print_accepted(report: AcceptReport) -> None:
    err.print(
        f"accepted {len(report.accepted)} proposal(s) by {report.accepted_by}: golden version "
        f"{report.golden_version[:12]} ({report.items} items) in {report.path}",
        highlight=False,
    )
    if report.previous_kept:
        err.print(f"previous version kept at {report.previous_kept}", highlight=False)
    if report.already_accepted:
        err.print(f"already accepted: {', '.join(report.already_accepted)}", highlight=False)


@golden_app.command("reject")
@handles_errors
def reject(
    proposal_id: Annotated[str, typer.Argument(help="The proposal to reject.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who rejects.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a pending proposal, with the reason recorded; it is never proposed again."""
    from flywheel.loop.golden.versions import reject as do_reject

    if not (reason or "").strip():
        raise UsageError("golden reject needs --reason TEXT: the reason is recorded with the decision")
    p = do_reject(_settings(), proposal_id, by=_who(by), reason=reason or "")
    answer(as_json, p.public(), lambda: err.print(f"{p.proposal_id} rejected by {p.decided_by}", highlight=False))


@golden_app.command("coverage")
@handles_errors
def coverage(as_json: JsonFlag = False) -> None:
    """Per category: golden items, negative events, and failure clusters no golden item covers."""
    from flywheel.loop.golden.coverage import coverage_step

    settings = _settings()
    report = coverage_step(settings)
    answer(as_json, report.public(), lambda: _print_coverage(report, settings))


def _print_coverage(report: CoverageReport, settings: Settings) -> None:
    if report.golden_version is None:
        err.print(
            f"no golden set yet at {settings.golden_file}: `flywheel golden propose` starts one from the store's "
            "feedback (or point `golden` / FLYWHEEL_GOLDEN at your file)",
            highlight=False,
            markup=False,
        )
    if not report.categories:
        err.print("nothing to cover yet: no golden item and no failure cluster in the store", highlight=False)
        return
    table = Table(title=f"golden coverage (version {report.golden_version[:12] if report.golden_version else 'none'})")
    for col in ("category", "golden items", "negative events", "uncovered clusters"):
        table.add_column(col, overflow="fold")
    for row in report.categories:
        table.add_row(
            Text(row.category),
            str(row.golden_items),
            str(row.negative_events),
            ", ".join(row.uncovered_clusters) or "-",
        )
    human_console().print(table)
    if any(r.uncovered_clusters for r in report.categories):
        err.print(
            "`flywheel golden propose` proposes items for the uncovered clusters from their feedback", highlight=False
        )
