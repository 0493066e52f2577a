"""Feedback events in the native forms of the sources `flywheel import` reads (MLflow traces with
assessments, OTLP GenAI spans with ``gen_ai.evaluation.result`` events, Langfuse traces and scores),
written a batch at a time, never all in memory; shared by ``bench_import`` and ``import_to_candidate``.

One event of SPEC's format becomes one trace of the source carrying what that source has a place
for: question and answer, user, session, consent, model, prompt and index version, arm, the
documents retrieved, and one verdict (a person's feedback, or an expected answer for a correction or an
edit).
The ids are derived from the event's id, so the event a source's import stores can be matched with
the one a direct ingest of the same line stores (``native_event_id``), and writing the same events
again gives the same ids (a re-import stores nothing new).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

SOURCES = ("mlflow", "otlp", "traces", "langfuse")  # `traces`: POST /v1/traces on `flywheel serve`
SIGNAL_NAMES = {"user_rating": "rating", "resolved": "outcome", "expert_review": "expert_review"}
# What each mapping is told about the verdicts' names: numbers by name, OTLP's thumbs and corrections.
IMPORT_ENV = {
    "FLYWHEEL_IMPORTS__MLFLOW__NUMERIC_SIGNALS": json.dumps(SIGNAL_NAMES),
    "FLYWHEEL_IMPORTS__OTLP__SIGNALS": json.dumps(
        SIGNAL_NAMES | {"helpful": "thumbs", "expected_response": "correction"}
    ),
    "FLYWHEEL_IMPORTS__LANGFUSE__SIGNALS": json.dumps(SIGNAL_NAMES),
}
LANGFUSE_PUBLIC, LANGFUSE_SECRET = "pk-lf-bench", "sk-lf-bench-secret"
ANSWERED_BEFORE = timedelta(seconds=5)  # a trace starts this long before the feedback on it


# --- the events -----------------------------------------------------------------------------------
_SIGNALS = ("thumbs_up", "thumbs_down", "rating", "correction", "accept", "copy", "outcome", "expert_review")
_QUERIES = (
    "How do I reset my password?",
    "What is the maximum upload size?",
    "How much does the Pro plan cost?",
    "How do I export my data?",
    "Sync broke again, how do I fix it?",
)
_REASONS = ("wrong", "outdated", "incomplete", "format", "other")


def synthetic_events(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` feedback events of every signal a source can carry, oldest first, as a product sends them."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(n):
        signal = _SIGNALS[i % len(_SIGNALS)]
        user = f"u{rng.randint(1, 50_000)}"
        e: dict[str, Any] = {
            "event_id": f"b-{i:08d}",
            "ts": (start + timedelta(seconds=20 * i)).isoformat().replace("+00:00", "Z"),
            "signal": signal,
            "query": f"{rng.choice(_QUERIES)} (ticket {rng.randint(1, 10**6)})",
            "output": "Go to Settings > Security and choose Reset password; we email you a reset link.",
            "user_id": user,
            "session_id": f"s-{user}-{i // 50}",
            "consent": rng.random() < 0.85,
            "model": "gpt-4o-mini",
            "prompt_version": "3",
            "context_ids": ["security.md", "account.md"],
        }
        if signal == "rating":
            e["value"] = rng.randint(1, 5)
        elif signal == "outcome":
            e["value"] = rng.randint(0, 1)
        elif signal == "expert_review":
            e["value"] = 0.2
        elif signal == "correction":
            e["correction"] = "Open Settings, then Security, then Reset password."
        if signal in ("thumbs_down", "correction", "expert_review") or (signal == "rating" and e["value"] < 3):
            e["reason"] = rng.choice(_REASONS)
        if i % 20 == 0:
            e["comment"] = f"reach me at user{i}@example.com"
        yield e


@dataclass(frozen=True)
class Verdict:
    """An event's feedback as the sources name it: a thumb (``helpful``), a number by name, an expected
    answer (``expected_response``), or an action by its signal's name (``user_action``)."""

    name: str
    thumb: bool | None = None
    number: float | None = None
    label: str | None = None  # an action's signal name
    expected: str | None = None  # a correction's text
    reason: str | None = None
    comment: str | None = None


