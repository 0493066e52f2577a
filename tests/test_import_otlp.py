"""OpenTelemetry GenAI spans as feedback (issue 30 part 2): the real ``opentelemetry-sdk`` with its
OTLP/HTTP exporter, configured by the environment variables the README gives, pointed at a running
``flywheel serve`` (``POST /v1/traces``); the same spans as an OTLP JSON file through
``flywheel import otlp``; both through the one ingest path (validation, consent, scrubbing, quarantine,
duplicates)."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import load_settings
from flywheel.feedback.store import open_store
from live_server import LiveServer, make_key

EVAL = "gen_ai.evaluation.result"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def live(cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveServer, str]]:
    monkeypatch.setenv("FLYWHEEL_IMPORTS__OTLP__SIGNALS", '{"resolved": "outcome", "relevance": "ignore"}')
    key = make_key(cli, "otel-collector", "ingest")
    with LiveServer() as server:
        yield server, key


class Product:
    """A product instrumented with the OpenTelemetry SDK: a provider whose spans go to an exporter
    (the OTLP/HTTP one in a batch processor, and an in-memory copy to write the same spans to a file)."""

    def __init__(self, exporter: Any | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
        )
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("support-bot")

    def answer(
        self,
        question: str,
        answer: str,
        *,
        docs: list[dict[str, Any]] | None = None,
        user: str = "u-1",
        consent: bool | None = True,
        evaluations: list[dict[str, Any]] = (),  # type: ignore[assignment]
        annotations: list[dict[str, Any]] = (),
        response_id: str = "chatcmpl-1",  # type: ignore[assignment]
        prompt_version: str | None = None,
    ) -> None:
        """One request of the product: an agent span (user, session, consent), a retrieval span and a
        chat span with the GenAI message attributes; the evaluations are events on the chat span."""
        with self.tracer.start_as_current_span("invoke_agent support") as root:
            root.set_attribute("gen_ai.operation.name", "invoke_agent")
            root.set_attribute("user.id", user)
            root.set_attribute("gen_ai.conversation.id", f"conv-{user}")
            if consent is not None:
                root.set_attribute("user.consent", consent)
            if prompt_version is not None:  # what GET /v1/champion said was served
                root.set_attribute("flywheel.prompt_version", prompt_version)
            if docs is not None:
                with self.tracer.start_as_current_span("retrieval kb") as r:
                    r.set_attribute("gen_ai.operation.name", "retrieval")
                    r.set_attribute("gen_ai.retrieval.documents", json.dumps(docs))
            with self.tracer.start_as_current_span("chat gpt-4o-mini") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
                chat.set_attribute("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
                chat.set_attribute("gen_ai.response.id", response_id)
                chat.set_attribute(
                    "gen_ai.input.messages",
                    json.dumps(
                        [
                            {"role": "system", "parts": [{"type": "text", "content": "You help with billing."}]},
                            {"role": "user", "parts": [{"type": "text", "content": question}]},
                        ]
                    ),
                )
                chat.set_attribute(
                    "gen_ai.output.messages",
                    json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
                    ),
                )
                for e in evaluations:
                    chat.add_event(EVAL, {f"gen_ai.evaluation.{k}": v for k, v in e.items()})
                for i, a in enumerate(annotations):
                    for k, v in a.items():
                        chat.set_attribute(f"annotations.{i}.annotation.{k}", v)

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)

    def request(self) -> Any:
        """Every finished span as one ExportTraceServiceRequest (what the exporter sends)."""
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        return encode_spans(self.memory.get_finished_spans())


def _exporter(server: LiveServer, key: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The OTLP/HTTP exporter configured as the README says: by environment variables only."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{server.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"Authorization=Bearer%20{key}")
    return OTLPSpanExporter()


def _stored() -> dict[str, dict[str, Any]]:
    with open_store(load_settings().resolved_store_url) as store:
        return {e.event_id: asdict(e) for e in store.events()}


def _by_evaluation(stored: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["metadata"]["otlp_evaluation"]: e for e in stored.values()}


def _pricing(product: Product) -> None:
    product.answer(
        "How much does the Pro plan cost?",
        "The Pro plan costs $10 per month.",
        docs=[{"id": "pricing.md#0", "score": 0.91}, {"id": "plans/pro.md", "score": 0.7, "metadata": {"chunk": 2}}],
        prompt_version="3",
        evaluations=[
            {"name": "user_feedback", "score.label": "outdated", "explanation": "the price went up"},
            {"name": "stars", "score.value": 2},
            {"name": "resolved", "score.value": 0},
            {"name": "relevance", "score.value": 0.93},  # mapped to "ignore" by the test's settings
        ],
        annotations=[
            {"name": "helpful", "label": "no", "annotator_kind": "HUMAN"},
            {"name": "hallucination", "score": 0.1, "annotator_kind": "LLM"},
        ],
    )


def test_sdk_spans_become_events_field_by_field_and_a_resend_stores_nothing(
    live: tuple[LiveServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, key = live
    product = Product(_exporter(server, key, monkeypatch))
    _pricing(product)
    product.answer(
        "Where is my invoice?",
        "Under Billing.",
        user="u-2",
        consent=None,
        evaluations=[{"name": "user_feedback", "score.label": "thumbs_up"}],
        response_id="chatcmpl-2",
    )
    product.flush()

    stored = _stored()
    (chat,) = [
        s
        for s in product.memory.get_finished_spans()
        if s.name.startswith("chat") and s.attributes["gen_ai.response.id"] == "chatcmpl-1"
    ]
    trace_id, span_id = f"{chat.context.trace_id:032x}", f"{chat.context.span_id:016x}"
    events = _by_evaluation({k: v for k, v in stored.items() if k.startswith(f"otlp:{trace_id}/")})
    assert set(events) == {"user_feedback", "stars", "resolved", "helpful"}
    assert all(e["event_id"] == f"otlp:{trace_id}/{span_id}/{name}" for name, e in events.items())
    shared = {
        "query": "How much does the Pro plan cost?",
        "output": "The Pro plan costs $10 per month.",
        "user_id": "u-1",
        "session_id": "conv-u-1",
        "consent": True,
        "model": "gpt-4o-mini-2024-07-18",
        "context_ids": ["pricing.md#0", "plans/pro.md#2"],
        "pii_scrubbed": [],
        "prompt_version": "3",
    }
    for e in events.values():
        assert {k: e[k] for k in shared} == shared
    thumbs = events["user_feedback"]
    assert (thumbs["signal"], thumbs["polarity"], thumbs["reason"], thumbs["comment"], thumbs["value"]) == (
        "thumbs_down",
        -1,
        "outdated",
        "the price went up",
        None,
    )
    assert thumbs["metadata"] == {"otlp_evaluation": "user_feedback"}
    (evaluation,) = [e for e in chat.events if e.attributes["gen_ai.evaluation.name"] == "user_feedback"]
    assert thumbs["ts"] == datetime.fromtimestamp(evaluation.timestamp // 10**9, UTC).replace(
        microsecond=evaluation.timestamp % 10**9 // 1000
    )  # the feedback's own time, not the export's
    assert (events["stars"]["signal"], events["stars"]["value"]) == ("rating", 2)
    assert (events["resolved"]["signal"], events["resolved"]["value"], events["resolved"]["polarity"]) == (
        "outcome",
        0,
        -1,
    )
    assert (events["helpful"]["signal"], events["helpful"]["metadata"]) == (
        "thumbs_down",
        {"otlp_evaluation": "helpful", "otlp_annotator_kind": "HUMAN"},
    )
    # The span without a consent attribute: stored for the statistics, without consent.
    (other,) = [e for e in stored.values() if e["user_id"] == "u-2"]
    assert (other["signal"], other["consent"], other["query"], other["context_ids"]) == (
        "thumbs_up",
        False,
        "Where is my invoice?",
        [],
    )

    # The same spans again (an exporter's retry): nothing new, nothing changed.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert OTLPSpanExporter().export(product.memory.get_finished_spans()) == SpanExportResult.SUCCESS
    assert _stored() == stored


def test_malformed_feedback_is_quarantined_and_answered_as_partial_success(
    live: tuple[LiveServer, str], flywheel_home: Path
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    from flywheel.feedback.otlp_import import to_json

    server, key = live
    product = Product()
    product.answer(
        "What does error E42 mean?",
        "A network problem.",
        response_id="chatcmpl-a",
        evaluations=[
            {"name": "verdict", "score.label": "meh"},
            {"name": "stars", "score.value": 7},
            {"name": "user_feedback", "score.label": "thumbs_down"},
        ],
    )
    product.answer(
        "Can I pay yearly?", "Yes.", response_id="chatcmpl-b", evaluations=[{"name": "stars", "score.value": 9}]
    )
    request = product.request()
    with server.http(key) as http:
        answer = http.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
        assert (answer.status_code, answer.headers["content-type"]) == (200, "application/x-protobuf")
        partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
        assert partial.rejected_spans == 2  # two chat spans had feedback rejected; the thumb was stored
        assert "3 feedback item(s) rejected" in partial.error_message
        assert "signal 'rating' needs 'value' between 1 and 5" in partial.error_message
        assert "meh" not in partial.error_message  # the rule, never the value
        assert [e["signal"] for e in _stored().values()] == ["thumbs_down"]

        # The same spans as OTLP JSON: the thumb is a duplicate, the bad items rejected again, kept once.
        answer = http.post("/v1/traces", json=to_json(request))
        assert (answer.status_code, answer.headers["content-type"]) == (200, "application/json")
        assert answer.json()["partialSuccess"]["rejectedSpans"] == "2"
    assert len(_stored()) == 1
    (kept,) = (flywheel_home / "quarantine").glob("otlp-api-otel-collector.*.rejected.jsonl")
    records = [json.loads(line) for line in kept.read_text().splitlines()]
    assert len(records) == 3
    assert {r["error"] for r in records} == {
        "signal 'rating' needs 'value' between 1 and 5",
        (
            "signal: Input should be 'thumbs_up', 'thumbs_down', 'rating', 'correction', 'edit', 'accept', 'dismiss', "
            "'copy', 'outcome' or 'expert_review'"
        ),
    }
    assert all(json.loads(r["raw"])["event_id"].startswith("otlp:") for r in records)


def test_bodies_the_receiver_refuses(live: tuple[LiveServer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    server, key = live
    product = Product()
    product.answer("Is there a free plan?", "No.", evaluations=[{"name": "user_feedback", "score.label": "no"}])
    body = product.request().SerializeToString()
    with server.http() as anonymous:
        assert anonymous.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 401
    with server.http(key) as http:
        assert http.post("/v1/traces", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
        bad = http.post("/v1/traces", content=b"\xff\x00garbage", headers=PROTOBUF)
        assert (bad.status_code, bad.json()["detail"]) == (
            400,
            "not an OTLP ExportTraceServiceRequest in protobuf: it cannot be decoded",
        )
        bad = http.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]})
        assert (bad.status_code, bad.json()["detail"]) == (400, "not OTLP JSON: traceId is not a hex id")
        bad = http.post("/v1/traces", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400
        big = b"\n" * (server.settings.serve.max_body_bytes + 1)
        assert http.post("/v1/traces", content=big, headers=PROTOBUF).status_code == 413
        bomb = gzip.compress(b" " * (server.settings.serve.max_body_bytes + 1))
        assert http.post("/v1/traces", content=bomb, headers=PROTOBUF | {"Content-Encoding": "gzip"}).status_code == 413
        assert _stored() == {}
        ok = http.post("/v1/traces", content=gzip.compress(body), headers=PROTOBUF | {"Content-Encoding": "gzip"})
        assert (ok.status_code, ok.content) == (200, b"")  # an empty ExportTraceServiceResponse: all taken
    assert [e["signal"] for e in _stored().values()] == ["thumbs_down"]


def test_no_key_is_refused_before_the_body_is_read(live: tuple[LiveServer, str]) -> None:
    """The request announces 50 MB and sends 1 KB: the 401 comes without waiting for the rest."""
    server, _ = live
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b"\0" * 1024
        )
        head = sock.recv(65536)  # times out (fails) if the server waited for the body
    assert head.startswith(b"HTTP/1.1 401 "), head[:100]


def test_the_file_import_gives_the_same_events_as_the_live_route(
    cli, live: tuple[LiveServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.feedback.otlp_import import to_json

    server, key = live
    product = Product(_exporter(server, key, monkeypatch))
    _pricing(product)
    product.answer(
        "Where is my invoice?",
        "Under Billing.",
        user="u-2",
        consent=False,
        evaluations=[{"name": "user_feedback", "score.label": "thumbs_up"}],
        response_id="chatcmpl-2",
    )
    product.flush()
    live_events = _stored()
    assert len(live_events) == 5

    # A Collector's file exporter: one request per line (here a trace a line, and between them a line
    # that is not OTLP); another home, the same settings.
    doc = to_json(product.request())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    first = {"resourceSpans": [{**doc["resourceSpans"][0], "scopeSpans": [{"spans": spans[:3]}]}]}
    second = {"resourceSpans": [{**doc["resourceSpans"][0], "scopeSpans": [{"spans": spans[3:]}]}]}
    lines = tmp_path / "traces.jsonl"
    lines.write_text(json.dumps(first) + "\n\n" + '{"resourceSpans": 7}\n' + json.dumps(second) + "\n")
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "other-home"))
    report = cli("import", "otlp", str(lines), "--json")
    assert {
        k: report[k] for k in ("source", "file", "read", "accepted", "duplicates", "rejected", "skipped_no_consent")
    } == {
        "source": "otlp",
        "file": str(lines),
        "read": 8,
        "accepted": 5,
        "duplicates": 0,
        "rejected": 1,
        "skipped_no_consent": 1,
    }
    assert report["skipped"] == {"ignored by imports.otlp.signals": 1, "llm annotation, not a person's": 1}
    assert (report["spans"], report["traces"]) == (5, 2)
    (error,) = report["errors"]
    assert (error["item"], error["error"]) == (
        "line 3",
        ("line 3: not an OTLP ExportTraceServiceRequest: field resourceSpans has a value of the wrong type"),
    )
    (kept,) = report["quarantine"]
    assert json.loads(Path(kept).read_text())["raw"] == '{"resourceSpans": 7}'
    assert _stored() == live_events

    # One pretty-printed document: the same events, all duplicates now.
    pretty = tmp_path / "traces.json"
    pretty.write_text(json.dumps(doc, indent=2))
    again = cli("import", "otlp", str(pretty), "--json")
    assert (again["read"], again["accepted"], again["duplicates"], again["rejected"]) == (7, 0, 5, 0)
    assert _stored() == live_events


def test_older_conventions_and_openinference_attributes_are_read(cli, tmp_path: Path) -> None:
    """OpenLLMetry's indexed gen_ai.prompt/completion attributes, the event-based gen_ai.content.* and
    OpenInference's llm.*_messages, input.value and retrieval.documents, on spans made by the SDK."""
    from flywheel.feedback.otlp_import import to_json

    product = Product()
    tracer = product.tracer
    with tracer.start_as_current_span("openai.chat") as s:  # OpenLLMetry (traceloop) before 1.37
        s.set_attributes(
            {
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "Reset my password",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "Use the link.",
                "user.consent": "yes",
                "session.id": "s-9",
            }
        )
        s.add_event(EVAL, {"gen_ai.evaluation.name": "user_feedback", "gen_ai.evaluation.score.label": "pass"})
    with tracer.start_as_current_span("chat") as s:  # the event-based messages of 1.28 to 1.36
        s.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Refund?"}])})
        s.add_event(
            "gen_ai.content.completion",
            {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "Within 30 days."}])},
        )
        s.set_attribute("user.consent", "true")
        s.add_event(EVAL, {"gen_ai.evaluation.name": "csat", "gen_ai.evaluation.score.value": 4})
    with tracer.start_as_current_span("agent") as root:  # OpenInference (Phoenix, Arize)
        root.set_attributes(
            {
                "openinference.span.kind": "CHAIN",
                "input.value": "Which plan has SSO?",
                "output.value": "Enterprise.",
                "user.id": "u-7",
                "user.consent": True,
                "annotations.0.annotation.name": "correct",
                "annotations.0.annotation.label": "incorrect",
                "annotations.0.annotation.explanation": "Business has SSO too",
                "annotations.0.annotation.annotator_kind": "HUMAN",
            }
        )
        with tracer.start_as_current_span("retrieve") as r:
            r.set_attributes(
                {
                    "openinference.span.kind": "RETRIEVER",
                    "retrieval.documents.0.document.id": "sso.md#1",
                    "retrieval.documents.1.document.id": "plans.md",
                    "retrieval.documents.1.document.metadata": json.dumps({"chunk_index": 0}),
                }
            )
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "claude-3-5-sonnet",
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "Which plan has SSO? (context...)",
                }
            )
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(to_json(product.request())))
    report = cli("import", "otlp", str(path), "--json")
    assert (report["read"], report["accepted"], report["rejected"]) == (3, 3, 0)
    got = {e["metadata"]["otlp_evaluation"]: e for e in _stored().values()}
    pick = ("signal", "query", "output", "model", "session_id", "user_id", "consent", "context_ids", "value", "comment")
    assert {k: {f: e[f] for f in pick} for k, e in got.items()} == {
        "user_feedback": {
            "signal": "thumbs_up",
            "query": "Reset my password",
            "output": "Use the link.",
            "model": "gpt-4o",
            "session_id": "s-9",
            "user_id": None,
            "consent": True,
            "context_ids": [],
            "value": None,
            "comment": None,
        },
        "csat": {
            "signal": "rating",
            "query": "Refund?",
            "output": "Within 30 days.",
            "model": None,
            "session_id": None,
            "user_id": None,
            "consent": True,
            "context_ids": [],
            "value": 4,
            "comment": None,
        },
        "correct": {
            "signal": "thumbs_down",
            "query": "Which plan has SSO?",
            "output": "Enterprise.",
            "model": "claude-3-5-sonnet",
            "session_id": None,
            "user_id": "u-7",
            "consent": True,
            "context_ids": ["sso.md#1", "plans.md#0"],
            "value": None,
            "comment": "Business has SSO too",
        },
    }


