"""The Python client of ``flywheel serve`` (SPEC, "Live service"), for a product to call.

    from flywheel_client import FlywheelClient

    with FlywheelClient("http://127.0.0.1:8700", api_key) as fw:
        fw.feedback({"event_id": "e1", "ts": "2026-11-10T10:00:00Z", "signal": "thumbs_up", ...})
        fw.traces({"resourceSpans": [...]})      # or OTLP JSON spans with gen_ai.evaluation.result events
        variant = fw.champion("user-42")        # arm, prompt (name, version, template), index, model
        if fw.ask("user-42", confidence=0.3).ask: ...

A 503 (the store is busy), a 429 (the key is over the rate limit) and a failed connection are
retried with exponential backoff, waiting what ``Retry-After`` says when the server says it;
feedback, idempotent by ``event_id``, is also retried after a timeout or a dropped answer. Another
4xx is never retried: it raises ``ClientError`` with the server's reason (``FeedbackRejected`` for
a single event the server rejected). The retry loop is written here, not taken from a library, so
that the client needs httpx and pydantic only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import BaseModel

from flywheel_client.models import (
    AskRequest,
    AskResult,
    ChampionResult,
    FeedbackResult,
    OptOutRequest,
    OptOutResult,
    RenderRequest,
    RenderResult,
    RetrieveRequest,
    RetrieveResult,
    TracesResult,
)

__all__ = ["ClientError", "FeedbackRejected", "FlywheelClient", "ServiceUnavailable"]

Event = Mapping[str, Any] | BaseModel


class ClientError(Exception):
    """The server refused the request (a 4xx, never retried) or failed it (a 5xx other than 503)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class FeedbackRejected(ClientError):
    """The single event posted was rejected; ``result.errors`` says why (it was quarantined)."""

    def __init__(self, result: FeedbackResult) -> None:
        super().__init__(422, "; ".join(e.error for e in result.errors))
        self.result = result


class ServiceUnavailable(ClientError):
    """Still 503 or 429, or no connection, after every retry."""


class _Retry(Exception):
    def __init__(self, status: int, detail: Any, retry_after: float | None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text


def _payload(event: Event) -> Any:
    return event.model_dump(mode="json", exclude_none=True) if isinstance(event, BaseModel) else dict(event)


class FlywheelClient:
    """Sync client; one connection pool per instance (thread-safe, like the httpx client under it)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.2,
        max_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retries, self.backoff, self.max_wait = retries, backoff, max_wait
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    # the routes --------------------------------------------------------------------------------
    def feedback(self, events: Event | Sequence[Event]) -> FeedbackResult:
        """Send one event (a dict or a pydantic model) or a list of them (one request, stored together)."""
        if isinstance(events, Mapping | BaseModel):
            body: Any = _payload(events)
        else:
            body = {"events": [_payload(e) for e in events]}
        response = self._send("POST", "/v1/feedback", json=body, idempotent=True, accept=(200, 422))
        result = FeedbackResult.model_validate(response.json())
        if response.status_code == 422:
            raise FeedbackRejected(result)
        return result

    def traces(self, request: Mapping[str, Any]) -> TracesResult:
        """Send one OTLP ``ExportTraceServiceRequest`` as OTLP JSON (``resourceSpans``, ids in hex) to
        ``POST /v1/traces`` (an ``ingest`` key): its spans' ``gen_ai.evaluation.result`` events become
        feedback. Retried like feedback: the events' ids come from the span ids, so a resent export is
        stored once. A product instrumented with OpenTelemetry uses its OTLP exporter instead; this is
        for code that builds spans itself (the simulator's traffic, a replay of exported files)."""
        response = self._send("POST", "/v1/traces", json=dict(request), idempotent=True)
        partial = response.json().get("partialSuccess") or {}
        return TracesResult(
            rejected_spans=int(partial.get("rejectedSpans") or 0), error_message=partial.get("errorMessage") or None
        )

    def champion(self, user_id: str | None = None) -> ChampionResult:
        """What to serve ``user_id``: arm, prompt (name, version, template, variables), index version, model."""
        params = {"user_id": user_id} if user_id is not None else None
        return ChampionResult.model_validate(self._send("GET", "/v1/champion", params=params, idempotent=True).json())

    def render(self, user_id: str | None = None, variables: Mapping[str, str] | None = None) -> RenderResult:
        """The prompt of ``user_id``'s arm as chat messages, ``variables`` filled in (every declared one)."""
        body = RenderRequest(user_id=user_id, variables=dict(variables or {})).model_dump(exclude_none=True)
        return RenderResult.model_validate(self._send("POST", "/v1/render", json=body, idempotent=True).json())

    def retrieve(self, query: str, user_id: str | None = None, k: int = 5) -> RetrieveResult:
        """The ``k`` chunks nearest ``query`` in the index of ``user_id``'s arm; send their ids back as
        ``context_ids`` with the feedback on the answer they grounded."""
        body = RetrieveRequest(user_id=user_id, query=query, k=k).model_dump(exclude_none=True)
        return RetrieveResult.model_validate(self._send("POST", "/v1/retrieve", json=body, idempotent=True).json())

    def ask(
        self,
        user_id: str,
        *,
        confidence: float | None = None,
        task_seconds: float | None = None,
        feature: str | None = None,
    ) -> AskResult:
        """Whether to ask the user for feedback on the output just shown (a yes counts toward today's cap)."""
        body = AskRequest(user_id=user_id, confidence=confidence, task_seconds=task_seconds, feature=feature)
        return AskResult.model_validate(
            self._send("POST", "/v1/ask", json=body.model_dump(exclude_none=True), idempotent=False).json()
        )

    def opt_out(self, user_id: str) -> OptOutResult:
        """The user never wants to be asked for feedback again."""
        body = OptOutRequest(user_id=user_id).model_dump()
        return OptOutResult.model_validate(self._send("POST", "/v1/opt-out", json=body, idempotent=True).json())

    # plumbing ----------------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, *, idempotent: bool, accept: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        # Not sent at all: always safe to retry. Sent but unanswered: safe only when idempotent.
        retryable: tuple[type[Exception], ...] = (_Retry, httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
        if idempotent:
            retryable += (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError)
        attempt = 1
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                if response.status_code in (429, 503) or (idempotent and response.status_code in (502, 504)):
                    raise _Retry(
                        response.status_code, _detail(response), _retry_after(response.headers.get("Retry-After"))
                    )
                break
            except retryable as exc:
                if attempt > self.retries:
                    if isinstance(exc, _Retry):
                        raise ServiceUnavailable(exc.status, exc.detail) from None
                    raise ServiceUnavailable(0, f"{type(exc).__name__}: {exc}") from exc
                time.sleep(self._wait(attempt, exc))
                attempt += 1
            except httpx.TransportError as exc:  # sent, unanswered, not idempotent: it may have happened
                raise ServiceUnavailable(0, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code not in accept:
            raise ClientError(response.status_code, _detail(response))
        return response

    def _wait(self, attempt: int, exc: Exception) -> float:
        """What the server asked for in Retry-After, else exponential backoff with jitter; at most max_wait."""
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_wait) * random.uniform(0.5, 1.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FlywheelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
