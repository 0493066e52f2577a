"""A real `flywheel serve` app on 127.0.0.1 for the service tests: uvicorn in a thread of the test
process (fast, and the test can look at the app's state), and keys made with the real CLI."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from flywheel.app.serve.runner import base_url, bind
from flywheel.config import Settings, load_settings


class LiveServer:
    def __init__(self, settings: Settings | None = None, warm_up: bool = False) -> None:
        self.settings = settings or load_settings()
        self.warm_up = warm_up

    def __enter__(self) -> LiveServer:
        from flywheel.app.serve.main import create_app

        self.app = create_app(self.settings, warm_up=self.warm_up)
        sock = bind("127.0.0.1", 0)
        self.url = base_url(sock)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return self

    @property
    def service(self) -> Any:
        return self.app.state.service

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {key}"} if key else {})

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def make_key(cli: Any, name: str, scope: str) -> str:
    return cli("keys", "create", name, "--scope", scope, "--json")["key"]


def stored_ids(settings: Settings) -> list[str]:
    from flywheel.feedback.store import open_store

    with open_store(settings.resolved_store_url) as store:
        return [e.event_id for e in store.events()]
