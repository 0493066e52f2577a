"""``flywheel import mlflow``: an experiment's traces, page by page, into the one ingest path.

The traces are read oldest first, one page in memory at a time (``MlflowClient.search_traces`` with
its page token: ``mlflow.search_traces`` would load them all). Each page's assessments are mapped
(:mod:`flywheel.feedback.mlflow_traces`) and handed to ``ingest_source`` as a source like any other.
Incremental by time: the newest trace read is remembered per experiment (state ``pointers``) and the
next import starts ``lookback_hours`` before it, unless ``--since`` says where; re-reading is safe
because events are keyed by assessment id (a second copy is a duplicate, never stored twice).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.feedback.imports import ImportReport
from flywheel.feedback.ingest import ingest_source
from flywheel.feedback.mlflow_traces import trace_events
from flywheel.feedback.sources import Position, SourceItem
from flywheel.feedback.store import FeedbackStore
from flywheel.masking import mask_secrets

if TYPE_CHECKING:  # the import's remembered point is kept there; the store is handed in
    from flywheel.state import StateStore

POINTER = "import.mlflow.{experiment_id}"  # the newest trace time (ms) the last import read
# How many traces MLflow's client fetches with spans per store call (default 10, the limit of the REST
# API's BatchGetTraces). A database store has no such limit: a page in one call reads ~1.5x faster.
BATCH_ENV = "MLFLOW_SEARCH_TRACES_MAX_BATCH_SIZE"


@dataclass
class MlflowTraces:
    """A source of the ingest: the assessments of an experiment's traces since ``since_ms``, as events."""

    name: str
    client: Any
    experiment_id: str
    since_ms: int | None
    settings: Settings
    report: ImportReport
    database: bool = False  # a database tracking store (not a tracking server)
    newest_ms: int | None = field(default=None, init=False)
    counts: ClassVar[Position] = Position.index

    def items(self) -> Iterator[SourceItem]:
        position = 0
        for page in self.pages():
            for trace in page:
                self.report.traces += 1
                stamp = trace.info.request_time
                self.newest_ms = stamp if self.newest_ms is None else max(self.newest_ms, stamp)
                for mapped in trace_events(trace, self.settings.imports.mlflow, self.settings.prompt_name):
                    if mapped.event is None:
                        self.report.skip(mapped.skipped or "skipped")
                        continue
                    self.report.read += 1
                    self.report.name(position, mapped.assessment_id, trace.info.trace_id)
                    yield SourceItem.of_value(position, mapped.event)
                    position += 1

    def pages(self) -> Iterator[list[Any]]:
        """The traces, oldest first, a page at a time (spans included: retrievers and models are in them)."""
        where = f"trace.timestamp_ms >= {self.since_ms}" if self.since_ms is not None else None
        token = None
        size = self.settings.imports.mlflow.page_size
        while True:
            with _batch_size(size if self.database else None):
                page = self.client.search_traces(
                    locations=[self.experiment_id],
                    filter_string=where,
                    max_results=size,
                    order_by=["timestamp_ms ASC"],
                    page_token=token,
                    include_spans=True,
                )
            yield list(page)
            token = page.token
            if not token or not page:
                return


def import_mlflow(
    settings: Settings, experiment: str, since: datetime | None, store: FeedbackStore, state: StateStore
) -> ImportReport:
    """Import ``experiment``'s feedback into ``store``; the report counts what happened to each assessment."""
    import mlflow
    from mlflow.store.db.db_types import DATABASE_ENGINES

    uri = settings.resolved_tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UsageError(f"--experiment: MLflow has no experiment named {experiment!r} at {mask_secrets(uri)}")
    key = POINTER.format(experiment_id=exp.experiment_id)
    since_ms = _since_ms(since, state.pointer(key), settings.imports.mlflow.lookback_hours)
    report = ImportReport(source="mlflow", experiment=experiment, since=_iso(since_ms))
    name = "mlflow-" + (re.sub(r"[^\w.-]+", "_", experiment).strip("_.") or exp.experiment_id)
    database = urlparse(uri).scheme.split("+", 1)[0] in DATABASE_ENGINES  # MLflow's own list of SQL stores
    source = MlflowTraces(name, client, exp.experiment_id, since_ms, settings, report, database=database)
    ingest_source(source, store, settings.quarantine_dir, settings.ingest, report, kept=report.quarantine)
    previous = state.pointer(key)
    if source.newest_ms is not None and (previous is None or source.newest_ms > int(previous)):
        state.set_pointer(key, str(source.newest_ms))
    newest = state.pointer(key)
    report.high_water = _iso(int(newest)) if newest is not None else None
    return report


@contextmanager
def _batch_size(size: int | None) -> Iterator[None]:
    """MLflow's span fetch batch set to ``size`` for one search (unless the user set it; None: as is)."""
    if size is None or BATCH_ENV in os.environ:
        yield
        return
    os.environ[BATCH_ENV] = str(size)
    try:
        yield
    finally:
        os.environ.pop(BATCH_ENV, None)


def _since_ms(since: datetime | None, mark: str | None, lookback_hours: float) -> int | None:
    """Where to start: ``--since``; else the remembered mark less the lookback; else the beginning."""
    if since is not None:
        return int((since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp() * 1000)
    if mark is None:
        return None
    return max(0, int(mark) - int(timedelta(hours=lookback_hours).total_seconds() * 1000))


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()
