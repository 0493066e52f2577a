"""``flywheel import langfuse``: a Langfuse project's scores, page by page, into the one ingest path.

Langfuse's public REST API (HTTP Basic auth: the public key as user, the secret key as password) is
read with httpx: ``GET /api/public/scores`` a page at a time (``page``/``limit``, ``meta.totalPages``;
``fromTimestamp`` limits it), and each scored trace once with ``GET /api/public/traces/{id}`` (a small
cache: a trace's scores often come together). Each score is mapped (:mod:`flywheel.feedback.langfuse_scores`)
and handed to ``ingest_source`` like any other source. Incremental by time: the newest score read is
remembered per host and project (state ``pointers``; a
project is its public key) and the next import starts ``lookback_hours`` before it, unless
``--since`` says where; re-reading is safe because events are keyed by score id.

The secret key never leaves the auth header: errors name the host (its URL password masked) and the
HTTP status, never the request's headers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx

from flywheel.config import Settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.feedback.imports import ImportReport
from flywheel.feedback.ingest import ingest_source
from flywheel.feedback.langfuse_scores import score_event, score_id, skip_reason, trace_id
from flywheel.feedback.sources import Position, SourceItem
from flywheel.feedback.store import FeedbackStore
from flywheel.masking import mask_secrets

if TYPE_CHECKING:  # the import's remembered point is kept there; the store is handed in
    from flywheel.state import StateStore

POINTER = "import.langfuse.{host}/{public_key}"  # the newest score time (ms) the last import of that project read
_TRACES_KEPT = 1000


class LangfuseApi:
    """The few read calls the import makes; every failure is one clear line naming host and status."""

    def __init__(self, host: str, public_key: str, secret_key: str, timeout: float) -> None:
        self.host = host.rstrip("/")
        self.http = httpx.Client(
            base_url=self.host, auth=(public_key, secret_key), timeout=timeout, headers={"Accept": "application/json"}
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: dict[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        where = mask_secrets(self.host)
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise FlywheelError(f"cannot reach Langfuse at {where}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise FlywheelError(
                f"Langfuse at {where} refused the keys (HTTP {response.status_code}): check "
                "imports.langfuse.public_key and imports.langfuse.secret_key"
            )
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise FlywheelError(f"Langfuse at {where} answered HTTP {response.status_code} to GET {path}")
        try:
            return response.json()
        except ValueError:
            raise FlywheelError(f"Langfuse at {where} answered GET {path} with something that is not JSON") from None


@dataclass
class LangfuseScores:
    """A source of the ingest: the project's scores since ``since``, as events."""

    name: str
    api: LangfuseApi
    since: datetime | None
    settings: Settings
    report: ImportReport
    newest_ms: int | None = field(default=None, init=False)
    traces: OrderedDict[str, dict[str, Any] | None] = field(default_factory=OrderedDict, init=False)
    counts: ClassVar[Position] = Position.index

    def items(self) -> Iterator[SourceItem]:
        config = self.settings.imports.langfuse
        position = 0
        for page in self.pages():
            for score in page:
                self._saw(score)
                sid, tid = score_id(score), trace_id(score)
                why = skip_reason(score, config)
                trace = self.trace(tid) if why is None and tid else None
                if why is None and tid and trace is None:
                    why = "its trace is not in Langfuse"
                if why is not None:
                    self.report.skip(why)
                    continue
                self.report.read += 1
                self.report.name(position, sid, tid)
                yield SourceItem.of_value(position, score_event(score, trace, config, self.settings.prompt_name))
                position += 1

    def pages(self) -> Iterator[list[Any]]:
        """The scores a page at a time, until ``meta.totalPages``."""
        params: dict[str, Any] = {"limit": self.settings.imports.langfuse.page_size}
        if self.since is not None:
            params["fromTimestamp"] = self.since.isoformat().replace("+00:00", "Z")
        page = 1
        while True:
            body = self.api.get("/api/public/scores", params | {"page": page})
            data = body.get("data") if isinstance(body, dict) else None
            meta = body.get("meta") if isinstance(body, dict) else None
            if not isinstance(data, list) or not isinstance(meta, dict):
                raise FlywheelError(
                    f"Langfuse at {mask_secrets(self.api.host)}: GET /api/public/scores did not "
                    "answer {data: [...], meta: {...}}"
                )
            yield data
            total = meta.get("totalPages")
            if not data or not isinstance(total, int) or page >= total:
                return
            page += 1

    def trace(self, tid: str) -> dict[str, Any] | None:
        """The trace (cached, bounded); None when Langfuse has no trace of that id."""
        if tid in self.traces:
            self.traces.move_to_end(tid)
            return self.traces[tid]
        found = self.api.get(f"/api/public/traces/{quote(tid, safe='')}", missing_ok=True)
        trace = found if isinstance(found, dict) else None
        if trace is not None:
            self.report.traces += 1
        self.traces[tid] = trace
        if len(self.traces) > _TRACES_KEPT:
            self.traces.popitem(last=False)
        return trace

    def _saw(self, score: Any) -> None:
        """Move the high-water mark to this score's time, when it has a readable one."""
        stamp = score.get("timestamp") if isinstance(score, dict) else None
        try:
            when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        except ValueError:
            return
        if when is None:
            return
        ms = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
        self.newest_ms = ms if self.newest_ms is None else max(self.newest_ms, ms)


def import_langfuse(
    settings: Settings, since: datetime | None, store: FeedbackStore, state: StateStore
) -> ImportReport:
    """Import the configured project's scores into ``store``; the report counts what happened to each."""
    config = settings.imports.langfuse
    if not config.public_key or config.secret_key is None or not config.secret_key.get_secret_value():
        raise UsageError(
            "import langfuse needs imports.langfuse.public_key and imports.langfuse.secret_key "
            "(FLYWHEEL_IMPORTS__LANGFUSE__PUBLIC_KEY, FLYWHEEL_IMPORTS__LANGFUSE__SECRET_KEY)"
        )
    host = config.host.rstrip("/")
    key = POINTER.format(host=host, public_key=config.public_key)  # a host serves many projects
    start = since or _since(state.pointer(key), config.lookback_hours)
    report = ImportReport(source="langfuse", host=mask_secrets(host), since=start.isoformat() if start else None)
    api = LangfuseApi(host, config.public_key, config.secret_key.get_secret_value(), config.timeout)
    try:
        source = LangfuseScores("langfuse", api, start, settings, report)
        ingest_source(source, store, settings.quarantine_dir, settings.ingest, report, kept=report.quarantine)
    finally:
        api.close()
    previous = state.pointer(key)
    if source.newest_ms is not None and (previous is None or source.newest_ms > int(previous)):
        state.set_pointer(key, str(source.newest_ms))
    newest = state.pointer(key)
    report.high_water = datetime.fromtimestamp(int(newest) / 1000, UTC).isoformat() if newest is not None else None
    return report


def _since(mark: str | None, lookback_hours: float) -> datetime | None:
    """The remembered mark less the lookback; else the beginning."""
    if mark is None:
        return None
    return datetime.fromtimestamp(max(0, int(mark)) / 1000, UTC) - timedelta(hours=lookback_hours)
