"""Errors that the CLI maps to exit codes (SPEC: 2 for bad input or usage, 1 otherwise)."""

from __future__ import annotations


class FlywheelError(Exception):
    """A failure that is not the user's input: exit code 1."""

    exit_code = 1


class UsageError(FlywheelError):
    """Bad input or usage (a missing file, a malformed config, a bad argument): exit code 2."""

    exit_code = 2


class EndpointNotConfigured(UsageError):
    """No OpenAI-compatible endpoint is set and the command needs one."""

    def __init__(self, what: str = "this command") -> None:
        super().__init__(
            f"{what} needs an OpenAI-compatible endpoint, and none is configured. "
            "Set OPENAI_BASE_URL (and OPENAI_API_KEY) to OpenAI, vLLM or Ollama, "
            "or start the built-in simulator with `flywheel sim serve` and export the URL it prints "
            "as OPENAI_BASE_URL."
        )


class Interrupted(FlywheelError):
    """Stopped by a signal (Ctrl-C, SIGTERM): what ran is recorded and the next run resumes it."""

    def __init__(self, message: str, signal_number: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class SignalReceived(KeyboardInterrupt):
    """SIGTERM delivered as an exception (like Ctrl-C's KeyboardInterrupt, so no ``except Exception``
    swallows it): the command stops where it is and records what it did."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class StoreUnavailable(FlywheelError):
    """The feedback store cannot take a read or write right now (SQLite locked past its timeout,
    Postgres down or unreachable). Nothing of the failed batch was stored; retrying later is right,
    so the HTTP service answers 503 with Retry-After."""
