"""`flywheel serve` in a thread of the calling process, on 127.0.0.1 and a free port: for the demo,
which plays live traffic against the real service and then reads what it stored."""

from __future__ import annotations

import threading
import time

import uvicorn

from flywheel.app.serve.runner import base_url, bind
from flywheel.config import Settings
from flywheel.errors import FlywheelError


class BackgroundServer:
    """The real app on uvicorn in a daemon thread; ``url`` once started; stopped on exit."""

    def __init__(self, settings: Settings, *, start_timeout: float = 60.0) -> None:
        self.settings, self.start_timeout = settings, start_timeout
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        from flywheel.app.serve.main import create_app

        sock = bind("127.0.0.1", 0)
        self.url = base_url(sock)
        config = uvicorn.Config(create_app(self.settings, warm_up=True), log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="flywheel-serve", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise FlywheelError(f"flywheel serve did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
