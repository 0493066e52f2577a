"""The Prefect events for new negative feedback, sent from the service off the request path.

The `on-feedback` trigger counts events, each standing for ``events.negatives_per_event``
negatives; single-event posts would send one event per negative. So a worker sums what its
requests stored and, every ``serve.events_flush_seconds``, sends events for the whole multiples
(the remainder waits; at shutdown it is sent rounded up, as an ingest does). Only with a Prefect
server configured; a failure is logged, the feedback is stored either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flywheel.config import Settings

log = logging.getLogger("flywheel.serve")
Emit = Callable[[Settings, int], int]


def _prefect_emit(settings: Settings, negatives: int) -> int:
    from flywheel.flows.events import emit_negative_feedback

    return emit_negative_feedback(settings, negatives)


class NegativeFeedbackEvents:
    def __init__(self, settings: Settings, emit: Emit = _prefect_emit) -> None:
        self.settings, self._emit = settings, emit
        self.enabled = bool(settings.events.emit and settings.prefect_api_url)
        self.pending = 0
        self.sent = 0  # Prefect events sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, negatives: int) -> None:
        if self.enabled and negatives > 0:
            with self._lock:
                self.pending += negatives

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="prefect-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush(final=True)

    def flush(self, final: bool = False) -> None:
        per = self.settings.events.negatives_per_event
        with self._lock:
            due = self.pending if final else self.pending - self.pending % per
            self.pending -= due
        if due <= 0:
            return
        try:
            self.sent += self._emit(self.settings, due)
        except Exception as exc:
            log.warning("feedback stored, but no Prefect event was sent for %d negatives: %s", due, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.serve.events_flush_seconds):
            self.flush()
