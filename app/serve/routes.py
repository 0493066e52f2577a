"""The routes: each checks its key, hands the work to the layer that owns it and translates the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from flywheel.app.serve.auth import require
from flywheel.app.serve.body import SMALL_BODY_BYTES, body_schema, decode_events, read_limited, read_model
from flywheel.feedback.ingest import ingest_objects
from flywheel.keys import KeyRecord, Scope
from flywheel.live import (
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
)
from flywheel.loop.ask import decide
from flywheel.masking import mask_secrets
from flywheel.serving import NoActiveIndex, Served, VariablesMismatch, for_user, render_for

router = APIRouter()
_DECODE_INLINE_BYTES = 16 * 1024  # decoding a body this small costs less than a hop to a worker thread

_FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/FeedbackEvent"},
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {"type": "array", "items": {"$ref": "#/components/schemas/FeedbackEvent"}}
                            },
                        },
                    ]
                }
            }
        },
    }
}


def _service(request: Request) -> Any:
    return request.app.state.service


@router.post(
    "/v1/feedback",
    response_model=FeedbackResult,
    openapi_extra=_FEEDBACK_BODY,
    responses={
        400: {"description": "not UTF-8, not JSON, too deeply nested, or neither an event nor a batch"},
        413: {"description": "more than serve.max_batch events or serve.max_body_bytes"},
        422: {"description": "the single event posted was rejected (the body says why; it is quarantined)"},
        503: {"description": "the store cannot take a write now; retry after Retry-After seconds"},
    },
)
async def feedback(request: Request, key: KeyRecord = Depends(require(Scope.ingest))) -> Any:
    """Store one feedback event or ``{"events": [...]}``: validated, scrubbed, quarantined and
    deduplicated by ``event_id`` as ``flywheel ingest`` does; every valid event of the request is
    committed before the answer, or none is."""
    service = _service(request)
    body = await read_limited(request, service.settings.serve.max_body_bytes)
    if len(body) < _DECODE_INLINE_BYTES:
        items, batch = decode_events(body, service.settings.serve)
    else:  # a large body takes a while to decode: not on the event loop
        items, batch = await anyio.to_thread.run_sync(decode_events, body, service.settings.serve)
    report = await anyio.to_thread.run_sync(_store, service, items, f"api:{key.name}")
    service.metrics.accepted.inc(report.accepted)
    service.metrics.duplicates.inc(report.duplicates)
    service.metrics.rejected.inc(report.rejected)
    service.events.add(report.negative)
    return JSONResponse(report.model_dump(mode="json"), status_code=422 if not batch and report.rejected else 200)


def _store(service: Any, items: list[Any], source: str) -> FeedbackResult:
    """Ingest one request's events; a store that cannot take them raises StoreUnavailable (503)."""
    settings = service.settings
    with service.stores.lease() as store:
        return ingest_objects(items, source, store, settings.quarantine_dir, settings.ingest)


@router.get(
    "/v1/champion",
    response_model=ChampionResult,
    responses={404: {"description": "no production prompt yet (`flywheel prompt set FILE`)"}},
)
async def champion(
    request: Request, user_id: str | None = Query(None, max_length=256), _: KeyRecord = Depends(require(Scope.read))
) -> Any:
    """What to serve this user: their arm and its prompt, index version and model (cached for
    ``serve.champion_ttl_seconds``)."""
    service = _service(request)
    served = await _served(service)
    result = for_user(served, user_id)
    if result is None:
        raise _no_prompt(service)
    return result


async def _served(service: Any) -> Served:
    """Both arms as cached; the first request (or one after a failed load) reads them."""
    served = service.champions.peek()
    if served is None:
        try:
            served = await anyio.to_thread.run_sync(service.champions.load)
        except Exception as exc:  # MLflow or the state store unreachable: say so, and when to try again
            raise HTTPException(
                503,
                f"the champion cannot be read now: {type(exc).__name__}: {mask_secrets(str(exc))}",
                headers={"Retry-After": str(service.settings.serve.retry_after_seconds)},
            ) from exc
    return served