def test_end_to_end_the_worlds_feedback_as_spans_becomes_clusters(
    cli, live: tuple[LiveServer, str], world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator world's answers and their users' feedback, traced by the SDK with GenAI attributes
    and evaluation events, exported to the live service, then triaged; text without consent never shows."""
    server, key = live
    events = []
    for line in (world / "feedback.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("query"), str) and isinstance(e.get("user_id"), str):
            events.append(e)
    chosen = [e for e in events if e.get("signal") == "thumbs_down" and e.get("reason")][:40]
    chosen += [e for e in events if e.get("signal") == "thumbs_up"][:10]
    product = Product(_exporter(server, key, monkeypatch))
    for i, e in enumerate(chosen):
        label = e["reason"] if e["signal"] == "thumbs_down" else "thumbs_up"
        evaluation = {"name": "user_feedback", "score.label": label} | (
            {"explanation": e["comment"]} if e.get("comment") else {}
        )
        product.answer(
            e["query"],
            e["output"],
            docs=[{"id": c} for c in e.get("context_ids") or []],
            user=e["user_id"],
            consent=bool(e["consent"]),
            evaluations=[evaluation],
            response_id=f"chatcmpl-{i}",
        )
    product.flush()

    stored = _stored()
    unconsented = sum(1 for e in chosen if not e["consent"])
    assert len(stored) == 50 and sum(1 for e in stored.values() if not e["consent"]) == unconsented > 0
    assert sum(1 for e in stored.values() if e["polarity"] < 0) == 40
    clusters = cli("triage", "--json")["clusters"]
    assert clusters and sum(c["size"] for c in clusters) == 40
    assert all(i.startswith("otlp:") for c in clusters for i in c["event_ids"])
    shown = json.dumps([c["summary"] for c in clusters])
    # Each unconsented question, whole (the world's questions share their core with other users' ones:
    # "Sync broke AGAIN..." is in a consented "Sorry to bother you, Sync broke AGAIN..."), unless a
    # consenting user asked it in the same words (then it is that user's text).
    said_with_consent = {e["query"] for e in chosen if e["consent"]}
    hidden = [e["query"] for e in chosen if not e["consent"] and e["signal"] == "thumbs_down"]
    hidden = [q for q in hidden if q not in said_with_consent]
    assert hidden and not any(json.dumps(q)[1:-1] in shown for q in hidden)
    print(
        f"end to end: {len(product.memory.get_finished_spans())} spans, {len(stored)} events stored "
        f"({unconsented} without consent), {len(clusters)} clusters: "
        + ", ".join(f"{c['category']}/{c['route']} x{c['size']}" for c in clusters)
    )


def test_feedback_on_a_span_of_its_own_is_about_the_response_it_names(cli, tmp_path: Path) -> None:
    """The user's thumb arrives later, in another trace, on a span naming the ``gen_ai.response.id``:
    the event is about that response's span (its ids, question and answer), in the same request."""
    from flywheel.feedback.otlp_import import to_json

    product = Product()
    product.answer("Do you ship to Norway?", "Yes, in 5 days.", response_id="chatcmpl-77")
    with product.tracer.start_as_current_span("feedback") as s:
        s.add_event(
            EVAL,
            {
                "gen_ai.evaluation.name": "user_feedback",
                "gen_ai.evaluation.score.label": "wrong",
                "gen_ai.response.id": "chatcmpl-77",
            },
        )
    (chat,) = [s for s in product.memory.get_finished_spans() if s.name.startswith("chat")]
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(to_json(product.request())))
    report = cli("import", "otlp", str(path), "--json")
    assert (report["traces"], report["accepted"]) == (2, 1)
    (event,) = _stored().values()
    assert event["event_id"] == f"otlp:{chat.context.trace_id:032x}/{chat.context.span_id:016x}/user_feedback"
    assert (event["query"], event["output"], event["signal"], event["reason"], event["consent"]) == (
        "Do you ship to Norway?",
        "Yes, in 5 days.",
        "thumbs_down",
        "wrong",
        True,
    )


def test_a_span_id_that_reads_as_a_card_number_gets_a_stable_hashed_event_id() -> None:
    """About one random span id in 9,000 is 16 decimal digits passing Luhn; the ingest refuses ids
    holding personal data, so the receiver names such an evaluation by a hash, the same every time."""
    from flywheel.feedback.otlp_spans import span_event_id
    from flywheel.identifiers import identifier_problem

    trace = "0af7651916cd43dd8448eb211c80319c"
    card = "4111111111111111"  # Luhn-valid
    plain = f"otlp:{trace}/{card}/user_feedback"
    assert (identifier_problem(plain) or "").endswith("looks like a card number")
    stored = span_event_id(trace, f"{card}/user_feedback")
    assert stored.startswith("otlp:h") and identifier_problem(stored) is None
    assert stored == span_event_id(trace, f"{card}/user_feedback")  # idempotent: a re-sent span stores nothing
    assert span_event_id(trace, "b7ad6b7169203331/user_feedback") == f"otlp:{trace}/b7ad6b7169203331/user_feedback"
