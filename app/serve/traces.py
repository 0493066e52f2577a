"""``POST /v1/traces``: an OTLP/HTTP trace receiver (protobuf or JSON), its spans' feedback through the
one ingest path (README, "Importing OpenTelemetry GenAI spans").

The answer is OTLP's ``ExportTraceServiceResponse`` in the request's encoding: empty when every
feedback item of the request was stored (or was a duplicate, or the spans held none), with
``partial_success`` (how many spans had an item rejected, and the first errors) when some were
rejected and quarantined. A body that cannot be parsed is 400, another content type 415; the key is
checked before the body is read, and the body is read within ``serve.max_body_bytes`` (gzip too).
"""

from __future__ import annotations

import zlib
from typing import Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from flywheel.app.serve.auth import require
from flywheel.app.serve.body import _deeper_than, read_limited
from flywheel.feedback.imports import ImportReport
from flywheel.feedback.otlp_import import (
    JSON,
    PROTOBUF,
    ingest_request,
    parse_json,
    parse_protobuf,
)
from flywheel.feedback.otlp_spans import OtlpParseError
from flywheel.keys import KeyRecord, Scope

router = APIRouter()
_SHOWN_ERRORS = 5  # rejections quoted in partial_success.error_message (all are in the quarantine)

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            PROTOBUF: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
                }
            },
            JSON: {"schema": {"type": "object", "description": "ExportTraceServiceRequest as OTLP JSON (hex ids)"}},
        },
    }
}


@router.post(
    "/v1/traces",
    openapi_extra=_BODY,
    response_class=Response,
    responses={
        200: {
            "description": "ExportTraceServiceResponse (protobuf or JSON, as sent), with partial_success when "
            "some spans' feedback was rejected",
            "content": {PROTOBUF: {}, JSON: {}},
        },
        400: {"description": "the body is not an OTLP ExportTraceServiceRequest"},
        413: {"description": "a body (or its gzip content) over serve.max_body_bytes"},
        415: {"description": f"a Content-Type other than {PROTOBUF} or {JSON}, or an encoding other than gzip"},
        503: {"description": "the store cannot take a write now; retry after Retry-After seconds"},
    },
)
async def traces(request: Request, key: KeyRecord = Depends(require(Scope.ingest))) -> Response:
    """OpenTelemetry GenAI spans: their ``gen_ai.evaluation.result`` events and OpenInference annotations
    become feedback events (validated, scrubbed, quarantined, deduplicated as ``flywheel ingest`` does);
    every valid event of the request is committed before the answer, or none is."""
    service = request.app.state.service
    settings = service.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise HTTPException(415, f"Content-Type must be {PROTOBUF} or {JSON} (OTLP/HTTP)")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise HTTPException(415, "Content-Encoding must be gzip or none")
    body = await read_limited(request, settings.serve.max_body_bytes)
    if encoding == "gzip":
        body = _gunzip(body, settings.serve.max_body_bytes)
    message = await anyio.to_thread.run_sync(_parse, body, kind, settings.serve.max_json_depth)
    report, rejected_spans = await anyio.to_thread.run_sync(_store, service, message, f"otlp-api-{key.name}")
    service.metrics.accepted.inc(report.accepted)
    service.metrics.duplicates.inc(report.duplicates)
    service.metrics.rejected.inc(report.rejected)
    service.events.add(report.negative)
    return _answer(report, rejected_spans, kind)


def _gunzip(body: bytes, limit: int) -> bytes:
    """The gzip body's content, refused (413) once it grows past ``limit``: a small bomb costs nothing."""
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error:
        raise HTTPException(400, "the body is not valid gzip") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise HTTPException(413, f"gzip content longer than serve.max_body_bytes ({limit} bytes)")
    return out


def _parse(body: bytes, kind: str, max_depth: int) -> Any:
    import json

    try:
        if kind == PROTOBUF:
            return parse_protobuf(body)
        try:
            doc = json.loads(body.decode("utf-8").removeprefix("\ufeff"))
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
        except RecursionError:
            raise HTTPException(400, f"the body nests deeper than serve.max_json_depth ({max_depth})") from None
        except ValueError as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from None
        if isinstance(doc, dict | list) and _deeper_than(doc, max_depth):
            raise HTTPException(400, f"the body nests deeper than serve.max_json_depth ({max_depth})")
        return parse_json(doc)
    except OtlpParseError as exc:
        raise HTTPException(400, str(exc)) from None


def _store(service: Any, message: Any, name: str) -> tuple[ImportReport, int]:
    """Ingest one request's feedback; a store that cannot take it raises StoreUnavailable (503)."""
    with service.stores.lease() as store:
        return ingest_request(service.settings, message, store, name)


def _answer(report: ImportReport, rejected_spans: int, kind: str) -> Response:
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse()
    if report.rejected:
        shown = "; ".join(f"span {e.item}: {e.error}" for e in report.errors[:_SHOWN_ERRORS])
        more = f" (and {report.rejected - _SHOWN_ERRORS} more)" if report.rejected > _SHOWN_ERRORS else ""
        answer.partial_success.rejected_spans = rejected_spans
        answer.partial_success.error_message = (
            f"{report.rejected} feedback item(s) rejected and quarantined: {shown}{more}"
        )
    if kind == PROTOBUF:
        return Response(answer.SerializeToString(), media_type=PROTOBUF)
    return Response(MessageToJson(answer, indent=None), media_type=JSON)
