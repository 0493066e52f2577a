"""Feedback in and what it says: ``ingest``, ``triage`` and the weekly ``review``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from flywheel.app.context import _settings
from flywheel.app.display import _byte_progress, print_clusters
from flywheel.app.output import JsonFlag, answer, err, handles_errors
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.runtime import runtime_for

if TYPE_CHECKING:
    from flywheel.schemas import IngestReport


@handles_errors
def ingest(
    files: Annotated[list[str], typer.Argument(help="Feedback JSONL files (- for stdin).")],
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 2 when any line was rejected (after storing the good ones).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Validate, scrub and store feedback events; bad lines are quarantined, duplicates counted.

    Each line is one JSON object (README, "Feedback events"). Required: event_id (string, the idempotency key), ts (ISO 8601 string with a timezone), signal (thumbs_up, thumbs_down, rating, correction, edit, accept, dismiss, copy, outcome, expert_review), query, output.

    Optional: user_id, session_id, consent (JSON true or false; absent means false), prompt_version, model, index_version (numbers or strings, kept as strings), arm (production or canary), confidence (0..1), reason (wrong, outdated, unsafe, off_topic, format, tone, missing_context, not_relevant, already_done, other), comment, correction, final_text, value (a JSON number: rating 1..5, outcome 1 or 0, expert_review 0..1), context_ids, metadata.

    A text field longer than ingest.max_field_chars rejects its line.
    """  # noqa: E501 (--help text: Rich keeps line breaks, so a paragraph is one line it reflows)
    from flywheel.feedback.ingest import ingest_files, total_bytes

    settings = _settings()
    settings.ensure_home()
    total = total_bytes(files)
    with runtime_for(settings).borrow_feedback() as store, _byte_progress(total) as progress:
        task = progress.add_task("ingesting", total=total)
        # no bar (not a terminal, stdin): no per-line call either, it cost ~3% of an ingest
        advance = None if progress.disable else lambda n: progress.advance(task, n)
        report = ingest_files(files, store, settings.quarantine_dir, settings.ingest, advance)
    report.prefect_events = _emit_feedback_events(settings, report.negative)
    failed = strict and report.rejected > 0
    answer(as_json, report.public() | (_strict_error(report) if failed else {}), lambda: _print_ingest(report))
    if failed:
        err.print(f"[bold red]error:[/] {_strict_error(report)['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _strict_error(report: IngestReport) -> dict[str, Any]:
    lines = "line was" if report.rejected == 1 else "lines were"
    return {"error": f"--strict: {report.rejected} {lines} rejected (the others were stored)", "exit_code": 2}


def _print_ingest(report: IngestReport) -> None:
    """The counts, the first rejected lines and where they were kept; each on one line, never wrapped
    (a path broken over two lines cannot be pasted)."""

    def say(text: str) -> None:
        err.print(text, highlight=False, markup=False, soft_wrap=True)

    say(
        f"accepted {report.accepted}, duplicates {report.duplicates}, rejected {report.rejected}"
        + (f", PII scrubbed in {report.scrubbed}" if report.scrubbed else "")
    )
    for e in report.errors[:20]:
        say(f"  {e.file}:{e.line}: {e.error}")
    if report.rejected > 20:
        say(f"  ... and {report.rejected - 20} more")
    for q in report.quarantine:
        say(f"rejected lines kept in {q}")


def _emit_feedback_events(settings: Settings, negatives: int) -> int:
    """Tell Prefect (when a server is configured) how much new negative feedback arrived."""
    from flywheel.flows.events import emit_negative_feedback

    try:
        return emit_negative_feedback(settings, negatives)
    except Exception as exc:  # the feedback is stored either way; only the trigger misses it
        err.print(f"[yellow]warning:[/] feedback stored, but no Prefect event was sent: {exc}", highlight=False)
        return 0


def run_triage(settings: Settings, progress: Callable[[int], None] | None = None, *, full: bool = False) -> list[Any]:
    from flywheel.loop.triage_step import triage_step

    return triage_step(runtime_for(settings), progress, full=full)


@handles_errors
def triage(
    as_json: JsonFlag = False,
    full: Annotated[
        bool,
        typer.Option("--full", help="Re-cluster the whole backlog (otherwise only new events are read and assigned)."),
    ] = False,
) -> None:
    """Group negative feedback into failure clusters by root cause and route each to a fix."""
    settings = _settings()
    clusters = run_triage(settings, full=full)
    answer(as_json, {"clusters": [c.model_dump(mode="json") for c in clusters]}, lambda: print_clusters(clusters))


@handles_errors
def review(
    until: Annotated[
        str | None, typer.Option("--until", help="End of the reviewed week, ISO 8601 (default: now).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=31, help="Days reviewed.")] = 7,
    weeks: Annotated[int, typer.Option("--weeks", min=2, max=52, help="Weeks of trend.")] = 6,
    as_json: JsonFlag = False,
) -> None:
    """The weekly feedback review: worst-rated outputs of the week by cluster, and the negative rate's trend."""
    from datetime import datetime

    from flywheel.loop.review import review_markdown, weekly_review

    end = None
    if until:
        try:
            end = datetime.fromisoformat(until)
        except ValueError:
            raise UsageError(f"--until {until!r} is not an ISO 8601 date or time") from None
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    doc = weekly_review(_settings(), until=end, days=days, weeks=weeks)
    # Never wrapped by Rich: a markdown table row must stay one line in a pipe or a file
    # (a terminal still folds long lines for the eye).
    answer(
        as_json,
        doc.model_dump(mode="json"),
        lambda: Console().print(review_markdown(doc), markup=False, highlight=False, soft_wrap=True),
    )
