"""The OpenAI-compatible simulator, served over real HTTP on 127.0.0.1.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (``response_format`` json_object
and json_schema included), ``POST /v1/embeddings`` (the shared local model), and
``GET /sim/stats`` (request counts by role, for tests and benchmarks). Knobs for tests:
a fixed ``latency`` per request and injected failures (``fail_status`` for every request, or only
the first ``fail_first`` requests).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flywheel.sim import roles

SIM_MODELS = ("gpt-4o-mini", "gpt-4o", "sim-product", "sim-judge")


@dataclass
class SimOptions:
    latency: float = 0.0
    fail_status: int | None = None
    fail_first: int = 0
    embedder: Any = None  # an Embedder; loaded lazily on the first /v1/embeddings request


@dataclass
class SimState:
    options: SimOptions
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] += 1
            self.served += 1
            return self.served


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: stdout belongs to the CLI
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._error(400, f"request body is not JSON: {exc}")
            return None
        if not isinstance(body, dict):
            self._error(400, "request body must be a JSON object")
            return None
        return body

    def _injected_failure(self) -> bool:
        state = self.server.state
        opts = state.options
        n = state.count("requests")
        if opts.latency:
            time.sleep(opts.latency)
        if opts.fail_status is not None or n <= opts.fail_first:
            status = opts.fail_status or 503
            state.count(f"failed_{status}")
            self._error(status, "simulated failure", "server_error")
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "flywheel-sim"} for m in SIM_MODELS]
            self._send(200, {"object": "list", "data": data})
        elif self.path.rstrip("/") == "/sim/stats":
            with self.server.state.lock:
                self._send(200, dict(self.server.state.counts))
        else:
            self._error(404, f"no such endpoint: GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            self._error(404, f"no such endpoint: POST {self.path}")
            return
        body = self._body()
        if body is None or self._injected_failure():
            return
        if path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._embeddings(body)

    def _chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "'messages' must be a non-empty list")
            return
        if not body.get("model"):
            self._error(400, "'model' is required")
            return
        role, content = roles.complete(body)
        self.server.state.count(f"chat.{role}")
        prompt_tokens = sum(_tokens(roles._text(m.get("content"))) for m in messages)
        completion_tokens = _tokens(content)
        self._send(
            200,
            {
                "id": f"chatcmpl-sim-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "system_fingerprint": "flywheel-sim",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _embeddings(self, body: dict[str, Any]) -> None:
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self._error(400, "'input' must be a string or a list of strings")
            return
        vectors = self.server.embedder().embed(texts)
        self.server.state.count("embeddings")
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        total = sum(_tokens(t) for t in texts)
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "all-MiniLM-L6-v2"),
                "usage": {"prompt_tokens": total, "total_tokens": total},
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # 32+ concurrent SDK clients connect at once

    def __init__(self, address: tuple[str, int], state: SimState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self._embed_lock = threading.Lock()

    def embedder(self) -> Any:
        with self._embed_lock:
            if self.state.options.embedder is None:
                from flywheel.config import EmbeddingSettings
                from flywheel.embeddings import LocalEmbedder

                self.state.options.embedder = LocalEmbedder(EmbeddingSettings())
            return self.state.options.embedder


class Simulator:
    """The simulator on a background thread: ``with Simulator() as sim: sim.base_url``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, options: SimOptions | None = None) -> None:
        self.state = SimState(options or SimOptions())
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def options(self) -> SimOptions:
        return self.state.options

    def counts(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.counts)

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="flywheel-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
