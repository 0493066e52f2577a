"""``Authorization: Bearer KEY`` on every route but ``/healthz``: no or unknown key 401, a key
without the route's scope 403 (``admin`` has every scope). Keys are never logged or echoed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flywheel.keys import KeyRecord, Scope

bearer = HTTPBearer(auto_error=False, description="An API key from `flywheel keys create NAME --scope ...`.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(*scopes: Scope) -> Callable[..., Awaitable[KeyRecord]]:
    """A dependency admitting keys with any of ``scopes``; it returns the key's record."""

    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> KeyRecord:
        if credentials is None or not credentials.credentials:
            raise HTTPException(401, "missing API key: send Authorization: Bearer KEY", headers=_CHALLENGE)
        keys = request.app.state.service.keys
        record, passed = keys.lookup(credentials.credentials)
        if record is not None and not passed:  # first use in this worker: the slow hash, off the event loop
            record = await anyio.to_thread.run_sync(keys.verify, credentials.credentials)
        if record is None:
            raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
        if not record.allows(scopes):
            raise HTTPException(403, f"key {record.name!r} has scope {record.scope.value!r}; this route needs "
                                + " or ".join(repr(s.value) for s in scopes))
        return record

    return dependency
