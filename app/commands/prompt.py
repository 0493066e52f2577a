"""``flywheel prompt``: the champion prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel.app.context import _settings, _who
from flywheel.app.output import JsonFlag, answer, err, handles_errors
from flywheel.errors import UsageError

prompt_app = typer.Typer(help="The champion prompt in the MLflow prompt registry.", no_args_is_help=True)


@prompt_app.command("set")
@handles_errors
def prompt_set(
    file: Annotated[Path, typer.Argument(help="Text file with the prompt template.")],
    message: Annotated[str | None, typer.Option("--message", help="Commit message for the new version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register FILE as a new prompt version and point `production` at it."""
    from flywheel.app.setup_commands import stop_on_errors
    from flywheel.loop.checks import Check, preflight
    from flywheel.loop.promotion import set_prompt

    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    settings = _settings()
    text = file.read_text(encoding="utf-8")
    stop_on_errors(preflight(settings, text, network=False, prompt_origin=str(file), checks={Check.PROMPT}))
    out = set_prompt(settings, text.strip(), message=message, by=_who(None))
    answer(
        as_json, out, lambda: err.print(f"prompt {out['name']} v{out['version']} is now production", highlight=False)
    )


@prompt_app.command("show")
@handles_errors
def prompt_show(
    version: Annotated[str | None, typer.Option("--version", help="A version (default: production).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the production prompt (or version N)."""
    from flywheel.registry import prompt_version, require_production_prompt

    settings = _settings()
    ref = prompt_version(settings, version) if version else require_production_prompt(settings)
    doc = {"name": ref.name, "version": ref.version, "template": ref.template, "aliases": list(ref.aliases)}
    answer(as_json, doc, lambda: print(ref.template))
