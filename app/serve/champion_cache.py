"""The champion, cached: ``GET /v1/champion`` answers from memory, and a copy older than
``serve.champion_ttl_seconds`` is reloaded in the background (one reload at a time) while the
request is answered from it. Only the very first request waits for a load."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("flywheel.serve")


class TtlCache(Generic[T]):
    def __init__(self, load: Callable[[], T], ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._load, self.ttl, self._clock = load, ttl, clock
        self._value: T | None = None
        self._at = 0.0
        self._lock = threading.Lock()  # one load at a time
        self._refreshing = False

    def peek(self) -> T | None:
        """The cached value (None before the first load); a stale one starts a background reload."""
        if self._value is not None and self._clock() - self._at >= self.ttl and not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self._refresh, name="champion-refresh", daemon=True).start()
        return self._value

    def load(self) -> T:
        """Load now (blocking); a load already under way is waited for and its value used."""
        started = self._clock()
        with self._lock:
            if self._value is not None and self._at >= started:
                return self._value
            value = self._load()
            self._value, self._at = value, self._clock()
            return value

    def _refresh(self) -> None:
        try:
            self.load()
        except Exception as exc:  # keep serving the last value; the next stale request tries again
            log.warning("the champion could not be reloaded (serving the last one read): %s", exc)
        finally:
            self._refreshing = False
