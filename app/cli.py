"""The ``flywheel`` command line (SPEC.md): every command takes ``--json`` and then prints exactly
one JSON document on stdout; logs and progress go to stderr. Exit codes: 0 success, 2 bad input
or usage, 1 any other failure. Errors name the offending file, line or field.

This module is the app and its table of contents: the commands live in :mod:`app.commands`, a
module a group, and are put on the app here, in the order ``flywheel --help`` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.app.commands.config import show_config
from flywheel.app.commands.cycle import approve, cycle, pending, promote_canary, reject, rollback, status
from flywheel.app.commands.dataset import dataset_app
from flywheel.app.commands.feedback import ingest, review, triage
from flywheel.app.commands.golden import golden_app
from flywheel.app.commands.imports import import_app
from flywheel.app.commands.judge import judge_app
from flywheel.app.commands.kb import kb_app
from flywheel.app.commands.prompt import prompt_app
from flywheel.app.commands.serve import keys_app, serve
from flywheel.app.commands.sim import demo, sim_app
from flywheel.app.commands.watch import watch
from flywheel.app.commands.worker import worker
from flywheel.app.display import print_clusters
from flywheel.app.setup_commands import register as register_setup
from flywheel.app.version import print_version
from flywheel.masking import install_log_masking

__all__ = ["app", "main", "print_clusters"]  # print_clusters: once defined here, still importable from here

app = typer.Typer(
    name="flywheel",
    help="Closed-loop improvement for LLM products: feedback in, evaluated and approved fixes out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Closed-loop improvement for LLM products: feedback in, evaluated and approved fixes out."""
    install_log_masking()  # before any command: a library's log line may quote a URL with its password


app.command()(ingest)
app.command()(triage)
register_setup(app)  # init, validate
app.command("config")(show_config)
app.command()(cycle)
app.command()(pending)
app.command()(approve)
app.command()(reject)
app.command()(rollback)
app.command("promote-canary")(promote_canary)
app.command()(watch)
app.command()(status)
app.command()(review)
app.command()(demo)
app.command()(serve)
app.command()(worker)

app.add_typer(import_app, name="import")
app.add_typer(sim_app, name="sim")
app.add_typer(dataset_app, name="dataset")
app.add_typer(kb_app, name="kb")
app.add_typer(prompt_app, name="prompt")
app.add_typer(golden_app, name="golden")
app.add_typer(keys_app, name="keys")
app.add_typer(judge_app, name="judge")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
