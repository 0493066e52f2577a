"""What every step of a cycle shares: the cycle's context (the champion it improves on, its golden
set, the way to the state store and MLflow) and the helpers (endpoint errors, content hashes,
first-seen times). The cycle is opened by :func:`loop.context.begin`.

Every step stores its result in the state store under a key derived from the cycle and its inputs
(drafts per cluster, candidates by a content hash, evaluations by variant and golden version,
MLflow runs by tags), so a cycle that was killed and is started again resumes the same cycle id
and redoes nothing that had finished.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, PrivateAttr

from flywheel.candidates import ChampionSet
from flywheel.champions import BASE
from flywheel.config import Settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.evals.golden import GoldenSet, load_golden
from flywheel.feedback.store import FeedbackStore
from flywheel.runtime import Runtime, runtime_for
from flywheel.schemas import FailureCluster
from flywheel.state import StateStore

F = TypeVar("F", bound=Callable[..., Any])


class EndpointFailed(FlywheelError):
    """The LLM endpoint kept failing after retries: the cycle ends and nothing is promoted."""


class CycleContext(BaseModel):
    """Built once per cycle by ``begin`` and passed to every step: the settings, the champion the
    cycle improves on and the golden set it began with, and the way to the state store and MLflow.

    It travels as a task parameter (Prefect caches task results by it, Dask ships it to workers),
    so it holds facts, not connections: the stores and the MLflow client are those of the process's
    Runtime (:func:`flywheel.runtime.runtime_for`, found again in each process it travels to), the
    golden set is read once per process, and ``state()`` is the Runtime's store for the calling
    thread (SQLite's connections belong to one thread; improver tasks run in several)."""

    settings: Settings
    cycle_id: str
    resumed: bool
    champion_version: str
    champion_template: str
    golden_version: str
    index_version: str | None = None
    champion_model: str = ""  # the provider's name of the model in production
    champion_model_version: str | None = None  # its registry version; None: the base model
    _golden: GoldenSet | None = PrivateAttr(None)
    _mlflow: Any = PrivateAttr(None)
    _runtime: Runtime | None = PrivateAttr(None)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        return {**state, "__pydantic_private__": {"_golden": None, "_mlflow": None, "_runtime": None}}

    @property
    def runtime(self) -> Runtime:
        """This process's Runtime for the cycle's settings."""
        if self._runtime is None:
            self._runtime = runtime_for(self.settings)
        return self._runtime

    @property
    def champions(self) -> ChampionSet:
        """The production combination the cycle's candidates are evaluated against."""
        return ChampionSet(
            prompt=self.champion_version, index=self.index_version, model=self.champion_model_version or BASE
        )

    def state(self) -> AbstractContextManager[StateStore]:
        """The process's state store for this thread (``with ctx.state() as state:``; left open)."""
        return self.runtime.borrow_state()

    def feedback(self) -> AbstractContextManager[FeedbackStore]:
        """The process's feedback store (``with ctx.feedback() as store:``; left open)."""
        return self.runtime.borrow_feedback()

    @property
    def mlflow(self) -> Any:
        """The MLflow client on Flywheel's tracking store and experiment."""
        if self._mlflow is None:
            self._mlflow = self.runtime.mlflow
        return self._mlflow

    @property
    def golden(self) -> GoldenSet:
        """The golden set the cycle began with (checked against the version ``begin`` recorded)."""
        return self.golden_for()

    def golden_for(self, *versions: str) -> GoldenSet:
        """The golden set the cycle began with, also checked against the versions evaluations
        recorded, so the report, MLflow and every score name one golden set; an edit mid-cycle stops
        the cycle, which the next ``flywheel cycle`` resumes on the new version."""
        if self._golden is None:
            self._golden = load_golden(self.settings.golden_file)
        seen = {self._golden.version, *versions} - {self.golden_version}
        if seen:
            raise UsageError(
                f"{self.settings.golden_file}: the golden set changed during cycle {self.cycle_id} (version "
                f"{self.golden_version[:12]} when it began, now {', '.join(sorted(v[:12] for v in seen))}); "
                "run `flywheel cycle` again: it resumes the cycle on the new version"
            )
        return self._golden

    def protected_texts(self) -> list[str]:
        """What a drafted prompt must never copy: the golden set's inputs and expected answers."""
        return [t for item in self.golden.items for t in (item.input, item.expected)]


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


CLUSTER_EVENTS_KEPT = 500


def cluster_events(clusters: Sequence[FailureCluster]) -> dict[str, list[str]]:
    """A sample of each cluster's event ids, kept on its candidates: `flywheel watch` finds the
    cluster's queries by them and compares their negative rate before and after the fix."""
    return {c.cluster_id: sorted(c.event_ids)[:CLUSTER_EVENTS_KEPT] for c in clusters}
