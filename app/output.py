"""How a command answers: the one JSON document of ``--json`` on stdout, everything else on stderr,
and Flywheel errors (and Ctrl-C or SIGTERM) as SPEC's exit codes."""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from flywheel.errors import FlywheelError, Interrupted, SignalReceived
from flywheel.masking import mask_secrets

OFF_TERMINAL_WIDTH = 180


def human_console(*, stderr: bool = False) -> Console:
    """Where people read: the terminal's own width on a terminal; off one (a pipe, a CI log, a file)
    rich's default of 80 columns would cut sentences mid-word, so text is not wrapped at all (soft
    wrap: the viewer wraps it) and tables and rules get a wide page."""
    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=OFF_TERMINAL_WIDTH, soft_wrap=True)


err = human_console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
F = TypeVar("F", bound=Callable[..., Any])


def emit(document: Any) -> None:
    """The single JSON document of a ``--json`` command."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def answer(as_json: bool, document: Any, show: Callable[[], object]) -> None:
    """A command's answer: with ``--json`` its one document on stdout, else ``show()`` prints it for
    people (on stderr, or stdout for what a script reads, as each command says)."""
    if as_json:
        emit(document)
    else:
        show()


def handles_errors(fn: F) -> F:
    """Map Flywheel errors to SPEC exit codes, with the message on stderr (and as JSON with --json)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _raise_on_sigterm()
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as SignalReceived
            number = exc.signal_number if isinstance(exc, SignalReceived) else signal.SIGINT
            failure: FlywheelError = Interrupted(
                f"interrupted by {signal.Signals(number).name}; what finished is "
                "recorded, and a cycle resumes with the next `flywheel cycle`",
                number,
            )
        except FlywheelError as exc:
            failure = exc
        finally:
            _restore_sigterm(previous)
        message = mask_secrets(str(failure))  # a message may quote a URL with its password
        if kwargs.get("as_json"):
            emit({"error": message, "exit_code": failure.exit_code})
        # One line, unwrapped; the message is text, never Rich markup (a "[section]" in it must show).
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(failure.exit_code)

    return wrapper  # type: ignore[return-value]


def _raise_on_sigterm() -> Any:
    """SIGTERM ends a command the way Ctrl-C does (an exception that unwinds and records), not by
    killing the process mid-write. Only the main thread can install handlers (tests call commands
    from others)."""

    def handler(number: int, _frame: Any) -> None:
        raise SignalReceived(number)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
