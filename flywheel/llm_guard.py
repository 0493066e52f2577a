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
a dead endpoint ends in about that time instead of retries times timeouts times items. A request
that hangs counts from when it was sent, not from when it timed out.

Deadlines (``deadlines.call`` per model call, retries and backoff included, and one per cycle
stage): no attempt waits past the nearest deadline, and once one has passed, requests are refused
at once (504, not retried), so an endpoint that accepts connections and never answers ends the
cycle within its deadlines. A stop (a signal) abandons requests in flight: the caller's wait ends
at once, the abandoned request ends with its own timeout on a daemon thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2

T = TypeVar("T")

_JSON_ROUTES = ("/chat/completions", "/embeddings")
_JOB_ROUTE = "/fine_tuning/jobs"
_STOP_POLL = 0.2  # seconds between a waiting caller's looks at the stop flag
_FAILURE_STATUS = frozenset({408, 429})


class EndpointHealth:
    """Since when one endpoint has failed without a single usable answer (per process)."""

    def __init__(self, budget_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
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

    def failed(self, since: float | None = None) -> None:
        """One more failure; ``since``: when the failed request was sent (a hang counts from then)."""
        with self._lock:
            now = self._clock()
            start = now if since is None else min(since, now)
            # A failure long after the previous one starts a new streak: a worker process that ran a
            # cycle against a dead endpoint yesterday gives today's cycle its full budget.
            if self.failing_since is None or (self.last_failure is not None and now - self.last_failure > self.budget):
                self.failing_since, self.failures = start, 0
            self.failing_since = min(self.failing_since, start)
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


@dataclass(frozen=True)
class Deadline:
    """A point in time (``time.monotonic``) no request may wait past, and what set it."""

    what: str  # "the model call", "the drafting stage"
    setting: str  # the setting that sets it, for the message
    seconds: float
    at: float

    @classmethod
    def after(cls, what: str, setting: str, seconds: float) -> Deadline:
        return cls(what, setting, seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.at - time.monotonic()

    def message(self) -> str:
        return f"{self.what} passed its deadline of {self.seconds:g} s ({self.setting}); not waiting any longer"


_STAGE: Deadline | None = None  # one cycle per process; its stages run one after another
_CALL_STARTED: ContextVar[float | None] = ContextVar("flywheel_call_started", default=None)


@contextmanager
def stage(name: str, seconds: float) -> Iterator[Deadline]:
    """While a cycle stage runs, no model request waits past its deadline (see the module docstring)."""
    global _STAGE
    previous, _STAGE = _STAGE, Deadline.after(f"the {name} stage", f"deadlines.{name}", seconds)
    try:
        yield _STAGE
    finally:
        _STAGE = previous


def _call_deadline(request: httpx2.Request, seconds: float | None) -> Deadline | None:
    """The deadline of the call this request is an attempt of: the SDK numbers its attempts
    (``x-stainless-retry-count``) and retries in the same thread or task, so the first attempt's
    start, kept in a context variable, is the call's."""
    if seconds is None:
        return None
    started = _CALL_STARTED.get()
    if request.headers.get("x-stainless-retry-count", "0") == "0" or started is None:
        started = time.monotonic()
        _CALL_STARTED.set(started)
    return Deadline("the model call", "deadlines.call", seconds, started + seconds)


def _deadlines(request: httpx2.Request, call_seconds: float | None) -> list[Deadline]:
    return [d for d in (_call_deadline(request, call_seconds), _STAGE) if d is not None]


def _passed(deadlines: list[Deadline]) -> Deadline | None:
    return next((d for d in deadlines if d.left() <= 0), None)


def gave_up() -> bool:
    """Whether requests are refused now (stopping, the stage's deadline passed, or some endpoint was
    given up on): retrying a whole task then only repeats the refusal."""
    if _STOPPING.is_set() or (_STAGE is not None and _STAGE.left() <= 0):
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
    if _JOB_ROUTE in path:
        return _unusable_job(response)
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
        if (
            not isinstance(choices, list)
            or not choices
            or not isinstance(choices[0], dict)
            or not isinstance(choices[0].get("message"), dict)
        ):
            return f"the endpoint answered a chat completion without choices: {response.content[:120]!r}"
    elif not isinstance(doc.get("data"), list):
        return f"the endpoint answered embeddings without data: {response.content[:120]!r}"
    return None


_JOB_FIELDS = ("id", "status", "model")


def _unusable_job(response: httpx2.Response) -> str | None:
    """Why a fine-tuning job (or a page of them) cannot be used: Flywheel reads a job's id, status and
    model, and without this check a malformed one surfaced as a pydantic traceback."""
    try:
        doc = json.loads(response.content)
    except (UnicodeDecodeError, ValueError):
        return f"the endpoint answered a fine-tuning request with a body that is not JSON: {response.content[:80]!r}"
    jobs = doc.get("data") if isinstance(doc, dict) and doc.get("object") == "list" else [doc]
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        return (
            f"the endpoint answered a fine-tuning request with something that is not a job: {response.content[:120]!r}"
        )
    for job in jobs:
        missing = [f for f in _JOB_FIELDS if not isinstance(job.get(f), str)]
        if missing:
            return (
                f"the endpoint answered a fine-tuning job without a usable {', '.join(missing)}: "
                f"{response.content[:120]!r}"
            )
    return None


def _streamed(response: httpx2.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _refusal(request: httpx2.Request, health: EndpointHealth) -> httpx2.Response:
    if _STOPPING.is_set():
        return _error_response(request, 503, "not sent: Flywheel is stopping (interrupted)", retry=False)
    return _error_response(
        request,
        503,
        f"the endpoint has given no usable answer for {health.failing_for() or health.budget:.0f} s "
        f"({health.failures} failed requests); giving up (llm_max_total_seconds = {health.budget:g})",
        retry=False,
    )


def _capped(request: httpx2.Request, health: EndpointHealth, deadlines: list[Deadline]) -> None:
    """No request may wait past a deadline, nor, while the endpoint is failing, longer than what is
    left of the budget."""
    limits = [d.left() for d in deadlines]
    budget = health.remaining()
    left = min(limits + ([budget] if budget is not None else []), default=None)
    timeout = request.extensions.get("timeout")
    if left is None or not isinstance(timeout, dict):
        return
    request.extensions["timeout"] = {
        k: (min(v, max(left, 1.0)) if v is not None else max(left, 1.0)) for k, v in timeout.items()
    }


def _judge(request: httpx2.Request, response: httpx2.Response, health: EndpointHealth, sent: float) -> httpx2.Response:
    if response.status_code >= 500 or response.status_code in _FAILURE_STATUS:
        health.failed(since=sent)
        return response
    if 200 <= response.status_code < 300:
        problem = None if _streamed(response) else unusable(request, response)
        if problem is not None:
            health.failed(since=sent)
            return _error_response(request, 502, problem, retry=True)
        health.succeeded()
    return response


def _checked(request: httpx2.Request, response: httpx2.Response) -> bool:
    path = request.url.path
    return (
        200 <= response.status_code < 300
        and (path.endswith(_JSON_ROUTES) or _JOB_ROUTE in path)
        and not _streamed(response)
    )


class _Stopped(Exception):
    """The process is stopping: the request in flight was abandoned."""


def _refused(request: httpx2.Request, health: EndpointHealth, deadlines: list[Deadline]) -> httpx2.Response | None:
    """The answer given without sending: stopping, a deadline passed, or the endpoint given up on."""
    if _STOPPING.is_set() or health.exhausted():
        return _refusal(request, health)
    passed = _passed(deadlines)
    return None if passed is None else _error_response(request, 504, passed.message(), retry=False)


def _prepared(
    request: httpx2.Request, health: EndpointHealth, call_seconds: float | None
) -> tuple[list[Deadline], httpx2.Response | None]:
    """The deadlines a request runs under, and the answer to give without sending it, if any; a
    request that is sent has its timeouts capped to them."""
    deadlines = _deadlines(request, call_seconds)
    refusal = _refused(request, health, deadlines)
    if refusal is None:
        _capped(request, health, deadlines)
    return deadlines, refusal


def _timed_out(
    request: httpx2.Request, health: EndpointHealth, deadlines: list[Deadline], sent: float, exc: httpx2.TransportError
) -> httpx2.Response:
    """A request that failed on the wire: a failure for the budget; past a deadline, the answer says
    which one (the SDK would only say "Request timed out" and retry), else the error goes to the SDK."""
    health.failed(since=sent)
    passed = _passed(deadlines)
    if passed is None:
        raise exc
    return _error_response(request, 504, passed.message(), retry=False)


def _interruptible(fn: Callable[[], T]) -> T:
    """Run a blocking request on a daemon thread and wait here, looking at the stop flag: a signal
    ends the wait at once (a socket's read cannot be interrupted from another thread), and the
    abandoned request ends with its own timeout without holding the process."""
    box: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller as it is
            box.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="flywheel-request", daemon=True).start()
    while not done.wait(_STOP_POLL):
        if _STOPPING.is_set():
            raise _Stopped
    ok, value = box[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _retrieved(task: asyncio.Future[Any]) -> None:
    """An abandoned request's error is read here, so asyncio does not log it (with a traceback) as
    never retrieved: the caller already answered for it."""
    if not task.cancelled():
        task.exception()


async def _interruptible_async(work: Awaitable[T]) -> T:
    """The same for a coroutine: cancelled (which closes its connection) when the process stops."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieved)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_STOP_POLL)
            if done:
                return task.result()
            if _STOPPING.is_set():
                raise _Stopped
    finally:
        if not task.done():
            task.cancel()


class GuardedTransport(httpx2.BaseTransport):
    """A sync transport that checks answers and keeps the budget (see the module docstring)."""

    def __init__(self, inner: httpx2.BaseTransport, health: EndpointHealth, call_deadline: float | None = None) -> None:
        self.inner, self.health, self.call_deadline = inner, health, call_deadline

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        deadlines, refusal = _prepared(request, self.health, self.call_deadline)
        if refusal is not None:
            return refusal
        sent = time.monotonic()
        try:
            response = _interruptible(lambda: self._send(request))
        except _Stopped:
            return _refusal(request, self.health)
        except httpx2.TransportError as exc:
            return _timed_out(request, self.health, deadlines, sent, exc)
        return _judge(request, response, self.health, sent)

    def _send(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if _checked(request, response):
            response.read()
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncGuardedTransport(httpx2.AsyncBaseTransport):
    """The same for AsyncOpenAI."""

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, health: EndpointHealth, call_deadline: float | None = None
    ) -> None:
        self.inner, self.health, self.call_deadline = inner, health, call_deadline

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        deadlines, refusal = _prepared(request, self.health, self.call_deadline)
        if refusal is not None:
            return refusal
        sent = time.monotonic()
        try:
            response = await _interruptible_async(self._send(request))
        except _Stopped:
            return _refusal(request, self.health)
        except httpx2.TransportError as exc:
            return _timed_out(request, self.health, deadlines, sent, exc)
        return _judge(request, response, self.health, sent)

    async def _send(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if _checked(request, response):
            await response.aread()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