def _no_prompt(service: Any) -> HTTPException:
    return HTTPException(
        404,
        f"no production prompt named {service.settings.prompt_name!r} yet; bring yours in "
        "with `flywheel prompt set FILE`",
    )


@router.post(
    "/v1/render",
    response_model=RenderResult,
    openapi_extra=body_schema(RenderRequest),
    responses={
        404: {"description": "no production prompt yet (`flywheel prompt set FILE`)"},
        413: {"description": f"a body over {SMALL_BODY_BYTES} bytes"},
        422: {"description": "a declared variable without a value, or a value for none (`detail` names them)"},
    },
)
async def render(request: Request, _: KeyRecord = Depends(require(Scope.read))) -> Any:
    """The prompt of this user's arm with the product's values filled in, as chat messages."""
    service = _service(request)
    body = await read_model(request, RenderRequest, service.settings.serve.max_body_bytes)  # values may be long
    served = await _served(service)
    try:
        result = render_for(served, body.user_id, body.variables)
    except VariablesMismatch as exc:
        raise HTTPException(422, {"message": str(exc), "missing": exc.missing, "unknown": exc.unknown}) from None
    if result is None:
        raise _no_prompt(service)
    return result


@router.post(
    "/v1/retrieve",
    response_model=RetrieveResult,
    openapi_extra=body_schema(RetrieveRequest),
    responses={
        409: {"description": "the user's arm serves no knowledge index"},
        413: {"description": f"a body over {SMALL_BODY_BYTES} bytes"},
    },
)
async def retrieve(request: Request, _: KeyRecord = Depends(require(Scope.read))) -> Any:
    """The ``k`` chunks nearest the query in the index version of this user's arm; their ids are the
    ``context_ids`` to send back with the feedback on the answer."""
    service = _service(request)
    body = await read_model(request, RetrieveRequest, SMALL_BODY_BYTES)
    served = await _served(service)
    try:
        return await anyio.to_thread.run_sync(service.retrievers.retrieve, served, body.user_id, body.query, body.k)
    except NoActiveIndex as exc:
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/v1/ask",
    response_model=AskResult,
    openapi_extra=body_schema(AskRequest),
    responses={413: {"description": f"a body over {SMALL_BODY_BYTES} bytes"}},
)
async def ask(request: Request, _: KeyRecord = Depends(require(Scope.read))) -> AskResult:
    """Whether to ask this user for feedback on the output just shown, and why."""
    service = _service(request)
    body = await read_model(request, AskRequest, SMALL_BODY_BYTES)
    return await anyio.to_thread.run_sync(decide, service.settings.ask, body, service.ledger, datetime.now(UTC))


@router.post(
    "/v1/opt-out",
    response_model=OptOutResult,
    openapi_extra=body_schema(OptOutRequest),
    responses={413: {"description": f"a body over {SMALL_BODY_BYTES} bytes"}},
)
async def opt_out(request: Request, _: KeyRecord = Depends(require(Scope.ingest, Scope.read))) -> OptOutResult:
    """The user never wants to be asked for feedback again (any product key may record it)."""
    body = await read_model(request, OptOutRequest, SMALL_BODY_BYTES)
    new = await anyio.to_thread.run_sync(_service(request).ledger.opt_out, body.user_id)
    return OptOutResult(user_id=body.user_id, new=new)


@router.get("/healthz", responses={503: {"description": "the service cannot serve now (the reason says why)"}})
def healthz(request: Request) -> Any:
    """Readiness, without a key: 503 while no key can be checked (an unreadable key file)."""
    problem = _service(request).keys.problem()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return {"status": "ok"}


@router.get("/metrics", response_class=Response)
def metrics(request: Request, _: KeyRecord = Depends(require(Scope.read))) -> Response:
    """Prometheus text: feedback events accepted, duplicates, rejected; request latency."""
    service = _service(request)
    return Response(service.metrics.render(), media_type=service.metrics.content_type)
