"""``flywheel import SOURCE``: feedback from where a team already keeps it, through ingest's one path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from flywheel.app.commands.feedback import _emit_feedback_events
from flywheel.app.context import _settings
from flywheel.app.output import JsonFlag, emit, err, handles_errors
from flywheel.errors import UsageError
from flywheel.feedback.imports import ImportReport
from flywheel.runtime import runtime_for

import_app = typer.Typer(
    help="Import feedback from MLflow traces, OpenTelemetry GenAI spans (OTLP JSON) or Langfuse scores.",
    no_args_is_help=True,
)


@import_app.command("mlflow")
@handles_errors
def import_mlflow(
    experiment: Annotated[str, typer.Option("--experiment", help="The MLflow experiment whose traces to read.")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only traces from this time on, ISO 8601 (default: where the last import stopped, less "
            "imports.mlflow.lookback_hours; the first import reads everything).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """MLflow traces and their assessments as feedback events: a person's feedback becomes a signal, an
    expectation a correction, retriever spans the context_ids; idempotent by assessment id.

    Consent comes from the trace tag imports.mlflow.consent_key (default `consent`: true/yes/1); without
    it an event is stored for the statistics only, and its text never leaves the store."""
    from flywheel.feedback.mlflow_import import import_mlflow as run

    start = _parse_since(since)
    settings = _settings()
    settings.ensure_home()
    with runtime_for(settings).borrow_feedback() as store, runtime_for(settings).borrow_state() as state:
        report = run(settings, experiment, start, store, state)
    report.prefect_events = _emit_feedback_events(settings, report.negative)
    if as_json:
        emit(report.public())
    else:
        _print(report)


@import_app.command("otlp")
@handles_errors
def import_otlp(
    file: Annotated[
        str,
        typer.Argument(
            help="An OTLP JSON file: one ExportTraceServiceRequest per line (the "
            "Collector's file exporter), or one JSON document; - for stdin."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """OpenTelemetry GenAI spans as feedback events: gen_ai.evaluation.result events and OpenInference
    annotations become signals, with the span's messages, model, retrieved documents, user and session;
    idempotent by trace, span and evaluation name (`POST /v1/traces` on the service takes the same data live).

    Consent comes from the span attribute imports.otlp.consent_key (default `user.consent`); without it an
    event is stored for the statistics only, and its text never leaves the store."""
    from flywheel.feedback.otlp_import import import_otlp as run
    from flywheel.feedback.sources import check_openable

    check_openable(file)
    settings = _settings()
    settings.ensure_home()
    with runtime_for(settings).borrow_feedback() as store:
        report = run(settings, file, store)
    report.prefect_events = _emit_feedback_events(settings, report.negative)
    if as_json:
        emit(report.public())
    else:
        _print(report)


@import_app.command("langfuse")
@handles_errors
def import_langfuse(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only scores from this time on, ISO 8601 (default: where the last import of this project "
            "stopped, less imports.langfuse.lookback_hours; the first import reads everything).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Langfuse scores as feedback events, through its public API (imports.langfuse.host, public_key,
    secret_key): BOOLEAN a thumb, NUMERIC a rating or expert review, CATEGORICAL the signal its label
    names, a corrected output a correction (imports.langfuse.signals maps names); idempotent by score id.

    Consent comes from the trace metadata key imports.langfuse.consent_key (default `consent`); without
    it an event is stored for the statistics only, and its text never leaves the store. Scores from
    evaluators (source EVAL) are a judge's: skipped."""
    from flywheel.feedback.langfuse_import import import_langfuse as run

    start = _parse_since(since)
    settings = _settings()
    settings.ensure_home()
    with runtime_for(settings).borrow_feedback() as store, runtime_for(settings).borrow_state() as state:
        report = run(settings, start, store, state)
    report.prefect_events = _emit_feedback_events(settings, report.negative)
    if as_json:
        emit(report.public())
    else:
        _print(report)


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise UsageError(f"--since {since!r} is not an ISO 8601 date or time") from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def _print(report: ImportReport) -> None:
    """The counts as a short table, then the first rejections and where they were kept."""
    table = Table(title=f"flywheel import {report.source}: {report.experiment or report.file or report.host or ''}")
    for col in ("traces", "read", "accepted", "duplicates", "rejected", "skipped_no_consent", "skipped"):
        table.add_column(col)
    skipped = ", ".join(f"{why}: {n}" for why, n in report.skipped.items()) or "0"
    table.add_row(
        *(
            str(v)
            for v in (
                report.traces,
                report.read,
                report.accepted,
                report.duplicates,
                report.rejected,
                report.skipped_no_consent,
            )
        ),
        skipped,
    )
    err.print(table)
    for e in report.errors[:20]:
        err.print(
            f"  {e.item or e.index} (trace {e.trace_id}): {e.error}", highlight=False, markup=False, soft_wrap=True
        )
    if report.rejected > 20:
        err.print(f"  ... and {report.rejected - 20} more", highlight=False)
    for q in report.quarantine:
        err.print(f"rejected items kept in {q}", highlight=False, markup=False, soft_wrap=True)