def verdict(e: dict[str, Any]) -> Verdict:
    signal, reason, comment = e["signal"], e.get("reason"), e.get("comment")
    if signal in ("thumbs_up", "thumbs_down"):
        return Verdict("helpful", thumb=signal == "thumbs_up", reason=reason, comment=comment)
    named = {v: k for k, v in SIGNAL_NAMES.items()}
    if signal in named:
        return Verdict(named[signal], number=e.get("value"), reason=reason, comment=comment)
    if signal == "correction":
        return Verdict("expected_response", expected=e.get("correction"), reason=reason, comment=comment)
    if signal == "edit":  # no source has a place for an edited answer but as the answer expected
        return Verdict("expected_response", expected=e.get("final_text"), reason=reason, comment=comment)
    return Verdict("user_action", label=signal, reason=reason, comment=comment)


def _digest(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()


def _when(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def native_event_id(source: str, e: dict[str, Any]) -> str:
    """The event id the import of ``source`` stores for the trace written from ``e``."""
    d = _digest(e["event_id"])
    if source == "mlflow":
        return f"mlflow:tr-{d[:32]}/a-{d[32:64]}"
    if source in ("otlp", "traces"):
        return f"otlp:{d[:32]}/{d[32:48]}/{verdict(e).name}"
    return f"langfuse:score-{d[:32]}"


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- MLflow -----------------------------------------------------------------------------------------
def _mlflow_span(trace_hex: str, span_hex: str, parent: str | None, name: str, kind: str, start: int, **attrs: Any):
    from mlflow.entities import Span

    attributes = {
        "mlflow.traceRequestId": json.dumps(f"tr-{trace_hex}"),
        "mlflow.spanType": json.dumps(kind),
        **{k: json.dumps(v) for k, v in attrs.items()},
    }
    return Span.from_dict(
        {
            "trace_id": base64.b64encode(bytes.fromhex(trace_hex)).decode(),
            "span_id": base64.b64encode(bytes.fromhex(span_hex)).decode(),
            "parent_span_id": base64.b64encode(bytes.fromhex(parent)).decode() if parent else None,
            "name": name,
            "start_time_unix_nano": start,
            "end_time_unix_nano": start + 900_000_000,
            "events": [],
            "status": {"code": "STATUS_CODE_OK", "message": ""},
            "attributes": attributes,
            "links": [],
        }
    )


def mlflow_trace(e: dict[str, Any], experiment_id: str) -> tuple[Any, list[Any]]:
    """The trace MLflow Tracing records for one answer, with the person's assessment on it: its info
    (tags, metadata, the assessment) and its spans (the agent, a retriever, the chat model)."""
    from mlflow.entities import AssessmentSource, Expectation, Feedback, TraceInfo, TraceLocation, TraceState

    d = _digest(e["event_id"])
    trace_hex, asked = d[:32], _when(e) - ANSWERED_BEFORE
    start = _ns(asked)
    v = verdict(e)
    source = AssessmentSource(source_type="HUMAN", source_id=e.get("user_id") or "anonymous")
    meta = {"reason": v.reason} if v.reason else None
    stamp = int(_when(e).timestamp() * 1000)
    assessment: Any
    if v.expected is not None:
        assessment = Expectation(v.name, v.expected, source=source, metadata=meta, create_time_ms=stamp)
    else:
        value = v.thumb if v.thumb is not None else v.number if v.number is not None else v.label
        assessment = Feedback(v.name, value, source=source, rationale=v.comment, metadata=meta, create_time_ms=stamp)
    assessment.assessment_id = f"a-{d[32:64]}"
    assessment.trace_id = f"tr-{trace_hex}"
    tags = {"consent": "true" if e.get("consent") else "false"}
    tags |= {k: str(e[k]) for k in ("prompt_version", "index_version", "arm") if e.get(k) is not None}
    metadata = {"mlflow.trace.user": e.get("user_id"), "mlflow.trace.session": e.get("session_id")}
    info = TraceInfo(
        trace_id=f"tr-{trace_hex}",
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=int(asked.timestamp() * 1000),
        state=TraceState.OK,
        request_preview=e["query"][:1000],
        response_preview=e["output"][:1000],
        execution_duration=900,
        trace_metadata={k: v for k, v in metadata.items() if v},
        tags=tags,
        assessments=[assessment],
    )
    root, retriever, chat = d[32:48], d[48:64], d[16:32]
    docs = [{"page_content": f"text of {c}", "metadata": {"doc_uri": c}, "id": c} for c in e.get("context_ids") or []]
    model = {"mlflow.llm.model": e["model"]} if e.get("model") else {}
    spans = [
        _mlflow_span(
            trace_hex,
            root,
            None,
            "assistant",
            "AGENT",
            start,
            **{"mlflow.spanInputs": {"question": e["query"]}, "mlflow.spanOutputs": e["output"]},
        ),
        _mlflow_span(
            trace_hex,
            retriever,
            root,
            "retrieve",
            "RETRIEVER",
            start + 1000,
            **{"mlflow.spanInputs": {"query": e["query"]}, "mlflow.spanOutputs": docs},
        ),
        _mlflow_span(
            trace_hex,
            chat,
            root,
            "chat",
            "CHAT_MODEL",
            start + 2000,
            **{
                "mlflow.spanInputs": {"messages": [{"role": "user", "content": e["query"]}]},
                "mlflow.spanOutputs": {"choices": [{"message": {"role": "assistant", "content": e["output"]}}]},
                **model,
            },
        ),
    ]
    return info, spans


def log_mlflow(tracking_uri: str, experiment: str, events: Iterable[dict[str, Any]], batch: int = 500) -> int:
    """Log each event as an MLflow trace with its assessment into ``experiment``; the traces written.

    The way MLflow's own exporter writes to a tracking store, without running the traced code: the
    trace's info with its assessments (``TracingClient.start_trace``: one transaction a trace, the
    assessments in it), then the spans of a batch of traces at once (``log_spans`` takes many traces).
    """
    import mlflow
    from mlflow.tracing.client import TracingClient

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    tracing = TracingClient(tracking_uri)
    written = 0
    for chunk in batched(events, batch):
        spans: list[Any] = []
        for e in chunk:
            info, trace_spans = mlflow_trace(e, experiment_id)
            tracing.start_trace(info)
            spans += trace_spans
        tracing.log_spans(experiment_id, spans)
        written += len(chunk)
    return written


# --- OTLP -------------------------------------------------------------------------------------------
def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_spans(e: dict[str, Any]) -> list[dict[str, Any]]:
    """One answer as OpenTelemetry GenAI spans in OTLP JSON: the agent (user, session, consent,
    versions), a retrieval and the chat call, whose ``gen_ai.evaluation.result`` event is the verdict."""
    d = _digest(e["event_id"])
    trace, root, retrieval, chat = d[:32], d[48:64], d[16:32], d[32:48]
    start = _ns(_when(e) - ANSWERED_BEFORE)
    v = verdict(e)
    agent_attrs = [_kv("gen_ai.operation.name", "invoke_agent"), _kv("user.consent", bool(e.get("consent")))]
    for key, field in (
        ("user.id", "user_id"),
        ("session.id", "session_id"),
        ("flywheel.prompt_version", "prompt_version"),
        ("flywheel.index_version", "index_version"),
        ("flywheel.arm", "arm"),
    ):
        if e.get(field) is not None:
            agent_attrs.append(_kv(key, e[field]))
    evaluation = [_kv("gen_ai.evaluation.name", v.name)]
    score = float(v.thumb) if v.thumb is not None else v.number
    if score is not None:
        evaluation.append(_kv("gen_ai.evaluation.score.value", float(score)))
    label = v.label or v.reason
    if label:
        evaluation.append(_kv("gen_ai.evaluation.score.label", label))
    explanation = v.expected if v.expected is not None else v.comment
    if explanation:
        evaluation.append(_kv("gen_ai.evaluation.explanation", explanation))
    messages_in = [{"role": "user", "parts": [{"type": "text", "content": e["query"]}]}]
    messages_out = [{"role": "assistant", "parts": [{"type": "text", "content": e["output"]}], "finish_reason": "stop"}]
    chat_attrs = [
        _kv("gen_ai.operation.name", "chat"),
        _kv("gen_ai.input.messages", json.dumps(messages_in)),
        _kv("gen_ai.output.messages", json.dumps(messages_out)),
    ]
    if e.get("model"):
        chat_attrs.append(_kv("gen_ai.request.model", e["model"]))
    docs = [{"id": c} for c in e.get("context_ids") or []]

    def span(span_id: str, parent: str, name: str, offset: int, attrs: list[Any], events: list[Any]) -> dict[str, Any]:
        return {
            "traceId": trace,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": 1,
            "startTimeUnixNano": str(start + offset),
            "endTimeUnixNano": str(start + offset + 900_000_000),
            "attributes": attrs,
            "events": events,
            "status": {"code": 1},
        }

    feedback = {"timeUnixNano": str(_ns(_when(e))), "name": "gen_ai.evaluation.result", "attributes": evaluation}
    return [
        span(root, "", "invoke_agent support", 0, agent_attrs, []),
        span(
            retrieval,
            root,
            "retrieval kb",
            1000,
            [_kv("gen_ai.operation.name", "retrieval"), _kv("gen_ai.retrieval.documents", json.dumps(docs))],
            [],
        ),
        span(chat, root, f"chat {e.get('model') or 'model'}", 2000, chat_attrs, [feedback]),
    ]


def otlp_request(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP JSON holding the traces of ``events``."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv("service.name", "support-bot")]},
                "scopeSpans": [{"scope": {"name": "support-bot"}, "spans": [s for e in events for s in otlp_spans(e)]}],
            }
        ]
    }


