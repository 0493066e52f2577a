"""``flywheel watch``: live negative-feedback rates of canaries and recent promotions against what
they replaced, the actions SPEC.md allows, and the drift alarm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flywheel.app.context import _runtime
from flywheel.app.output import JsonFlag, answer, err, handles_errors

if TYPE_CHECKING:
    from flywheel.loop.watch_record import WatchOutcome


@handles_errors
def watch(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compare and decide, but move nothing.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare live negative-feedback rates and act: roll back what got worse, promote a good canary.

    A running canary is compared with production on the same period, each promotion of
    watch.window_days with the version it replaced; a canary not worse is promoted only with
    watch.auto_promote."""
    from flywheel.flows.events import emit_drift_alarm
    from flywheel.loop.watch_record import watch_once

    rt = _runtime()
    settings = rt.settings
    outcome = watch_once(rt, dry_run=dry_run)
    if outcome.alarm_new and emit_drift_alarm(settings, outcome.drift.model_dump(mode="json")):
        err.print(f"[yellow]drift alarm[/] sent to Prefect: {outcome.drift.why}", highlight=False)
    answer(as_json, outcome.public(), lambda: _print_watch(outcome))


def _print_watch(outcome: WatchOutcome) -> None:
    rows = outcome.report.watches
    if not rows:
        err.print("nothing to watch: no canary runs and no promotion in watch.window_days", highlight=False)
    else:
        table = Table(title="flywheel watch: negative-feedback rate, side vs baseline")
        for col in (
            "what",
            "version",
            "against",
            "events",
            "rate",
            "baseline",
            "difference",
            "interval",
            "verdict",
            "action",
            "why",
        ):
            table.add_column(col, overflow="fold")
        for r in rows:
            c = r.comparison
            table.add_row(
                f"{r.scope} {r.kind}",
                r.version,
                r.against or "-",
                f"{c.events} vs {c.baseline_events}",
                str(c.negative_rate),
                str(c.baseline_rate),
                str(c.difference),
                f"[{c.ci_low}, {c.ci_high}]",
                str(c.verdict),
                str(r.action),
                r.why,
            )
        err.print(table)
    err.print(f"drift: {outcome.drift.why}", highlight=False)
