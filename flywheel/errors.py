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
