"""Prompt templates: ``{{ name }}`` variables, filled from ``[prompt_variables]`` in the config.
Shared by the evaluation (rendering the system prompt) and the prompt improver (a draft must keep
the champion's variables)."""

from __future__ import annotations

import re

from flywheel.errors import UsageError

VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def template_variables(template: str) -> set[str]:
    return set(VARIABLE.findall(template))


def render(template: str, values: dict[str, str]) -> str:
    missing = template_variables(template) - set(values)
    if missing:
        raise UsageError(
            f"the prompt uses {', '.join(sorted('{{' + m + '}}' for m in missing))} but no value is configured; "
            "set them under [prompt_variables] in flywheel.toml"
        )
    return VARIABLE.sub(lambda m: values[m.group(1)], template)
