"""The prompt check: every ``{{variable}}`` of the prompt has a value before a cycle renders it.

The built-in pipeline (``evals.pipeline``) renders the system prompt with ``[prompt_variables]``
only: the user's query is the user message and retrieved passages are appended after the prompt
inside ``<context>``, so Flywheel fills no variable at run time (``RUNTIME_VARIABLES`` is empty).
Before this check, a missing value surfaced 20 s into a cycle, after Prefect retries. A team's own
pipeline (``eval.pipeline``) receives the template and fills what it likes, so there a variable
without a value is not a problem.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from flywheel.config import Settings
from flywheel.loop.checks.configuration import find_key_line
from flywheel.loop.checks.problems import Check, Problem, error, warning
from flywheel.templates import VARIABLE, template_variables

RUNTIME_VARIABLES: frozenset[str] = frozenset()
_SINGLE_BRACES = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")


class PromptText(BaseModel):
    """A prompt template and where it came from (a file, or the registry's production alias)."""

    template: str
    origin: str


def prompt_from_file(path: Path) -> PromptText | Problem:
    try:
        return PromptText(template=path.read_text(encoding="utf-8"), origin=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return error(Check.PROMPT, f"cannot read the prompt file: {exc}", "give a readable UTF-8 text file", path)


def registry_prompt(settings: Settings) -> PromptText | Problem | None:
    """The production prompt, or None when there is none. A registry that was never written to
    (no tracking URI configured and no mlflow.db yet) is not opened, so nothing is created."""
    if settings.mlflow_tracking_uri is None and not (settings.home / "mlflow.db").exists():
        return None
    from flywheel.registry import production_prompt

    try:
        ref = production_prompt(settings)
    except Exception as exc:  # mlflow raises its own types for an unreachable or broken store
        return warning(
            Check.PROMPT,
            f"cannot read the prompt registry at {settings.resolved_tracking_uri}: {exc}",
            "check MLFLOW_TRACKING_URI, or pass the prompt to check with --prompt FILE",
        )
    if ref is None:
        return None
    return PromptText(template=ref.template, origin=f"prompts:/{ref.name}@production (v{ref.version})")


def no_prompt(settings: Settings, *, required: bool) -> Problem:
    message = f"no production prompt named {settings.prompt_name!r} in the prompt registry yet"
    fix = "bring yours in with `flywheel prompt set FILE` (check a file first with `flywheel validate --prompt FILE`)"
    return error(Check.PROMPT, message, fix) if required else warning(Check.PROMPT, message, fix)


def check_prompt(settings: Settings, prompt: PromptText) -> list[Problem]:
    """Variables without a value (errors), values no variable uses and single-brace look-alikes (warnings)."""
    if not prompt.template.strip():
        return [error(Check.PROMPT, "the prompt is empty", "write the system prompt your product uses", prompt.origin)]
    problems: list[Problem] = []
    used = template_variables(prompt.template)
    if not settings.eval.pipeline:
        for name in sorted(used - set(settings.prompt_variables) - RUNTIME_VARIABLES):
            problems.append(
                error(
                    Check.PROMPT,
                    f"the prompt uses {{{{{name}}}}}, which has no value under [prompt_variables] in flywheel.toml",
                    f'add `{name} = "..."` under [prompt_variables] in flywheel.toml, '
                    f"or take {{{{{name}}}}} out of the prompt",
                    prompt.origin,
                    _line_of(prompt.template, VARIABLE, name),
                )
            )
    config_text = _config_text(settings)
    for name in sorted(set(settings.prompt_variables) - used):
        problems.append(
            warning(
                Check.PROMPT,
                f"[prompt_variables] sets {name!r}, which the prompt does not use",
                f"remove it, or write {{{{{name}}}}} where the prompt needs it",
                settings.config_file,
                find_key_line(config_text, ["prompt_variables", name]) if config_text else None,
            )
        )
    for name in sorted(set(_SINGLE_BRACES.findall(prompt.template)) - used):
        problems.append(
            warning(
                Check.PROMPT,
                f"{{{name}}} has single braces: it is sent to the model as it is, not filled",
                f"write {{{{{name}}}}} for a variable, or ignore this if the braces are meant literally",
                prompt.origin,
                _line_of(prompt.template, _SINGLE_BRACES, name),
            )
        )
    return problems


def _line_of(text: str, pattern: re.Pattern[str], name: str) -> int | None:
    found = next((m for m in pattern.finditer(text) if m.group(1) == name), None)
    return None if found is None else text.count("\n", 0, found.start()) + 1


def _config_text(settings: Settings) -> str:
    try:
        return settings.config_file.read_text(encoding="utf-8") if settings.config_file else ""
    except OSError:
        return ""
