"""``flywheel worker``: the project's deployments run in one long-lived process, whose embedder,
stores and clients stay loaded between runs (flows/worker.py says how a run is taken)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from flywheel.app.context import _settings
from flywheel.app.output import JsonFlag, answer, err, handles_errors
from flywheel.errors import SignalReceived

if TYPE_CHECKING:
    from flywheel.flows.worker import RunRecord


@handles_errors
def worker(
    home: Annotated[
        Path | None, typer.Option("--home", help="The state directory (FLYWHEEL_HOME) every run uses.")
    ] = None,
    pool: Annotated[str, typer.Option(help="The work pool to take runs from (prefect.yaml's).")] = "flywheel-process",
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="Only these work queues of the pool (repeat); default: all.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many runs.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then stop.")] = False,
    poll_seconds: Annotated[float, typer.Option(min=0.05, help="Seconds between looks for due runs.")] = 5.0,
    warm: Annotated[
        bool, typer.Option("--warm/--no-warm", help="Load the embedder and open the stores before the first run.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Run the project's scheduled and event-triggered flow runs in this process, one at a time,
    keeping the embedding model, the stores and the clients loaded between them.

    Takes the place of `prefect worker start --pool flywheel-process`. Ctrl-C or SIGTERM stop it:
    a run in progress is marked Crashed (a cycle resumes with its next run), and it exits 0."""
    from flywheel.flows.worker import WarmWorker, connected

    if home is not None:
        os.environ["FLYWHEEL_HOME"] = str(home.resolve())  # every flow run's settings read it
    settings = _settings()
    settings.ensure_home()
    with connected(settings) as client:
        w = WarmWorker(client, pool, queue, on_start=_started, on_done=_finished, on_error=_trouble)
        runs = _serve(w, settings, limit, once, poll_seconds, warm)
    answer(as_json, {"runs": [r.public() for r in runs[0]], "stopped_by": runs[1]}, lambda: None)


def _serve(
    w: Any, settings: Any, limit: int | None, once: bool, poll_seconds: float, warm: bool
) -> tuple[list[RunRecord], str | None]:
    done: list[RunRecord] = []
    try:  # a signal from here on stops the worker cleanly, whatever it is doing
        w.check_pool()
        if warm:
            started = time.perf_counter()
            rt = w.warm_up(settings)
            err.print(
                f"warm: {', '.join(sorted(rt.openings))} loaded in {time.perf_counter() - started:.1f} s",
                highlight=False,
            )
        err.print(
            f"taking runs of Flywheel's deployments on work pool {w.pool!r}"
            + (f" (queues {', '.join(w.queues)})" if w.queues else "")
            + " (Ctrl-C or SIGTERM to stop)",
            highlight=False,
        )
        return w.serve(limit=limit, once=once, poll_seconds=poll_seconds, done=done), None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as SignalReceived: a run in progress was marked
        number = exc.signal_number if isinstance(exc, SignalReceived) else signal.SIGINT
        name = signal.Signals(number).name
        err.print(f"stopped by {name}", highlight=False)
        return done, name


def _started(flow_run: Any, deployment: str) -> None:
    err.print(f"run {flow_run.name} ({flow_run.id}) of {deployment or '?'}: started", highlight=False)


def _finished(r: RunRecord) -> None:
    opened = ", ".join(f"{k} {v}" for k, v in sorted(r.opened.items())) or "nothing (warm)"
    err.print(
        f"run {r.name} ({r.flow_run_id}) of {r.deployment or '?'}: {r.state} in {r.seconds:.2f} s; opened {opened}",
        highlight=False,
    )


def _trouble(message: str) -> None:
    err.print(f"[yellow]{escape(message)}[/]", highlight=False)
