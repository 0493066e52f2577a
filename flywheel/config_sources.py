"""Where each effective setting came from: an environment variable, the TOML file, or the default.

``flywheel config`` shows this next to each value, so "why is the gate using 0.02?" has an answer
without reading the precedence rules (environment over file over defaults, :mod:`flywheel.config`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import AliasChoices, BaseModel

from flywheel.config import Settings

DEFAULT = "default"


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and key != "prompt_variables":
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _env_names(settings: Settings, top: str) -> list[str]:
    """The environment variables that can set top-level field ``top`` (aliases such as OPENAI_API_KEY)."""
    field = type(settings).model_fields[top]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(a).upper() for a in alias.choices]
    return [f"FLYWHEEL_{top.upper()}"]


def _file_keys(settings: Settings) -> set[str]:
    if settings.config_file is None or not settings.config_file.is_file():
        return set()
    with settings.config_file.open("rb") as fh:
        data = tomllib.load(fh)
    return {path for path, _ in _leaves(data)} | set(data)


def setting_sources(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Dotted setting name -> where its value came from (``env NAME``, ``file PATH`` or ``default``)."""
    env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
    in_file = _file_keys(settings)
    out: dict[str, str] = {}
    for path, _ in _leaves(settings.model_dump(mode="json", exclude={"config_file"})):
        top, _, rest = path.partition(".")
        names = _env_names(settings, top)
        if rest:
            names = [f"FLYWHEEL_{top.upper()}__{rest.replace('.', '__').upper()}", f"FLYWHEEL_{top.upper()}"]
        hit = next((n for n in names if n in env), None)
        if hit is not None:
            out[path] = f"env {hit}"
        elif path in in_file or (top in in_file and not isinstance(getattr(settings, top), BaseModel)):
            out[path] = f"file {settings.config_file}"
        else:
            out[path] = DEFAULT
    return out
