"""Checks before any cycle work: configuration, prompt variables, golden set, knowledge source,
endpoint and model fit, each problem with its file, line and fix.

``flywheel validate`` runs them all (:func:`validate`); ``prompt set`` and ``cycle`` call
:func:`preflight` with the settings they already loaded and stop on an error before Prefect starts,
so a mistake costs a second and one line instead of a failed cycle and its tracebacks."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from flywheel.config import Settings
from flywheel.loop.checks.configuration import load_checked
from flywheel.loop.checks.golden_set import GoldenCheck, check_golden
from flywheel.loop.checks.knowledge_source import check_knowledge
from flywheel.loop.checks.problems import Check, Problem, Severity, ValidationReport, has_errors
from flywheel.loop.checks.prompt_vars import PromptText, check_prompt, no_prompt, prompt_from_file, registry_prompt

__all__ = [
    "ALL_CHECKS",
    "PREFLIGHT_CHECKS",
    "Check",
    "Problem",
    "Severity",
    "ValidationReport",
    "has_errors",
    "preflight",
    "validate",
]

# What a cycle checks before it starts: everything but asking the model (a cycle does that anyway).
PREFLIGHT_CHECKS: frozenset[Check] = frozenset({Check.PROMPT, Check.GOLDEN, Check.KNOWLEDGE, Check.ENDPOINT})
ALL_CHECKS: frozenset[Check] = PREFLIGHT_CHECKS | {Check.MODEL_FIT}


def preflight(
    settings: Settings,
    prompt_template: str | None = None,
    *,
    network: bool,
    prompt_origin: str = "the prompt",
    checks: Collection[Check] = PREFLIGHT_CHECKS,
    prompt_required: bool = True,
) -> list[Problem]:
    """The problems ``checks`` find. ``prompt_template`` is the prompt to check (``prompt set``
    passes the file's text, with the file as ``prompt_origin``); None checks the production prompt,
    whose absence is an error when ``prompt_required`` (a cycle needs one). ``network=False`` skips
    the endpoint and the model."""
    checks = frozenset(checks)
    problems: list[Problem] = []
    prompt: PromptText | None = None
    if Check.PROMPT in checks or Check.MODEL_FIT in checks:
        prompt, found = _prompt(settings, prompt_template, prompt_origin, required=prompt_required)
        problems += found if Check.PROMPT in checks else []
    if Check.PROMPT in checks and prompt is not None:
        problems += check_prompt(settings, prompt)
    golden = check_golden(settings) if checks & {Check.GOLDEN, Check.MODEL_FIT} else GoldenCheck()
    problems += golden.problems if Check.GOLDEN in checks else []
    problems += check_knowledge(settings) if Check.KNOWLEDGE in checks else []
    if network and checks & {Check.ENDPOINT, Check.MODEL_FIT}:
        # Loaded only here: the openai SDK costs ~0.4 s to import, which `prompt set` need not pay.
        from flywheel.loop.checks.endpoint import probe_endpoint
        from flywheel.loop.checks.model_fit import check_model_fit

        probe = probe_endpoint(settings)
        problems += probe.problems
        prompt_ok = prompt is not None and not has_errors(p for p in problems if p.check is Check.PROMPT)
        if Check.MODEL_FIT in checks and probe.reachable and prompt_ok and prompt is not None:
            problems += check_model_fit(settings, prompt.template, golden)
    return problems


def validate(prompt_file: Path | None = None, *, network: bool = True) -> list[Problem]:
    """Everything ``flywheel validate`` reports: the configuration as commands load it, then every check."""
    settings, problems = load_checked()
    if settings is None:
        return problems
    template, origin = None, "the prompt"
    if prompt_file is not None:
        read = prompt_from_file(prompt_file)
        if isinstance(read, Problem):
            return [*problems, read]
        template, origin = read.template, read.origin
    return problems + preflight(
        settings, template, network=network, prompt_origin=origin, checks=ALL_CHECKS, prompt_required=False
    )


def _prompt(
    settings: Settings, template: str | None, origin: str, *, required: bool
) -> tuple[PromptText | None, list[Problem]]:
    if template is not None:
        return PromptText(template=template, origin=origin), []
    found = registry_prompt(settings)
    if isinstance(found, Problem):
        return None, [found]
    return (found, []) if found is not None else (None, [no_prompt(settings, required=required)])
