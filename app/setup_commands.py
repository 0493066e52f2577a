"""`flywheel init` and `flywheel validate`: bringing one's own product, with every problem shown
before a cycle starts. ``register(app)`` adds both to a typer app.

User text (file names, messages, prompt snippets) is printed with Rich markup off: a message that
names ``[prompt_variables]`` must show it, not swallow it as a style tag."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flywheel.app.output import answer, emit, human_console
from flywheel.app.starter import InitResult, write_starter
from flywheel.errors import UsageError

if TYPE_CHECKING:  # the checks import the openai SDK: loaded when `validate` runs, not with the CLI
    from flywheel.loop.checks import Problem

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the starter kit.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files the kit would write.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a starter flywheel.toml, prompt, golden set, feedback sample and knowledge to edit into your own.

    Existing files are never overwritten without --force (exit 2, naming them). The kit describes the simulator's product, so it runs as it is against `flywheel sim serve --port 8765`.
    """  # noqa: E501 (--help text: Rich keeps line breaks, so a paragraph is one line it reflows)
    try:
        result = write_starter(directory, force=force)
    except UsageError as exc:
        _fail(str(exc), exc.exit_code, as_json)
    answer(as_json, result.model_dump(), lambda: _print_init(result))


def _print_init(result: InitResult) -> None:
    out = human_console()
    out.print(f"wrote {len(result.written) + len(result.overwritten)} files into {result.directory}:", markup=False)
    for name in result.written:
        out.print(f"  {name}", markup=False, highlight=False)
    for name in result.overwritten:
        out.print(f"  {name} (overwritten)", markup=False, highlight=False)
    out.print("edit them for your product (the comments in flywheel.toml explain each setting), then:", markup=False)
    for command in result.next:
        out.print(f"  {command}", markup=False, highlight=False)


def validate(
    prompt: Annotated[
        Path | None,
        typer.Option(
            "--prompt", help="Check this prompt file instead of the production prompt (before `flywheel prompt set`)."
        ),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Skip the endpoint and model checks.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check the config, prompt variables, golden set, knowledge source, endpoint and model fit.

    Each problem names its file and line and how to fix it. Exit 0 when nothing is an error (warnings allowed), 1 when something is.
    """  # noqa: E501 (--help text: Rich keeps line breaks, so a paragraph is one line it reflows)
    from flywheel.loop.checks import ValidationReport
    from flywheel.loop.checks import validate as run_checks

    report = ValidationReport.of(run_checks(prompt, network=not offline))
    answer(as_json, report.model_dump(mode="json"), lambda: print_problems(report.problems))
    if not report.ok:
        raise typer.Exit(1)


def stop_on_errors(problems: list[Problem]) -> None:
    """What ``prompt set`` and ``cycle`` do with the checks' findings before any Prefect work:
    warnings go to stderr, one line each; the first error is the command's one-line usage error
    (exit 2, never retried), with how many more `flywheel validate` lists."""
    from rich.text import Text

    from flywheel.errors import UsageError
    from flywheel.loop.checks import Severity

    errors = [p for p in problems if p.severity is Severity.ERROR]
    for p in problems:
        if p.severity is Severity.WARNING:
            Console(stderr=True).print(Text(f"warning: {p.one_line()}"), soft_wrap=True)
    if errors:
        more = f" ({len(errors) - 1} more: `flywheel validate` lists them)" if len(errors) > 1 else ""
        raise UsageError(errors[0].one_line() + more)


def register(app: typer.Typer) -> None:
    """Add `init` and `validate` to the CLI."""
    app.command("init")(init)
    app.command("validate")(validate)


def print_problems(problems: list[Problem], console: Console | None = None) -> None:
    """A table of the problems (or one line saying there are none) and a count."""
    from flywheel.loop.checks import Severity
    from flywheel.wording import plural

    style = {Severity.ERROR: "bold red", Severity.WARNING: "yellow"}
    out = console or human_console()
    if not problems:
        out.print("no problems found", markup=False)
        return
    table = Table(title="flywheel validate")
    for column in ("severity", "check", "where", "problem", "fix"):
        table.add_column(column, overflow="fold")
    for p in problems:
        table.add_row(
            Text(p.severity.value, style=style[p.severity]),
            Text(p.check.value),
            Text(p.where),
            Text(p.message),
            Text(p.fix),
        )
    out.print(table)
    errors = sum(p.severity is Severity.ERROR for p in problems)
    out.print(f"{plural(errors, 'error')}, {plural(len(problems) - errors, 'warning')}", markup=False)


def _fail(message: str, exit_code: int, as_json: bool) -> NoReturn:
    if as_json:
        emit({"error": message, "exit_code": exit_code})
    Console(stderr=True).print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    raise typer.Exit(exit_code)
