"""An endpoint that accepts connections and never answers: the worst outage for a client, since
no error ever arrives, only silence. Tests and probes use it to check deadlines and signals.

``mode="silent"`` reads nothing and writes nothing; ``mode="headers"`` answers ``200`` with the
headers of a JSON body and then stalls before the body. Connections are held open until ``stop``.
"""

from __future__ import annotations

import socket
import threading
from typing import Literal

Mode = Literal["silent", "headers"]
_HEADERS = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"


class HungEndpoint:
    """``with HungEndpoint() as hung: hung.base_url`` - a TCP server on 127.0.0.1 that never answers."""

    def __init__(self, mode: Mode = "silent") -> None:
        self.mode = mode
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hung-endpoint", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    @property
    def connections(self) -> int:
        """Connections accepted so far (each one a request left waiting)."""
        with self._lock:
            return len(self._held)

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "headers":
                conn.sendall(_HEADERS)
            with self._lock:
                self._held.append(conn)

    def start(self) -> HungEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._held:
                conn.close()
        self._sock.close()

    def __enter__(self) -> HungEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
