"""One cycle at a time on a state directory, held only while the cycle works.

Cycles on one ``FLYWHEEL_HOME`` (a deployment's run, a hand-started one, `flywheel cycle`) must not
triage, draft and gate at the same time. Prefect's deployment concurrency limit cannot be that
guard: it holds a lease that a run paused for approval loses (Prefect releases the slot when the
run leaves Running, and the paused run's next lease renewal fails with 410 and crashes it). This
lock is an ``flock`` on ``$FLYWHEEL_HOME/cycle.lock``: released while a cycle waits for a person
(deciding is what ``flywheel approve`` does at any time), released by the kernel when the holder
dies (no stale lock after a crash or SIGKILL), per host like the SQLite state it guards.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE = "cycle.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another cycle"
    except OSError:
        return "another cycle"


@contextmanager
def cycle_lock(
    home: Path, *, on_wait: Callable[[str], None] | None = None, poll: float = 1.0, say_every: float = 60.0
) -> Iterator[None]:
    """Hold the state directory's cycle lock for the ``with`` body, waiting (and saying so through
    ``on_wait`` every ``say_every`` seconds) while another process holds it. A signal ends the wait
    like any other step."""
    path = home / LOCK_FILE
    with path.open("a+") as fh:
        said = -say_every
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if on_wait is not None and waited - said >= say_every:
                    on_wait(f"waiting for {_holder(path)} to finish ({waited:.0f} s so far; {path})")
                    said = waited
                time.sleep(poll)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"cycle in process {os.getpid()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