def write_otlp_json(path: Path, events: Iterable[dict[str, Any]], per_request: int = 100) -> tuple[int, int]:
    """An OTLP JSON file as the Collector's ``file`` exporter writes it: a request a line; (traces, spans)."""
    traces = 0
    with path.open("w", encoding="utf-8") as fh:
        for chunk in batched(events, per_request):
            fh.write(json.dumps(otlp_request(chunk), ensure_ascii=False) + "\n")
            traces += len(chunk)
    return traces, traces * 3


def write_otlp_protobuf(path: Path, events: Iterable[dict[str, Any]], per_request: int = 100) -> tuple[int, int]:
    """The same requests, protobuf-encoded as an OTLP/HTTP exporter sends them, length-prefixed in a
    file (so they can be posted a batch at a time without all being in memory); (requests, spans)."""
    from flywheel.feedback.otlp_import import to_protobuf

    requests = spans = 0
    with path.open("wb") as fh:
        for chunk in batched(events, per_request):
            body = to_protobuf(otlp_request(chunk)).SerializeToString()
            fh.write(struct.pack(">I", len(body)) + body)
            requests += 1
            spans += 3 * len(chunk)
    return requests, spans


def read_protobuf_bodies(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while head := fh.read(4):
            yield fh.read(struct.unpack(">I", head)[0])


# --- Langfuse ---------------------------------------------------------------------------------------
def _langfuse_time(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def langfuse_trace(e: dict[str, Any]) -> dict[str, Any]:
    """The trace Langfuse's ``GET /api/public/traces/{id}`` returns for one answer."""
    d = _digest(e["event_id"])
    tid = f"trace-{d[:32]}"
    metadata = {"consent": bool(e.get("consent"))} | {
        k: e[k] for k in ("index_version", "arm", "prompt_version") if e.get(k) is not None
    }
    generation = {"id": f"gen-{d[:32]}", "traceId": tid, "type": "GENERATION", "name": "chat"}
    if e.get("model"):
        generation["model"] = e["model"]
    return {
        "id": tid,
        "timestamp": _langfuse_time(_when(e) - ANSWERED_BEFORE),
        "name": "assistant",
        "input": {"question": e["query"]},
        "output": e["output"],
        "sessionId": e.get("session_id"),
        "userId": e.get("user_id"),
        "metadata": metadata,
        "tags": [],
        "public": False,
        "htmlPath": f"/trace/{tid}",
        "observations": [generation],
        "scores": [],
    }


def langfuse_score(e: dict[str, Any]) -> dict[str, Any]:
    """The score a person gave the answer, as ``GET /api/public/scores`` lists it."""
    d = _digest(e["event_id"])
    v = verdict(e)
    value: float | None
    if v.expected is not None:
        kind, value, text = "CORRECTION", None, v.expected
    elif v.thumb is not None:
        kind, value, text = "BOOLEAN", 1 if v.thumb else 0, "True" if v.thumb else "False"
    elif v.number is not None:
        kind, value, text = "NUMERIC", v.number, None
    else:
        kind, value, text = "CATEGORICAL", None, v.label
    at = _langfuse_time(_when(e))
    return {
        "id": f"score-{d[:32]}",
        "traceId": f"trace-{d[:32]}",
        "observationId": None,
        "sessionId": None,
        "name": v.name,
        "value": value,
        "stringValue": text,
        "dataType": kind,
        "comment": v.comment,
        "source": "ANNOTATION",
        "timestamp": at,
        "createdAt": at,
        "updatedAt": at,
        "authorUserId": e.get("user_id"),
        "environment": "default",
        "metadata": {"reason": v.reason} if v.reason else {},
    }


def write_langfuse(folder: Path, events: Iterable[dict[str, Any]]) -> int:
    """``traces.jsonl`` and ``scores.jsonl`` in ``folder``, what :mod:`benchmarks.langfuse_api` serves."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with (folder / "traces.jsonl").open("w") as traces, (folder / "scores.jsonl").open("w") as scores:
        for e in events:
            traces.write(json.dumps(langfuse_trace(e), ensure_ascii=False) + "\n")
            scores.write(json.dumps(langfuse_score(e), ensure_ascii=False) + "\n")
            n += 1
    return n


class LangfuseServer:
    """:mod:`benchmarks.langfuse_api` serving ``folder`` in a child process on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> LangfuseServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.langfuse_api", str(self.folder)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.proc.kill()
            raise SystemExit("the local Langfuse API did not start")
        return self

    @property
    def env(self) -> dict[str, str]:
        """What `flywheel import langfuse` is configured with to read it."""
        return {
            "FLYWHEEL_IMPORTS__LANGFUSE__HOST": self.url,
            "FLYWHEEL_IMPORTS__LANGFUSE__PUBLIC_KEY": LANGFUSE_PUBLIC,
            "FLYWHEEL_IMPORTS__LANGFUSE__SECRET_KEY": LANGFUSE_SECRET,
        }

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# --- flywheel serve ---------------------------------------------------------------------------------
@dataclass
class Posted:
    """What posting a stream of bodies to ``/v1/traces`` took."""

    seconds: float = 0.0
    requests: int = 0
    rejected_spans: int = 0
    retried: int = 0  # 503 answers (the store busy), each sent again after its Retry-After
    first_error: str | None = None  # the first partial_success.error_message


def post_bodies(url: str, key: str, bodies: Iterable[bytes], threads: int = 4) -> Posted:
    """POST each protobuf body to ``/v1/traces`` from ``threads`` senders, as an OTLP exporter does:
    a 503 (or 429) is sent again after its ``Retry-After``; any other answer but 200 stops the run."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    lock = threading.Lock()
    source = iter(bodies)
    posted = Posted()

    def sender() -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            while True:
                with lock:
                    body = next(source, None)
                if body is None:
                    return
                answer = http.post("/v1/traces", content=body)
                while answer.status_code in (429, 503):
                    with lock:
                        posted.retried += 1
                    time.sleep(float(answer.headers.get("retry-after", "1")))
                    answer = http.post("/v1/traces", content=body)
                if answer.status_code != 200:
                    raise RuntimeError(f"POST /v1/traces answered {answer.status_code}: {answer.text[:300]}")
                partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
                with lock:
                    posted.requests += 1
                    posted.rejected_spans += partial.rejected_spans
                    posted.first_error = posted.first_error or partial.error_message or None

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(sender) for _ in range(threads)]:
            done.result()  # a sender's failure is the run's
    posted.seconds = time.perf_counter() - start
    return posted


def settings_for(home: Path) -> Any:
    """The settings a `flywheel` child with ``child_env(home)`` reads (FLYWHEEL_HOME outranks an
    argument to ``load_settings``, so it is set here for the call)."""
    from flywheel.config import load_settings

    saved = os.environ.get("FLYWHEEL_HOME")
    os.environ["FLYWHEEL_HOME"] = str(home)
    try:
        return load_settings()
    finally:
        if saved is None:
            del os.environ["FLYWHEEL_HOME"]
        else:
            os.environ["FLYWHEEL_HOME"] = saved


def stored_events(home: Path) -> Iterator[Any]:
    """The events the store under ``home`` holds."""
    from flywheel.feedback.store import open_store

    store = open_store(settings_for(home).resolved_store_url)
    try:
        yield from store.events()
    finally:
        store.close()


def stored_count(home: Path) -> int:
    """How many events the store under ``home`` holds."""
    from flywheel.feedback.store import open_store

    store = open_store(settings_for(home).resolved_store_url)
    try:
        return store.counts()["events"]
    finally:
        store.close()


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `flywheel` child with its own home (and no tracking URI of the caller's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "FLYWHEEL_CONFIG")}
    return env | IMPORT_ENV | {"FLYWHEEL_HOME": str(home)} | extra


def jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_jsonl(fh: IO[str], events: Iterable[dict[str, Any]]) -> int:
    n = 0
    for e in events:
        fh.write(json.dumps(e, ensure_ascii=False) + "\n")
        n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.import_data mlflow URI EXPERIMENT (--synthetic N | --events FILE)``: log the
    events as MLflow traces in a process of its own (MLflow's memory stays out of the caller's)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_data")
    parser.add_argument("what", choices=["mlflow"])
    parser.add_argument("tracking_uri")
    parser.add_argument("experiment")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--synthetic", type=int, help="this many events of synthetic_events()")
    given.add_argument("--events", type=Path, help="a JSONL file of events")
    args = parser.parse_args(argv)
    events = synthetic_events(args.synthetic) if args.synthetic is not None else jsonl(args.events)
    print(log_mlflow(args.tracking_uri, args.experiment, events))


if __name__ == "__main__":
    main()
