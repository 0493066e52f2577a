"""The state directory's cycle lock: a second cycle waits (and says so) while one works, and a
holder that dies (SIGKILL) leaves no stale lock behind."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from flywheel.loop.cycle_lock import LOCK_FILE, cycle_lock


def test_a_second_cycle_waits_for_the_first_and_says_for_whom(tmp_path: Path) -> None:
    said: list[str] = []
    entered = threading.Event()

    def second() -> None:
        with cycle_lock(tmp_path, on_wait=said.append, poll=0.05, say_every=0.2):
            entered.set()

    with cycle_lock(tmp_path):
        holder = (tmp_path / LOCK_FILE).read_text()
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        time.sleep(0.6)
        assert not entered.is_set()  # blocked while the first holds it
    assert entered.wait(5) and not thread.join(5)
    assert len(said) >= 2 and said[0].startswith(f"waiting for {holder.strip()} to finish")
    assert (tmp_path / LOCK_FILE).read_text() == ""  # nobody holds it now


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from flywheel.loop.cycle_lock import cycle_lock\n"
        "with cycle_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        blocked = threading.Event()

        def waiter() -> None:
            with cycle_lock(tmp_path, on_wait=lambda _: blocked.set(), poll=0.05, say_every=0.05):
                pass

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert blocked.wait(5)  # the live holder blocks it
        proc.kill()
        thread.join(5)
        assert not thread.is_alive()  # the kernel released the dead holder's lock
    finally:
        proc.kill()
        proc.wait()
