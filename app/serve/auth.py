"""``Authorization: Bearer KEY`` on every route but ``/healthz``: no or unknown key 401, a key
without the route's scope 403 (``admin`` has every scope), a key over ``serve.rate_limit`` 429.
Keys are never logged or echoed. Routes read their bodies only after this passed.

Every request reads its key id's row from the key table (in a worker thread: on PostgreSQL it is a
round trip), so a key revoked on any host is refused at once. A key this worker has not verified yet
also costs one scrypt (~50 ms of CPU) in a worker thread; those run one at a time, so a stream of
guessed keys takes at most one core and keys in use keep the other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flywheel.keys import KeyRecord, KeyStore, Scope

bearer = HTTPBearer(auto_error=False, description="An API key from `flywheel keys create NAME --scope ...`.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(*scopes: Scope) -> Callable[..., Awaitable[KeyRecord]]:
    """A dependency admitting keys with any of ``scopes``; it returns the key's record."""

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> KeyRecord:
        if credentials is None or not credentials.credentials:
            raise HTTPException(401, "missing API key: send Authorization: Bearer KEY", headers=_CHALLENGE)
        service = request.app.state.service
        record = await _verified(service.keys, credentials.credentials, request)
        if record is None:
            raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
        if not record.allows(scopes):
            raise HTTPException(
                403,
                f"key {record.name!r} has scope {record.scope.value!r}; this route needs "
                + " or ".join(repr(s.value) for s in scopes),
            )
        wait = service.rate_limit.retry_after(record.id) if service.rate_limit else None
        if wait is not None:
            limit = service.settings.serve.rate_limit
            raise HTTPException(
                429, f"key {record.name!r} is over serve.rate_limit ({limit})", headers={"Retry-After": str(wait)}
            )
        return record

    return dependency


async def _verified(keys: KeyStore, presented: str, request: Request) -> KeyRecord | None:
    """The key's active record if it is right: from the memo, or by scrypt off the event loop."""
    record, passed = await anyio.to_thread.run_sync(keys.lookup, presented)
    if record is None or passed:
        return record
    state = request.app.state
    if getattr(state, "hashing", None) is None:  # made here: an anyio limiter belongs to the running loop
        state.hashing = anyio.CapacityLimiter(1)
    return await anyio.to_thread.run_sync(keys.verify, presented, limiter=state.hashing)
