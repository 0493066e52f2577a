"""Prefect's ephemeral API server must not outlive the process that started it.

Without ``PREFECT_API_URL``, Prefect starts its API as a child process and stops it at exit; a
process killed with SIGKILL (or crashed hard) never runs that, and the server stays behind,
holding a port and ~250 MB, once per killed cycle. So before the server starts, a tiny watchdog
process is started beside this one. It notes the server among this process's children while it
runs, and waits on a pipe from this process: the pipe closes when this process ends, however it
ends, and the watchdog then stops the server it saw.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

_WATCHDOG = """
import os, select, signal, sys
import psutil

parent = psutil.Process(int(sys.argv[1]))
servers = {}
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0.5)
    if ready and not os.read(sys.stdin.fileno(), 1):
        break  # the parent's end of the pipe closed: the parent is gone
    try:
        for child in parent.children(recursive=True):
            if child.pid not in servers and "prefect.server.api.server" in " ".join(child.cmdline()):
                servers[child.pid] = child
    except psutil.Error:
        pass
for server in servers.values():
    try:
        server.terminate()
        server.wait(5)
    except psutil.TimeoutExpired:
        server.kill()
    except psutil.Error:
        pass
"""

_watchdog: subprocess.Popen[bytes] | None = None  # kept referenced: the pipe lives as long as this process


def tie_ephemeral_server_to_this_process() -> None:
    """When the flow will run on Prefect's ephemeral API (no PREFECT_API_URL), make sure the server
    it starts is stopped when this process ends (see the module docstring). Idempotent."""
    global _watchdog
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or (_watchdog is not None and _watchdog.poll() is None):
        return
    _watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def start_ephemeral_api_early() -> Callable[[], None]:
    """Start Prefect's ephemeral API now, in a thread, when flows will run on it (no PREFECT_API_URL);
    returns ``ready()``, which waits until it serves. The server is its own process and takes seconds
    to start: begun before other work (the demo brings in its world meanwhile), it is up by the first
    flow. ``ready()`` must be called before any flow runs: Prefect marks the server running as soon as
    it starts it, so a flow started meanwhile would talk to a server not yet listening."""
    import threading

    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None
    tie_ephemeral_server_to_this_process()
    failure: list[BaseException] = []

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()
        except BaseException as exc:  # noqa: BLE001 - re-raised by ready(), in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=start, name="prefect-ephemeral-api", daemon=True)
    thread.start()

    def ready() -> None:
        thread.join()
        if failure:
            raise failure[0]

    return ready
