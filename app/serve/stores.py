"""Feedback stores for the request threads: one open store per concurrent request, reused, and
what counts as "the store cannot take a write now" (answered 503 with Retry-After)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flywheel.errors import FlywheelError
from flywheel.feedback.store import FeedbackStore, open_store


class StoreBusy(Exception):
    """The store could not take the write now: 503 with Retry-After."""


def unavailable(exc: BaseException) -> bool:
    """A database error that says "not now" (locked, busy, down, pool exhausted), not "bad input"."""
    if isinstance(exc, StoreBusy | sqlite3.OperationalError) or type(exc).__name__ == "StoreUnavailable":
        return True
    if isinstance(exc, FlywheelError) and "cannot be opened" in str(exc):
        return True
    from sqlalchemy import exc as sa

    return isinstance(exc, sa.OperationalError | sa.InterfaceError | sa.TimeoutError | sa.DisconnectionError)


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
            raise StoreBusy(f"no turn to write within serve.store_timeout_seconds ({self.timeout:g} s)")
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
