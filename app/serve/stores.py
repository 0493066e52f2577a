"""Feedback stores for the request threads: one open store per concurrent request, reused. A store
that cannot take a write now raises :class:`~flywheel.errors.StoreUnavailable` (answered 503 with
Retry-After); so does a request that waited its turn past ``serve.store_timeout_seconds``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flywheel.errors import StoreUnavailable
from flywheel.feedback.store import FeedbackStore, open_store


class StorePool:
    """Idle stores, handed to one request at a time; a store that failed is closed, not reused.

    SQLite takes one writer at a time anyway: a worker's requests take turns on a lock of their own
    instead of contending through SQLite's busy handler, which can starve a writer for seconds under
    many threads. Only other processes (workers, the CLI) meet at SQLite's lock. A server database
    (a URL with another scheme) gets one connection per concurrent request."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self._idle: list[FeedbackStore] = []
        self._turn = threading.Lock() if url.startswith("sqlite:") or "://" not in url else None

    @contextmanager
    def lease(self) -> Iterator[FeedbackStore]:
        if self._turn is None:
            with self._leased() as store:
                yield store
            return
        if not self._turn.acquire(timeout=self.timeout):
            raise StoreUnavailable(f"feedback store: no turn to write within serve.store_timeout_seconds ({self.timeout:g} s)")
        try:
            with self._leased() as store:
                yield store
        finally:
            self._turn.release()

    @contextmanager
    def _leased(self) -> Iterator[FeedbackStore]:
        try:
            store = self._idle.pop()
        except IndexError:
            store = open_store(self.url, lock_timeout=self.timeout)
        try:
            yield store
        except BaseException:
            store.close()
            raise
        self._idle.append(store)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
