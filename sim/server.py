"""The OpenAI-compatible simulator, served over real HTTP on 127.0.0.1.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (``response_format`` json_object
and json_schema included), ``POST /v1/embeddings`` (the shared local model), ``POST /v1/files``,
``GET /v1/files/{id}``, ``POST|GET /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs/{id}``,
``POST /v1/fine_tuning/jobs/{id}/cancel`` (see :mod:`sim.finetune`; a succeeded job's
model answers chat completions), and ``GET /sim/stats`` (request counts by role, for tests and
benchmarks). Knobs for tests: a fixed ``latency`` per request and injected failures (``fail_status``
for every request, only the first ``fail_first`` requests, or every request after the
``fail_from``-th: an outage in the middle of a cycle), in the shapes real endpoints fail in
(``fail_as``: an error status, a 200 HTML page, a 200 body that is not JSON, or a 200 chat
completion without choices).

Knobs for how the model behaves (all seeded by ``seed``, so a run is reproducible):
``reword`` makes the product phrase every answer differently (openers, closers, phrase swaps) with
the same golden verdicts, so a fresh answer practically never equals a logged one, as with any
sampled model (off by default for now); ``drafting="wild"`` makes the drafting roles (the diagnosis
included), the judge and the classifier answer in real models' shapes (fenced, prose, truncated,
refusal, lossy; see :mod:`sim.variation`); ``reject_json_schema`` answers 400 to any
``response_format`` of type ``json_schema``, as some vLLM and Ollama versions do, while
``json_object`` and no format work. Two knobs play broken setups (for the cycle's setup notes and
the evaluation cache's tests): ``empty_answers`` makes the product answer every question with an
empty string (a misconfigured endpoint or model), and ``resolve_everything`` makes the screening
judge call every complaint resolved (a judge that does not discriminate). ``hang_roles`` never
answers the chat requests of those roles (the connection stays open, nothing comes back): an
endpoint that hangs in the middle of a cycle (see also :mod:`sim.hung`, which never answers
anything).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flywheel.sim import roles, variation
from flywheel.sim.finetune import FineTuneOptions, FineTuneStore, SimError
from flywheel.sim.variation import DRAFTING_MODES, Style

SIM_MODELS = ("gpt-4o-mini", "gpt-4o", "sim-product", "sim-judge")


@dataclass
class SimOptions:
    latency: float = 0.0
    fail_status: int | None = None
    fail_first: int = 0
    fail_from: int = 0  # > 0: every request after this many fails (an outage mid-cycle)
    fail_as: str = "status"  # how a failed request looks: status | html | not_json | no_choices
    embedder: Any = None  # an Embedder; loaded lazily on the first /v1/embeddings request
    finetune: FineTuneOptions = field(default_factory=FineTuneOptions)
    data_dir: Path | None = None  # keep uploaded files and fine-tuning jobs here (default: in memory)
    reword: bool = True  # the product rewords every answer (same verdicts), as a sampled model does
    seed: int = 0  # seeds rewording and wild drafting shapes
    drafting: str = "clean"  # clean | wild: drafting answers in real models' shapes
    reject_json_schema: bool = False  # 400 on response_format json_schema, like some vLLM/Ollama versions
    record: bool = False  # keep every chat request's body (SimState.requests), for tests of what was sent
    empty_answers: bool = False  # the product answers "" to everything (a broken endpoint or model)
    resolve_everything: bool = False  # the screening judge says "resolved" to every complaint
    hang_roles: tuple[str, ...] = ()  # chat requests of these roles (e.g. "product") are never answered

    def __post_init__(self) -> None:
        if self.drafting not in DRAFTING_MODES:
            raise ValueError(f"drafting must be one of {', '.join(DRAFTING_MODES)}, not {self.drafting!r}")


@dataclass
class SimState:
    options: SimOptions
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: int = 0
    seen: Counter[str] = field(default_factory=Counter)  # identical drafting requests, for retries
    requests: list[dict[str, Any]] = field(default_factory=list)  # chat bodies, when options.record
    tuning: FineTuneStore = field(init=False)

    def __post_init__(self) -> None:
        self.tuning = FineTuneStore(self.options.finetune, self.options.data_dir)

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] += 1
            self.served += 1
            return self.served

    def style(self, role: str, body: dict[str, Any]) -> Style:
        """The options as roles see them; a drafting request also learns how often it was seen, so
        a retry of the identical request may come out in another shape, as sampling would."""
        opts = self.options
        occurrence = 0
        if opts.drafting == "wild" and role in roles.STYLED_ROLES:
            key = json.dumps(body.get("messages"), sort_keys=True)
            with self.lock:
                occurrence = self.seen[key]
                self.seen[key] += 1
        return Style(seed=opts.seed, reword=opts.reword, drafting=opts.drafting, occurrence=occurrence)


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _json_schema_rejected() -> JSONResponse:
    """What vLLM/Ollama versions without structured output answer to ``json_schema``."""
    return JSONResponse(
        {
            "error": {
                "message": "response_format json_schema is not supported by this model",
                "type": "invalid_request_error",
                "param": "response_format",
            }
        },
        status_code=400,
    )


FAIL_SHAPES = ("status", "html", "not_json", "no_choices")


def _failure(state: SimState, n: int) -> Response | None:
    """The injected failure for the n-th request, if any (counted as ``failed_<status or shape>``)."""
    opts = state.options
    failing = opts.fail_status is not None or n <= opts.fail_first or 0 < opts.fail_from < n
    if not failing:
        return None
    if opts.fail_as == "html":
        state.count("failed_html")
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=200, media_type="text/html")
    if opts.fail_as == "not_json":
        state.count("failed_not_json")
        return Response(b"\xff\xfe upstream garbage", status_code=200, media_type="application/json")
    if opts.fail_as == "no_choices":
        state.count("failed_no_choices")
        return JSONResponse({"id": "chatcmpl-sim-broken", "object": "chat.completion", "choices": []})
    status = opts.fail_status or 503
    state.count(f"failed_{status}")
    return _error(status, "simulated failure", "server_error")


def _broken(opts: SimOptions, role: str) -> str | None:
    """What a role says instead of its answer when a broken-setup knob is on, else None."""
    if role == "product" and opts.empty_answers:
        return ""
    if role == "resolution" and opts.resolve_everything:
        return json.dumps({"resolved": True, "rationale": "looks resolved to me"})
    return None


class _Endpoints:
    """The simulator's HTTP handlers over one state, one method each: OpenAI's routes, the roles behind them."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self._embed_lock = threading.Lock()

    def embedder(self) -> Any:
        with self._embed_lock:
            if self.state.options.embedder is None:
                from flywheel.config import EmbeddingSettings
                from flywheel.embeddings import LocalEmbedder

                self.state.options.embedder = LocalEmbedder(EmbeddingSettings())
            return self.state.options.embedder

    async def body_of(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            return _error(400, f"request body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        n = self.state.count("requests")
        if self.state.options.latency:
            await asyncio.sleep(self.state.options.latency)
        failure = _failure(self.state, n)
        return body if failure is None else failure

    async def models(self, request: Request) -> JSONResponse:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "flywheel-sim"} for m in SIM_MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def stats(self, request: Request) -> JSONResponse:
        with self.state.lock:
            return JSONResponse(dict(self.state.counts))

    async def chat(self, request: Request) -> Response:
        body = await self.body_of(request)
        if isinstance(body, Response):
            return body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty list")
        if not body.get("model"):
            return _error(400, "'model' is required")
        learned = None
        if str(body["model"]).startswith("ft:"):
            learned = self.state.tuning.learned(str(body["model"]))
            if learned is None:
                return _error(404, f"The model `{body['model']}` does not exist or you do not have access to it.")
        if self.state.options.reject_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            self.state.count("rejected_json_schema")
            return _json_schema_rejected()
        role = roles.route(body)
        if role in self.state.options.hang_roles:  # accepted, then silence: a hung endpoint mid-cycle
            self.state.count(f"hung.{role}")
            await asyncio.sleep(86400)
        if self.state.options.record:
            with self.state.lock:
                self.state.requests.append(body)
        content = _broken(self.state.options, role)
        if content is None:
            content = roles.answer(role, body, learned, self.state.style(role, body))
        self.state.count(f"chat.{role}")
        prompt_tokens = sum(_tokens(roles._text(m.get("content"))) for m in messages)
        completion_tokens = _tokens(content)
        return JSONResponse(
            {
                "id": f"chatcmpl-sim-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "system_fingerprint": "flywheel-sim",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "length" if variation.cut_off(content) else "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def embeddings(self, request: Request) -> Response:
        body = await self.body_of(request)
        if isinstance(body, Response):
            return body
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return _error(400, "'input' must be a string or a list of strings")
        vectors = await asyncio.to_thread(lambda: self.embedder().embed(texts))
        self.state.count("embeddings")
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        total = sum(_tokens(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "all-MiniLM-L6-v2"),
                "usage": {"prompt_tokens": total, "total_tokens": total},
            }
        )

    def tuning_call(self, fn: Any) -> Any:
        """Count the request, apply the failure knobs, map SimError to OpenAI's error shape."""

        async def endpoint(request: Request) -> Response:
            failure = _failure(self.state, self.state.count("requests"))
            if failure is not None:
                return failure
            try:
                return JSONResponse(await fn(request))
            except SimError as exc:
                return _error(exc.status, exc.message)

        return endpoint

    async def upload_file(self, request: Request) -> dict[str, Any]:
        form = await request.form()
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise SimError(400, "'file' is required (multipart form field)")
        content = await upload.read()
        self.state.count("files")
        return self.state.tuning.upload(upload.filename or "upload.jsonl", str(purpose or ""), content)

    async def get_file(self, request: Request) -> dict[str, Any]:
        return self.state.tuning.file(request.path_params["file_id"])

    async def create_job(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            raise SimError(400, f"request body is not JSON: {exc}") from None
        self.state.count("fine_tuning.create")
        return self.state.tuning.create_job(body if isinstance(body, dict) else {})

    async def list_jobs(self, request: Request) -> dict[str, Any]:
        data = self.state.tuning.list_jobs()
        return {"object": "list", "data": data, "has_more": False}

    async def get_job(self, request: Request) -> dict[str, Any]:
        self.state.count("fine_tuning.retrieve")
        job = self.state.tuning.job(request.path_params["job_id"])
        if self.state.options.finetune.malformed_status:
            return {"id": job["id"], "object": "fine_tuning.job", "status": {"phase": 3}}
        return job

    async def cancel_job(self, request: Request) -> dict[str, Any]:
        return self.state.tuning.cancel(request.path_params["job_id"])

    async def jobs(self, request: Request) -> JSONResponse:
        return await self.tuning_call(self.create_job if request.method == "POST" else self.list_jobs)(request)

    async def not_found(self, request: Request, exc: Exception) -> JSONResponse:
        return _error(404, f"no such endpoint: {request.method} {request.url.path}")

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/sim/stats", self.stats, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/files", self.tuning_call(self.upload_file), methods=["POST"]),
            Route("/v1/files/{file_id}", self.tuning_call(self.get_file), methods=["GET"]),
            Route("/v1/fine_tuning/jobs", self.jobs, methods=["GET", "POST"]),
            Route("/v1/fine_tuning/jobs/{job_id}", self.tuning_call(self.get_job), methods=["GET"]),
            Route("/v1/fine_tuning/jobs/{job_id}/cancel", self.tuning_call(self.cancel_job), methods=["POST"]),
        ]


def build_app(state: SimState) -> Starlette:
    """The ASGI app: OpenAI's routes, the simulator's roles behind them."""
    endpoints = _Endpoints(state)
    return Starlette(routes=endpoints.routes(), exception_handlers={404: endpoints.not_found, 405: endpoints.not_found})


class Simulator:
    """The simulator on a background thread: ``with Simulator() as sim: sim.base_url``.

    uvicorn (uvloop, httptools) serves it: a 32-way concurrent evaluation costs the simulator a
    fraction of a millisecond per request, so benchmarks measure Flywheel, not the simulator.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, options: SimOptions | None = None) -> None:
        self.state = SimState(options or SimOptions())
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(1024)
        config = uvicorn.Config(
            build_app(self.state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="uvloop",
            http="httptools",
            backlog=1024,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )  # hung requests (hang_roles) do not hold stop()
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    @property
    def options(self) -> SimOptions:
        return self.state.options

    def counts(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.counts)

    def _run(self) -> None:
        import uvloop

        uvloop.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._run, name="flywheel-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (Ctrl-C)."""
        self._run()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
