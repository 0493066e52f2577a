"""Reading bodies within their limits, as they stream and only after the key passed: nothing is
buffered past the bound, so a body too large costs its first bytes, not its size, in memory.

``POST /v1/feedback``: too large 413, not UTF-8 or not JSON or too deeply nested 400, neither an event
nor ``{"events": [...]}`` 400, more than ``serve.max_batch`` events 413. The small JSON routes
(``/v1/ask``, ``/v1/opt-out``): over ``SMALL_BODY_BYTES`` 413, not their model 422 as FastAPI answers."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from flywheel.config_sections import ServeSettings

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
SHAPE = 'the body is one event object or {"events": [event, ...]}'
SMALL_BODY_BYTES = 64 * 1024  # a user id and a few numbers: far below this
M = TypeVar("M", bound=BaseModel)


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing it (413) as soon as it is known to be longer than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {int(declared)} bytes; the limit is serve.max_body_bytes ({limit})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body longer than serve.max_body_bytes ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """The body as ``model``: read within ``limit``, then validated (422 with FastAPI's error list)."""
    body = await read_limited(request, limit)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {**e, "loc": ("body", *e["loc"])}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise RequestValidationError(errors, body=body.decode("utf-8", "replace")) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads ``model`` by hand (after its key check)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (iteratively: no recursion to exhaust)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _bounded_int(digits: str) -> int | float:
    """A JSON integer; one too long for Python to convert (over 4,300 digits) reads as infinity, which
    the event's finite-number rules then refuse for that event alone instead of the whole body."""
    return int(digits) if len(digits) <= 4000 else float("inf")


def decode_events(body: bytes, settings: ServeSettings) -> tuple[list[Any], bool]:
    """The items of the body and whether it was a batch (``{"events": [...]}``)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    too_deep = f"the body nests arrays and objects deeper than serve.max_json_depth ({settings.max_json_depth})"
    try:
        doc = json.loads(text.removeprefix("\ufeff"), parse_int=_bounded_int)
    except RecursionError:
        raise HTTPException(400, too_deep) from None
    except ValueError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    if isinstance(doc, dict | list) and _deeper_than(doc, settings.max_json_depth):
        raise HTTPException(400, too_deep)
    if not isinstance(doc, dict):
        raise HTTPException(400, f"{SHAPE}, not a JSON {_JSON_TYPES.get(type(doc), 'value')}")
    if "events" not in doc:
        return [doc], False
    if set(doc) != {"events"} or not isinstance(doc["events"], list):
        raise HTTPException(400, f"{SHAPE}: a batch has one field, events, a JSON array")
    if len(doc["events"]) > settings.max_batch:
        raise HTTPException(413, f"{len(doc['events'])} events; the limit is serve.max_batch ({settings.max_batch})")
    return doc["events"], True
