"""A long file's lines checked in worker processes while this one stores them.

Checking an item (parse, validate, scrub every text) is about two thirds of an ingest's CPU; storing
is the rest and stays with the one writer. So a file of ``PARALLEL_MIN_BYTES`` or more is cut into
chunks of ``CHUNK`` items that ``ingest.workers`` processes check, and the results come back in the
source's order: the store, the report and the quarantine see exactly what a serial run gives them
(duplicates inside the file included: the store drops them in order). At most ``2 * workers`` chunks
are out at a time, so memory stays constant in the file's size.

The workers come from a fork server that imported only the checking code (a fork of the CLI's
process would copy its threads' locks), ignore Ctrl-C (the command handles it: what was stored
stays, as in a serial run), and a pool that breaks (a worker killed) costs nothing: the chunks it
held and the rest are checked here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

from flywheel.config import IngestSettings
from flywheel.feedback.sources import SourceItem
from flywheel.feedback.validate import check
from flywheel.schemas import StoredEvent

log = logging.getLogger("flywheel.ingest")

CHUNK = 1000  # items a worker checks per task: ~40 ms of work, against ~1 ms to send and receive them
PARALLEL_MIN_BYTES = 8_000_000  # ~20k events: below, starting the workers (~0.5 s) is not worth it
MAX_AUTO_WORKERS = 4  # the one writer stores ~25-30k events/s: more checkers would wait for it

Outcome = StoredEvent | str
_settings: IngestSettings | None = None  # a worker's own copy, set once by _start


def workers_for(settings: IngestSettings, size: int | None) -> int:
    """How many processes check a source of ``size`` bytes (None: unknown, as stdin); 1: this one."""
    if size is None or size < PARALLEL_MIN_BYTES or "forkserver" not in multiprocessing.get_all_start_methods():
        return 1  # short, of unknown length, or a platform without a fork server (Windows)
    if settings.workers:
        return settings.workers
    return min(MAX_AUTO_WORKERS, cores())


def cores() -> int:
    """The CPU cores this process may run on (a container's or taskset's share, where the OS says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def checked(
    items: Iterable[SourceItem], settings: IngestSettings, workers: int
) -> Iterator[tuple[SourceItem, Outcome]]:
    """Each item with its :func:`check` outcome, in order, checked by ``workers`` processes (>= 2)."""
    source = iter(items)
    pool = _Pool(settings, workers)
    pending: deque[tuple[list[SourceItem], Future[list[Outcome]] | None]] = deque()
    try:
        while chunk := list(islice(source, CHUNK)):
            pending.append((chunk, pool.submit(chunk)))
            while len(pending) > 2 * workers:
                yield from pool.outcomes(*pending.popleft())
        while pending:
            yield from pool.outcomes(*pending.popleft())
    finally:
        pool.close(wait=True)


class _Pool:
    """The worker processes, until they break: from then on every chunk is checked in this process."""

    def __init__(self, settings: IngestSettings, workers: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        self.settings = settings
        self.executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start, initargs=(settings,)
        )

    def submit(self, chunk: list[SourceItem]) -> Future[list[Outcome]] | None:
        """The chunk handed to a worker; None (checked here when its turn comes) once the pool broke."""
        if self.executor is None:
            return None
        try:
            return self.executor.submit(_check_chunk, chunk)
        except BrokenProcessPool:
            return None

    def outcomes(
        self, chunk: list[SourceItem], future: Future[list[Outcome]] | None
    ) -> Iterator[tuple[SourceItem, Outcome]]:
        """A chunk's outcomes: its worker's, or checked here when it has none."""
        if future is not None and self.executor is not None:
            try:
                return zip(chunk, future.result(), strict=True)
            except BrokenProcessPool:
                pass
        if self.executor is not None:  # broken: found by this chunk's result or by its submission
            log.warning("the ingest's checking processes stopped; the rest of the file is checked in this one")
            self.close(wait=False)
        return ((item, check(item, self.settings)) for item in chunk)

    def close(self, wait: bool) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=wait, cancel_futures=True)
            self.executor = None


def _start(settings: IngestSettings) -> None:
    global _settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _settings = settings


def _check_chunk(chunk: list[SourceItem]) -> list[Outcome]:
    assert _settings is not None  # set by _start in every worker
    return [check(item, _settings) for item in chunk]
