"""A variant's golden-set answers as MLflow traces on its run, so MLflow's evaluation pages show them.

One trace per golden item, linked to the variant's run (``mlflow.sourceRun``): the question in,
the answer out, an expectation (the expected answer) and a feedback (the item's score and the
scorer's rationale; an item the endpoint failed carries the error and no score). MLflow's run
comparison pairs two runs' traces by their request, which is the question alone, so the champion's
and a candidate's answers to one item line up side by side.

Why not ``mlflow.start_span`` + ``mlflow.log_feedback``: each trace then costs about eight SQLite
transactions (60 ms an item on a 2-core machine, measured), and export is asynchronous so the
assessments race it. Here each trace is created with its assessments in one transaction and the
variant's spans are written in one more: about 8 ms an item. Trace ids are derived from the run
and the item, so the same item of the same run is always the same trace.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from flywheel.evals.runner import EvalResult, EvalRow

log = logging.getLogger(__name__)

SCORE = "golden_score"  # the feedback's name: one column, the same as the run's metric
EXPECTED = "expected_response"  # MLflow's own name for the expected answer


def _ids(run_id: str, item_id: str) -> tuple[str, str]:
    """The OTel trace id (32 hex) and root span id (16 hex) of one item on one run."""
    digest = hashlib.sha256(f"{run_id}/{item_id}".encode()).hexdigest()
    return digest[:32], digest[32:48]


def _source(scorer: str, judge_model: str | None) -> Any:
    """Who scored: the judge model for the ``judge`` scorer, else the code scorer by name."""
    from mlflow.entities import AssessmentSource

    if scorer == "judge":
        return AssessmentSource(source_type="LLM_JUDGE", source_id=judge_model or "judge")
    return AssessmentSource(source_type="CODE", source_id=scorer)


def _assessments(row: EvalRow, trace_id: str, span_id: str, run_id: str, judge_model: str | None) -> list[Any]:
    """The expected answer, and the score with its rationale, or the error where nothing was scored."""
    from mlflow.entities import AssessmentError, AssessmentSource, Expectation, Feedback
    from mlflow.tracing.constant import AssessmentMetadataKey

    meta = {AssessmentMetadataKey.SOURCE_RUN_ID: run_id}
    expected = Expectation(
        name=EXPECTED,
        value=row.expected,
        trace_id=trace_id,
        span_id=span_id,
        metadata=meta,
        source=AssessmentSource(source_type="HUMAN", source_id="golden set"),
    )
    if row.score is None:
        error = AssessmentError(error_code="NOT_SCORED", error_message=(row.error or "not scored")[:1000])
        feedback = Feedback(
            name=SCORE,
            value=None,
            error=error,
            trace_id=trace_id,
            span_id=span_id,
            metadata=meta,
            source=_source(row.scorer, judge_model),
        )
    else:
        feedback = Feedback(
            name=SCORE,
            value=row.score,
            rationale=row.rationale or None,
            trace_id=trace_id,
            span_id=span_id,
            metadata=meta,
            source=_source(row.scorer, judge_model),
        )
    return [expected, feedback]


def _io(row: EvalRow) -> tuple[dict[str, str], dict[str, str]]:
    """What the trace shows: the question in; the answer, or the error, out."""
    out = {"answer": row.output} if row.output is not None else {"error": row.error or "no answer"}
    return {"question": row.input}, out


def _trace(
    row: EvalRow, exp_id: str, run_id: str, tags: dict[str, str], judge_model: str | None, now_ns: int
) -> tuple[Any, dict[str, Any]]:
    """The trace info (with its assessments) and the root span's dict of one golden item."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState
    from mlflow.tracing.constant import (
        TRACE_SCHEMA_VERSION,
        TRACE_SCHEMA_VERSION_KEY,
        SpanAttributeKey,
        TraceMetadataKey,
    )

    otel_trace, span_id = _ids(run_id, row.id)
    trace_id = "tr-" + otel_trace
    inputs, outputs = _io(row)
    request, response = json.dumps(inputs, ensure_ascii=False), json.dumps(outputs, ensure_ascii=False)
    duration_ms = int(row.latency_ms or 0)
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(exp_id),
        request_time=now_ns // 1_000_000,
        state=TraceState.ERROR if row.error else TraceState.OK,
        request_preview=request[:1000],
        response_preview=response[:1000],
        execution_duration=duration_ms,
        trace_metadata={
            TraceMetadataKey.SOURCE_RUN: run_id,
            TraceMetadataKey.INPUTS: request[:250],
            TraceMetadataKey.OUTPUTS: response[:250],
            TRACE_SCHEMA_VERSION_KEY: str(TRACE_SCHEMA_VERSION),
        },
        tags={
            "mlflow.traceName": row.id,
            "flywheel.golden_id": row.id,
            "flywheel.category": row.category,
            "flywheel.scorer": row.scorer,
            **tags,
        },
        assessments=_assessments(row, trace_id, span_id, run_id, judge_model),
    )
    span: dict[str, Any] = {
        "trace_id": _b64(otel_trace),
        "span_id": _b64(span_id),
        "parent_span_id": None,
        "name": row.id,
        "start_time_unix_nano": now_ns,
        "end_time_unix_nano": now_ns + duration_ms * 1_000_000,
        "events": [],
        "status": {"code": "STATUS_CODE_ERROR" if row.error else "STATUS_CODE_OK", "message": row.error or ""},
        "attributes": {
            SpanAttributeKey.REQUEST_ID: json.dumps(trace_id),
            SpanAttributeKey.SPAN_TYPE: '"CHAIN"',
            SpanAttributeKey.INPUTS: request,
            SpanAttributeKey.OUTPUTS: response,
            "flywheel.category": json.dumps(row.category),
            "flywheel.scorer": json.dumps(row.scorer),
        },
    }
    return info, span


def _b64(hex_id: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def log_answers(
    client: Any,
    exp_id: str,
    run_id: str,
    result: EvalResult,
    *,
    tags: dict[str, str],
    judge_model: str | None,
    limit: int | None = None,
) -> int:
    """One trace per golden item (the first ``limit``; None: all) on ``run_id``; returns how many
    were logged. Never raises: the answers are also in the run's table, and a cycle is worth more
    than its traces, so a failure is a warning."""
    from mlflow.entities import Span
    from mlflow.tracing.client import TracingClient

    rows = result.rows if limit is None else result.rows[:limit]
    if not rows:
        return 0
    spans, failed = [], []
    try:
        tracing = TracingClient(client.tracking_uri)
        now_ns = time.time_ns()
        for row in rows:
            try:
                info, span = _trace(row, exp_id, run_id, tags, judge_model, now_ns)
                tracing.start_trace(info)
                spans.append(Span.from_dict(span))
            except Exception as exc:  # noqa: BLE001 - one item's trace is not worth the others
                failed.append(f"{row.id}: {exc}")
        if spans:
            tracing.log_spans(exp_id, spans)  # one transaction for the variant's spans
    except Exception as exc:  # noqa: BLE001 - any store or entity error: the cycle goes on
        failed.append(str(exc))
    if failed:
        log.warning("%d answer(s) of run %s not logged as MLflow traces, first: %s", len(failed), run_id, failed[0])
    return len(spans)
