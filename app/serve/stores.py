"""The feedback store for the request threads: the service's one store (its engine's pool gives each
concurrent request a connection), leased in turn. A store that cannot take a write now raises
:class:`~flywheel.errors.StoreUnavailable` (answered 503 with Retry-After); so does a request that
waited its turn past ``serve.store_timeout_seconds``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flywheel.errors import StoreUnavailable
from flywheel.feedback.store import FeedbackStore
from flywheel.runtime import Runtime


class StorePool:
    """The Runtime's feedback store, handed to one request at a time on SQLite.

    SQLite takes one writer at a time anyway: a worker's requests take turns on a lock of their own
    instead of contending through SQLite's busy handler, which can starve a writer for seconds under
    many threads. Only other processes (workers, the CLI) meet at SQLite's lock. A server database
    (a URL with another scheme) serves concurrent requests on connections of the engine's pool."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        url = runtime.settings.resolved_store_url
        self.timeout = runtime.store_timeout if runtime.store_timeout is not None else 30.0
        self._turn = threading.Lock() if url.startswith("sqlite:") or "://" not in url else None

    @contextmanager
    def lease(self) -> Iterator[FeedbackStore]:
        if self._turn is None:
            yield self.runtime.feedback
            return
        if not self._turn.acquire(timeout=self.timeout):
            raise StoreUnavailable(
                f"feedback store: no turn to write within serve.store_timeout_seconds ({self.timeout:g} s)"
            )
        try:
            yield self.runtime.feedback
        finally:
            self._turn.release()
