"""What stands between the openai SDK and the wire: answers the SDK cannot use become endpoint
errors, and a dead endpoint is given up on after a bounded time.

Why at the transport: every client Flywheel builds (evaluation, drafting, judging, embeddings,
fine-tuning) goes through it, so no caller can forget a check. A 200 answer that is not JSON, or a
chat completion without choices, is turned into a 502 before the SDK reads it: the SDK retries it
like any server error and then raises ``openai.InternalServerError``, which callers already treat
as the endpoint failing (before, such bodies surfaced as ``UnicodeDecodeError`` or
``AttributeError`` tracebacks from deep inside a cycle).

The budget: once an endpoint has answered nothing usable for ``max_total_seconds`` (counted from
its first failure after the last good answer), every further request is refused at once with a
503 marked ``x-should-retry: false``, so the SDK does not back off and retry, and a cycle against
a dead endpoint ends in about that time instead of retries times timeouts times items.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx2

_JSON_ROUTES = ("/chat/completions", "/embeddings")
_FAILURE_STATUS = frozenset({408, 429})


class EndpointHealth:
    """Since when one endpoint has failed without a single usable answer (per process)."""

    def __init__(self, budget_seconds: float, clock: Any = time.monotonic) -> None:
        self.budget = budget_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.failing_since: float | None = None
        self.last_failure: float | None = None
        self.failures = 0

    def succeeded(self) -> None:
        with self._lock:
            self.failing_since = self.last_failure = None
            self.failures = 0

    def failed(self) -> None:
        with self._lock:
            now = self._clock()
            # A failure long after the previous one starts a new streak: a worker process that ran a
            # cycle against a dead endpoint yesterday gives today's cycle its full budget.
            if self.failing_since is None or (self.last_failure is not None and now - self.last_failure > self.budget):
                self.failing_since, self.failures = now, 0
            self.last_failure = now
            self.failures += 1

    def failing_for(self) -> float | None:
        """Seconds of the current failure streak; None when healthy (or the streak went stale)."""
        with self._lock:
            now = self._clock()
            if self.failing_since is None or self.last_failure is None or now - self.last_failure > self.budget:
                return None
            return now - self.failing_since

    def exhausted(self) -> bool:
        spent = self.failing_for()
        return spent is not None and spent >= self.budget

    def remaining(self) -> float | None:
        """Seconds left in the budget while failing; None when healthy (no cap on a request)."""
        spent = self.failing_for()
        return None if spent is None else max(self.budget - spent, 0.0)


_REGISTRY: dict[tuple[str, float], EndpointHealth] = {}
_REGISTRY_LOCK = threading.Lock()


def health_of(base_url: str, budget_seconds: float) -> EndpointHealth:
    """The process-wide health record of an endpoint: every client of one endpoint shares it."""
    key = (base_url.rstrip("/"), budget_seconds)
    with _REGISTRY_LOCK:
        if key not in _REGISTRY:
            _REGISTRY[key] = EndpointHealth(budget_seconds)
        return _REGISTRY[key]


_STOPPING = threading.Event()


def stop_requests() -> None:
    """The process is stopping (a signal): every further request fails at once, so worker threads
    still drafting or evaluating finish within one SDK backoff instead of their whole retry budget."""
    _STOPPING.set()


def allow_requests() -> None:
    _STOPPING.clear()


def gave_up() -> bool:
    """Whether requests are refused now (stopping, or some endpoint was given up on): retrying a
    whole task then only repeats the refusal."""
    if _STOPPING.is_set():
        return True
    with _REGISTRY_LOCK:
        records = list(_REGISTRY.values())
    return any(h.exhausted() for h in records)


def _error_response(request: httpx2.Request, status: int, message: str, retry: bool) -> httpx2.Response:
    body = json.dumps({"error": {"message": message, "type": "flywheel_endpoint_guard", "code": status}}).encode()
    headers = {"content-type": "application/json", "x-should-retry": "true" if retry else "false"}
    return httpx2.Response(status, headers=headers, content=body, request=request)


def unusable(request: httpx2.Request, response: httpx2.Response) -> str | None:
    """Why a 2xx answer cannot be used, or None. Only JSON routes are checked (a file's content
    is whatever the file holds)."""
    path = request.url.path
    if request.method != "POST" or not path.endswith(_JSON_ROUTES):
        return None
    try:
        doc = json.loads(response.content)
    except (UnicodeDecodeError, ValueError):
        kind = response.headers.get("content-type", "no content type")
        head = response.content[:80].decode("utf-8", "replace").replace("\n", " ")
        return f"the endpoint answered {response.status_code} with a body that is not JSON ({kind}): {head!r}"
    if not isinstance(doc, dict):
        return f"the endpoint answered {response.status_code} with JSON that is not an object"
    if path.endswith("/chat/completions"):
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
                or not isinstance(choices[0].get("message"), dict):
            return f"the endpoint answered a chat completion without choices: {response.content[:120]!r}"
    elif not isinstance(doc.get("data"), list):
        return f"the endpoint answered embeddings without data: {response.content[:120]!r}"
    return None


def _streamed(response: httpx2.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _refusal(request: httpx2.Request, health: EndpointHealth) -> httpx2.Response:
    if _STOPPING.is_set():
        return _error_response(request, 503, "not sent: Flywheel is stopping (interrupted)", retry=False)
    return _error_response(
        request, 503,
        f"the endpoint has given no usable answer for {health.failing_for() or health.budget:.0f} s ({health.failures} failed "
        f"requests); giving up (llm_max_total_seconds = {health.budget:g})", retry=False)


def _capped(request: httpx2.Request, health: EndpointHealth) -> None:
    """While the endpoint is failing, no request may wait longer than what is left of the budget."""
    left = health.remaining()
    timeout = request.extensions.get("timeout")
    if left is None or not isinstance(timeout, dict):
        return
    request.extensions["timeout"] = {k: (min(v, max(left, 1.0)) if v is not None else max(left, 1.0))
                                     for k, v in timeout.items()}


def _judge(request: httpx2.Request, response: httpx2.Response, health: EndpointHealth) -> httpx2.Response:
    if response.status_code >= 500 or response.status_code in _FAILURE_STATUS:
        health.failed()
        return response
    if 200 <= response.status_code < 300:
        problem = None if _streamed(response) else unusable(request, response)
        if problem is not None:
            health.failed()
            return _error_response(request, 502, problem, retry=True)
        health.succeeded()
    return response


def _checked(request: httpx2.Request, response: httpx2.Response) -> bool:
    return 200 <= response.status_code < 300 and request.url.path.endswith(_JSON_ROUTES) and not _streamed(response)


class GuardedTransport(httpx2.BaseTransport):
    """A sync transport that checks answers and keeps the budget (see the module docstring)."""

    def __init__(self, inner: httpx2.BaseTransport, health: EndpointHealth) -> None:
        self.inner, self.health = inner, health

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if _STOPPING.is_set() or self.health.exhausted():
            return _refusal(request, self.health)
        _capped(request, self.health)
        try:
            response = self.inner.handle_request(request)
        except httpx2.TransportError:
            self.health.failed()
            raise
        if _checked(request, response):
            response.read()
        return _judge(request, response, self.health)

    def close(self) -> None:
        self.inner.close()


class AsyncGuardedTransport(httpx2.AsyncBaseTransport):
    """The same for AsyncOpenAI."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, health: EndpointHealth) -> None:
        self.inner, self.health = inner, health

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if _STOPPING.is_set() or self.health.exhausted():
            return _refusal(request, self.health)
        _capped(request, self.health)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.TransportError:
            self.health.failed()
            raise
        if _checked(request, response):
            await response.aread()
        return _judge(request, response, self.health)

    async def aclose(self) -> None:
        await self.inner.aclose()
