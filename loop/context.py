"""What a cycle starts from: opening (or resuming) the cycle and the champion it improves on, and
the helpers every step shares (endpoint errors, content hashes, first-seen times).

Every step stores its result in the state store under a key derived from the cycle and its inputs
(drafts per cluster, candidates by a content hash, evaluations by variant and golden version,
MLflow runs by tags), so a cycle that was killed and is started again resumes the same cycle id
and redoes nothing that had finished.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import openai
from pydantic import BaseModel

from evals.golden import GoldenSet, load_golden
from flywheel.registry import production_model, require_production_prompt
from flywheel.config import Settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.llm import endpoint
from flywheel.schemas import FailureCluster
from flywheel.state import open_state


F = TypeVar("F", bound=Callable[..., Any])


class EndpointFailed(FlywheelError):
    """The LLM endpoint kept failing after retries: the cycle ends and nothing is promoted."""


class CycleSetup(BaseModel):
    cycle_id: str
    resumed: bool
    champion_version: str
    champion_template: str
    golden_version: str
    index_version: str | None = None
    champion_model: str = ""  # the provider's name of the model in production
    champion_model_version: str | None = None  # its registry version; None: the base model


def endpoint_errors(what: str) -> Callable[[F], F]:
    """Turn the SDK's errors (after its own retries) into one clear EndpointFailed."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except openai.APIError as exc:
                status = getattr(exc, "status_code", None)
                raise EndpointFailed(
                    f"{what}: the LLM endpoint failed after retries ({type(exc).__name__}"
                    f"{f' {status}' if status else ''}: {str(exc)[:200]}); nothing was promoted"
                ) from exc

        return inner  # type: ignore[return-value]

    return wrap


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]


def earliest_seen(clusters: Sequence[FailureCluster]) -> tuple[datetime | None, dict[str, str]]:
    """The earliest negative event of the clusters, and each one's (loop velocity is measured from them)."""
    by_cluster = {c.cluster_id: c.first_seen for c in clusters if c.first_seen}
    earliest = min(by_cluster.values()) if by_cluster else None
    return earliest, {cid: ts.isoformat() for cid, ts in by_cluster.items()}


def begin(settings: Settings) -> CycleSetup:
    """Check what the cycle needs (endpoint, champion, golden set) and open or resume a cycle."""
    endpoint(settings, purpose="`flywheel cycle`")
    champion = require_production_prompt(settings)
    golden = load_golden(settings.golden)
    with open_state(settings.ensure_home()) as state:
        cycle_id = state.unfinished_cycle()
        resumed = cycle_id is not None
        if cycle_id is None:
            cycle_id = f"cyc-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        state.start_cycle(cycle_id)
    model = production_model(settings)
    return CycleSetup(cycle_id=cycle_id, resumed=resumed, champion_version=champion.version,
                      champion_template=champion.template, golden_version=golden.version,
                      index_version=active_index_version(settings), champion_model=model.provider_model,
                      champion_model_version=model.version)


def cycle_golden(settings: Settings, setup: CycleSetup, *versions: str) -> GoldenSet:
    """The golden set the cycle began with (``setup.golden_version``). Steps after ``begin`` read it
    here, with the versions their evaluations recorded, so the report, MLflow and every score name
    one golden set; an edit mid-cycle stops the cycle, which the next ``flywheel cycle`` resumes on
    the new version."""
    golden = load_golden(settings.golden)
    seen = {golden.version, *versions} - {setup.golden_version}
    if seen:
        raise UsageError(
            f"{settings.golden}: the golden set changed during cycle {setup.cycle_id} (version "
            f"{setup.golden_version[:12]} when it began, now {', '.join(sorted(v[:12] for v in seen))}); "
            "run `flywheel cycle` again: it resumes the cycle on the new version")
    return golden


def active_index_version(settings: Settings) -> str | None:
    from flywheel.knowledge.index import ACTIVE

    with open_state(settings.ensure_home()) as state:
        return state.pointer(ACTIVE)


def protected_texts(settings: Settings) -> list[str]:
    """What a drafted prompt must never copy: the golden set's inputs and expected answers."""
    golden: GoldenSet = load_golden(settings.golden)
    return [t for item in golden.items for t in (item.input, item.expected)]
