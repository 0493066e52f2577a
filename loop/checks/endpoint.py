"""The endpoint check: one cheap request, with a short timeout and no retries, to the configured
OpenAI-compatible endpoint. An endpoint that cannot be reached is a problem with a fix, not the
traceback a cycle would end in after its retries.

The probe uses a plain SDK client, not ``flywheel.llm``'s guarded one: a failed probe must not
count against the endpoint's give-up budget in the process that runs the cycle next."""

from __future__ import annotations

import os

import openai
from pydantic import BaseModel

from flywheel.config import Settings
from flywheel.errors import EndpointNotConfigured
from flywheel.llm import endpoint
from flywheel.loop.checks.configuration import find_key_line
from flywheel.loop.checks.problems import Check, Problem, error, warning

PROBE_TIMEOUT = 5.0
_SIMULATOR_HINT = "for a local try-out, run `flywheel sim serve --port 8765` and use http://127.0.0.1:8765/v1"


class EndpointProbe(BaseModel):
    """What the probe learned: whether the endpoint answers, and the models it lists (may be none)."""

    reachable: bool
    models: list[str] = []
    problems: list[Problem] = []


def probe_endpoint(settings: Settings, timeout: float = PROBE_TIMEOUT) -> EndpointProbe:
    try:
        url, key = endpoint(settings, purpose="`flywheel cycle`")
    except EndpointNotConfigured as exc:
        return EndpointProbe(
            reachable=False,
            problems=[
                error(
                    Check.ENDPOINT,
                    str(exc),
                    'set openai_base_url = "http://host:port/v1" in flywheel.toml or OPENAI_BASE_URL; '
                    f"{_SIMULATOR_HINT}",
                )
            ],
        )
    file, line = _where_set(settings)
    client = openai.OpenAI(base_url=url, api_key=key, timeout=timeout, max_retries=0)
    try:
        try:
            listed = [m.id for m in client.models.list().data]
        except openai.NotFoundError:  # some servers have no /models: one 1-token chat instead
            client.chat.completions.create(
                model=settings.target_model, max_tokens=1, messages=[{"role": "user", "content": "ping"}]
            )
            listed = []
    except openai.APIError as exc:
        return EndpointProbe(reachable=False, problems=[_failure(exc, url, timeout, file, line)])
    except Exception as exc:  # an answer the SDK cannot read: HTML, bytes that are not JSON
        return EndpointProbe(
            reachable=False,
            problems=[
                error(
                    Check.ENDPOINT,
                    f"{url} answered, but not like an OpenAI-compatible API ({type(exc).__name__}: {str(exc)[:160]})",
                    "check the URL: it is the API's base, usually ending in /v1",
                    file,
                    line,
                )
            ],
        )
    finally:
        client.close()
    return EndpointProbe(reachable=True, models=listed, problems=_missing_models(settings, listed))


def _failure(exc: openai.APIError, url: str, timeout: float, file: str | None, line: int | None) -> Problem:
    fix = (
        f"start the server at {url}, or correct openai_base_url in flywheel.toml / OPENAI_BASE_URL "
        f"(usually ending in /v1); {_SIMULATOR_HINT}"
    )
    if isinstance(exc, openai.APITimeoutError):
        return error(Check.ENDPOINT, f"{url} did not answer within {timeout:g} s", fix, file, line)
    if isinstance(exc, openai.APIConnectionError):
        return error(Check.ENDPOINT, f"cannot connect to {url}: {exc.__cause__ or exc}", fix, file, line)
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return error(
            Check.ENDPOINT,
            f"{url} refused the API key (HTTP {status})",
            "export OPENAI_API_KEY with a key for this endpoint (never put it in flywheel.toml)",
            file,
            line,
        )
    if status == 404:
        return error(
            Check.ENDPOINT,
            f"{url} has no OpenAI-compatible API (HTTP 404 on /models and /chat/completions)",
            "check the URL: it is the API's base, usually ending in /v1",
            file,
            line,
        )
    return error(
        Check.ENDPOINT,
        f"{url} answered HTTP {status}: {str(exc)[:160]}",
        "check the server's logs; Flywheel retries 429 and 5xx during a cycle, but not this check",
        file,
        line,
    )


def _missing_models(settings: Settings, listed: list[str]) -> list[Problem]:
    if not listed:
        return []
    roles = {
        "target_model": settings.target_model,
        "draft_model": settings.draft_model,
        "judge_model": settings.judge_model,
    }
    return [
        warning(
            Check.ENDPOINT,
            f"{role} {name!r} is not among the endpoint's models "
            f"({', '.join(sorted(listed)[:8])}{', ...' if len(listed) > 8 else ''})",
            f"set {role} in flywheel.toml (or FLYWHEEL_{role.upper()}) to a model the endpoint serves",
        )
        for role, name in roles.items()
        if name not in listed
    ]


def _where_set(settings: Settings) -> tuple[str | None, int | None]:
    """The flywheel.toml line that sets the endpoint, unless the environment overrides it."""
    if os.environ.get("OPENAI_BASE_URL") or settings.config_file is None:
        return None, None
    try:
        line = find_key_line(settings.config_file.read_text(encoding="utf-8"), ["openai_base_url"])
    except OSError:
        return None, None
    return (str(settings.config_file), line) if line is not None else (None, None)
