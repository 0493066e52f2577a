"""What a check finds: a problem with where it is (file and line) and how to fix it.

Problems are data, not exceptions: ``flywheel validate`` shows every one at once, and ``prompt set``
and ``cycle`` stop before any Prefect work when one is an error."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    ERROR = "error"  # the cycle would fail, or could not promote anything
    WARNING = "warning"  # probably a mistake; the cycle runs


class Check(StrEnum):
    CONFIG = "config"
    PROMPT = "prompt"
    GOLDEN = "golden"
    KNOWLEDGE = "knowledge"
    ENDPOINT = "endpoint"
    MODEL_FIT = "model_fit"


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True)

    check: Check
    severity: Severity
    file: str | None = None
    line: int | None = None
    message: str
    fix: str

    @property
    def where(self) -> str:
        """``file:line``, ``file`` or ``-``: how the table and the one-line summary name the place."""
        if self.file is None:
            return "-"
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def one_line(self) -> str:
        return f"{self.where}: {self.message} (fix: {self.fix})"


class ValidationReport(BaseModel):
    """The one JSON document of ``flywheel validate --json``."""

    ok: bool
    problems: list[Problem]

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> ValidationReport:
        found = list(problems)
        return cls(ok=not has_errors(found), problems=found)


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.severity is Severity.ERROR for p in problems)


def _problem(
    check: Check, severity: Severity, message: str, fix: str, file: Path | str | None, line: int | None
) -> Problem:
    return Problem(
        check=check,
        severity=severity,
        file=None if file is None else _shown(Path(file)),
        line=line,
        message=message,
        fix=fix,
    )


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) if path.is_absolute() else str(path)
    except (ValueError, OSError):
        return str(path)


def error(check: Check, message: str, fix: str, file: Path | str | None = None, line: int | None = None) -> Problem:
    return _problem(check, Severity.ERROR, message, fix, file, line)


def warning(check: Check, message: str, fix: str, file: Path | str | None = None, line: int | None = None) -> Problem:
    return _problem(check, Severity.WARNING, message, fix, file, line)
