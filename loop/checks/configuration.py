"""The config check: the TOML parses and validates, each error at its line in the file.

``load_settings`` already names the field; this finds the line that sets it (or says it came from
the environment) and suggests the setting a misspelt key probably meant."""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ValidationError

from flywheel.config import Settings, config_file_path, load_settings
from flywheel.errors import UsageError
from flywheel.loop.checks.problems import Check, Problem, error, warning

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"""^\s*["']?([A-Za-z0-9_.-]+)["']?\s*=""")


def load_checked() -> tuple[Settings | None, list[Problem]]:
    """Settings as every command would load them, or the problems that stop them loading."""
    try:
        path = config_file_path()
    except UsageError as exc:
        return None, [
            error(
                Check.CONFIG,
                str(exc),
                "point FLYWHEEL_CONFIG at an existing TOML file, or unset it to use ./flywheel.toml",
            )
        ]
    try:
        settings = load_settings()
    except UsageError as exc:
        return None, _explain(exc, path)
    if path is None:
        return settings, [
            warning(
                Check.CONFIG,
                "no flywheel.toml in this directory and FLYWHEEL_CONFIG is unset: "
                "only the environment and the defaults apply",
                "run `flywheel init` to write a starter flywheel.toml, or set FLYWHEEL_CONFIG",
            )
        ]
    return settings, []


def _explain(exc: UsageError, path: Path | None) -> list[Problem]:
    cause = exc.__cause__
    if isinstance(cause, tomllib.TOMLDecodeError):
        found = _TOML_LINE.search(str(cause))
        return [
            error(
                Check.CONFIG,
                f"not valid TOML: {cause}",
                "fix the syntax at that line (strings in double quotes, one `key = value` per line, tables as [name])",
                path,
                int(found[1]) if found else None,
            )
        ]
    if isinstance(cause, ValidationError):
        text = path.read_text(encoding="utf-8") if path else ""
        return [_field_problem(err["loc"], err["msg"], err["type"], text, path) for err in cause.errors()]
    return [error(Check.CONFIG, str(exc), "fix the configuration it names", path)]


def _field_problem(loc: tuple[int | str, ...], msg: str, kind: str, text: str, path: Path | None) -> Problem:
    keys = [str(p) for p in loc]
    name = ".".join(keys) or "(root)"
    line = find_key_line(text, keys)
    origin = path if line is not None else None
    if kind == "extra_forbidden":
        known = known_keys(keys[:-1])
        close = difflib.get_close_matches(keys[-1], known, n=1)
        fix = (f"did you mean `{close[0]}`? " if close else "") + (
            "remove it or check its spelling: unknown settings are refused (README, Configuration)"
        )
        return error(Check.CONFIG, f"{name}: unknown setting", fix, origin, line)
    where = f"under [{'.'.join(keys[:-1])}]" if len(keys) > 1 else "at the top of flywheel.toml"
    env = "FLYWHEEL_" + "__".join(k.upper() for k in keys)
    source = "" if line is not None else f" (not set in the file: from the environment, e.g. {env})"
    return error(Check.CONFIG, f"{name}: {msg}{source}", f"correct `{keys[-1]}` {where}", origin, line)


def find_key_line(text: str, keys: list[str]) -> int | None:
    """The line that sets ``keys`` (a table path then a key) in TOML ``text``, or that opens the table."""
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER.match(line):
            table = header[1].split(".")
            if table == keys:
                return number
            continue
        if (key := _KEY.match(line)) and table + key[1].split(".") == keys:
            return number
    return None


def known_keys(table: list[str]) -> list[str]:
    """Setting names allowed in a table (``[]``: the top level), for "did you mean"."""
    model: type[BaseModel] = Settings
    for part in table:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(n for n in model.model_fields if n != "config_file")
