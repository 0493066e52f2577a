"""The app: a ``Service`` (settings, keys, stores, ask ledger, champion cache, metrics, Prefect
events) built once per worker, the routes, and the error answers that are not FastAPI's own."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from flywheel.app.serve.champion_cache import TtlCache
from flywheel.app.serve.events import NegativeFeedbackEvents
from flywheel.app.serve.metrics import LatencyMiddleware, Metrics
from flywheel.app.serve.ratelimit import KeyRateLimit, key_rate_limit
from flywheel.app.serve.routes import router
from flywheel.app.serve.stores import StorePool
from flywheel.app.serve.traces import router as traces_router
from flywheel.ask_ledger import AskLedger
from flywheel.config import Settings, load_settings
from flywheel.errors import StoreUnavailable
from flywheel.keys import KeyFileError, KeyStore, open_keys
from flywheel.masking import install_log_masking, mask_secrets
from flywheel.runtime import Runtime
from flywheel.schemas import FeedbackEvent
from flywheel.serving import ArmRetrievers, Served, read_served

log = logging.getLogger("flywheel.serve")


@dataclass
class Service:
    settings: Settings
    runtime: Runtime
    keys: KeyStore
    stores: StorePool
    ledger: AskLedger
    champions: TtlCache[Served]
    metrics: Metrics
    events: NegativeFeedbackEvents
    rate_limit: KeyRateLimit | None
    retrievers: ArmRetrievers

    @classmethod
    def build(cls, settings: Settings) -> Service:
        settings.ensure_home()
        timeout = settings.serve.store_timeout_seconds
        rt = Runtime(settings, store_timeout=timeout)  # this worker's stores and clients, opened on first use
        return cls(
            settings=settings,
            runtime=rt,
            keys=open_keys(settings, timeout),
            stores=StorePool(rt),
            ledger=AskLedger(settings.resolved_store_url, timeout, engine=lambda: rt.feedback.engine),
            champions=TtlCache(lambda: read_served(settings, rt.state), settings.serve.champion_ttl_seconds),
            metrics=Metrics(),
            events=NegativeFeedbackEvents(settings),
            rate_limit=key_rate_limit(settings.serve.rate_limit),
            retrievers=ArmRetrievers(rt),
        )

    def close(self) -> None:
        self.events.stop()
        self.keys.close()
        self.ledger.close()
        self.runtime.close()


def create_app(settings: Settings | None = None, warm_up: bool = True) -> FastAPI:
    """The ASGI app (uvicorn calls it with no arguments in each worker: settings from the environment).
    ``warm_up`` reads the champion in the background at startup, so no request waits for MLflow."""
    install_log_masking()  # uvicorn's and the stores' records too, in every worker
    service = Service.build(settings or load_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.events.start()
        if warm_up:
            threading.Thread(target=_warm, args=(service,), name="champion-warm-up", daemon=True).start()
        try:
            yield
        finally:
            service.close()

    # /docs and /redoc with their scripts and styles served from the package: no CDN, readable offline.
    app = FastAPIOffline(
        title="Flywheel live service",
        version="1",
        lifespan=lifespan,
        description="Feedback in, the champion out, and when to ask users for feedback. Every "
        "route but /healthz and the docs needs `Authorization: Bearer KEY` "
        "(`flywheel keys create`).",
    )
    app.state.service = service
    app.include_router(router)
    app.include_router(traces_router)
    app.add_exception_handler(StoreUnavailable, _busy)
    app.add_exception_handler(KeyFileError, _no_keys)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_middleware(LatencyMiddleware, metrics=service.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, never the value sent (it may be PII: a user id, an email in a query)."""
    assert isinstance(exc, RequestValidationError)
    detail = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    """A store that cannot serve now (StoreUnavailable, raised by every store): 503, try again later."""
    seconds = request.app.state.service.settings.serve.retry_after_seconds
    log.warning("store unavailable, answered 503: %s", mask_secrets(str(exc)))
    return JSONResponse(
        {"detail": "the feedback store cannot take a write now; nothing was stored, retry"},
        status_code=503,
        headers={"Retry-After": str(seconds)},
    )


async def _no_keys(request: Request, exc: Exception) -> JSONResponse:
    """No key can be checked (logged once by the key store when the file changed, not here per request)."""
    seconds = request.app.state.service.settings.serve.retry_after_seconds
    return JSONResponse(
        {"detail": f"API keys cannot be checked now: {exc}"}, status_code=503, headers={"Retry-After": str(seconds)}
    )


def _warm(service: Service) -> None:
    try:
        service.champions.load()
    except Exception as exc:
        log.warning(
            "the champion could not be read at startup (the first request tries again): %s", mask_secrets(str(exc))
        )
    # Everything start-up made (the imports of MLflow, SQLAlchemy, pydantic: hundreds of thousands of
    # objects) stays for the worker's life. Left in the collector's oldest generation, each full
    # collection walked them all: 100-150 ms in which no request was answered (bench_serve's champion
    # p99 went from ~7 ms to ~130 ms in a run that met one). Frozen, a full collection walks only what
    # traffic made since.
    gc.freeze()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the feedback event that ``POST /v1/feedback`` reads by hand."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        event = FeedbackEvent.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(event.pop("$defs", {}))
        components["FeedbackEvent"] = event
        app.openapi_schema = schema
    return app.openapi_schema
