"""The one place that builds OpenAI-compatible clients (OpenAI, vLLM, Ollama, the simulator).

Retries: the SDK's own, with exponential backoff and jitter on connection errors, timeouts,
429 and 5xx (``llm_max_retries``). Every client goes through :mod:`flywheel.llm_guard`: an answer
the SDK cannot use is an endpoint error like a 500, and an endpoint that gave no usable answer for
``llm_max_total_seconds`` is given up on; no call outlasts ``deadlines.call`` (retries included) nor
its cycle stage's deadline. The API key is a SecretStr and is never logged.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from typing import Any

import httpx2
from openai import AsyncOpenAI, DefaultAsyncHttpxClient, DefaultHttpxClient, OpenAI
from openai._constants import DEFAULT_CONNECTION_LIMITS

from flywheel.config import Settings
from flywheel.errors import EndpointNotConfigured
from flywheel.llm_guard import AsyncGuardedTransport, GuardedTransport, health_of

# Local servers (vLLM, Ollama, the simulator) ignore the key but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"


def endpoint(settings: Settings, base_url: str | None = None, purpose: str = "this command") -> tuple[str, str]:
    """``(base_url, api_key)`` to use, or a clear error saying how to configure one."""
    url = base_url or settings.openai_base_url
    if not url:
        raise EndpointNotConfigured(purpose)
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else PLACEHOLDER_KEY
    return url, key


def make_client(settings: Settings, *, base_url: str | None = None, purpose: str = "this command") -> OpenAI:
    return OpenAI(**_client_options(settings, base_url, purpose, asynchronous=False))


def make_async_client(settings: Settings, *, base_url: str | None = None, purpose: str = "this command") -> AsyncOpenAI:
    return AsyncOpenAI(**_client_options(settings, base_url, purpose, asynchronous=True))


def tls_context() -> ssl.SSLContext:
    """The TLS settings every client verifies with, built once per process (and per ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``): loading the CA bundle costs ~20 ms, and a cycle builds dozens of clients."""
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=4)
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx2.create_ssl_context()  # verifies, with the CA bundle the environment names


def _client_options(settings: Settings, base_url: str | None, purpose: str, *, asynchronous: bool) -> dict[str, Any]:
    """What a sync or an async client is built with: the endpoint, the SDK's retries and timeout, and
    the guarded transport (one place, so the two kinds of client cannot drift apart)."""
    url, key = endpoint(settings, base_url, purpose)
    health = health_of(url, settings.llm_max_total_seconds)
    if asynchronous:
        http_client: httpx2.Client | httpx2.AsyncClient = DefaultAsyncHttpxClient(
            transport=AsyncGuardedTransport(
                httpx2.AsyncHTTPTransport(verify=tls_context(), limits=DEFAULT_CONNECTION_LIMITS),
                health,
                settings.deadlines.call,
            )
        )
    else:
        http_client = DefaultHttpxClient(
            transport=GuardedTransport(
                httpx2.HTTPTransport(verify=tls_context(), limits=DEFAULT_CONNECTION_LIMITS),
                health,
                settings.deadlines.call,
            )
        )
    return {
        "base_url": url,
        "api_key": key,
        "timeout": settings.llm_timeout,
        "max_retries": settings.llm_max_retries,
        "http_client": http_client,
    }
