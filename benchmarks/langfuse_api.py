"""A small local Langfuse for the import benchmarks: the public API's documented read calls, served
from ``traces.jsonl`` and ``scores.jsonl`` (:func:`benchmarks.import_data.write_langfuse`) by their
offsets in the files, so 100,000 traces cost an index, not their text in memory.

- ``GET /api/public/scores``: newest first, ``page``/``limit`` (at most 100), ``fromTimestamp``;
  ``{"data": [...], "meta": {"page", "limit", "totalItems", "totalPages"}}``.
- ``GET /api/public/traces/{id}``: the trace, 404 when there is none.
Both want HTTP Basic auth with the project's keys (:data:`benchmarks.import_data.LANGFUSE_PUBLIC`).

``python -m benchmarks.langfuse_api FOLDER`` prints its URL on the first line, then serves until stopped.
"""

from __future__ import annotations

import base64
import bisect
import json
import sys
from datetime import datetime
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchmarks.import_data import LANGFUSE_PUBLIC, LANGFUSE_SECRET
from flywheel.app.serve.runner import base_url, bind

_AUTH = "Basic " + base64.b64encode(f"{LANGFUSE_PUBLIC}:{LANGFUSE_SECRET}".encode()).decode()


def _ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


class Project:
    """One project's traces and scores, read from disk by offset."""

    def __init__(self, folder: Path) -> None:
        self.traces_file = (folder / "traces.jsonl").open("rb")
        self.scores_file = (folder / "scores.jsonl").open("rb")
        self.trace_at: dict[str, int] = {}
        offset = 0
        for line in self.traces_file:
            tid = json.loads(line)["id"]
            self.trace_at[tid] = offset
            offset += len(line)
        scores: list[tuple[float, int]] = []
        offset = 0
        for line in self.scores_file:
            scores.append((-_ms(json.loads(line)["timestamp"]), offset))
            offset += len(line)
        scores.sort()  # newest first, as Langfuse lists them
        self.keys = [k for k, _ in scores]
        self.offsets = [o for _, o in scores]

    def _line(self, fh, offset: int) -> dict:
        fh.seek(offset)
        return json.loads(fh.readline())

    async def list_scores(self, request: Request) -> Response:
        if request.headers.get("authorization") != _AUTH:
            return JSONResponse({"message": "Invalid credentials"}, status_code=401)
        page = int(request.query_params.get("page", 1))
        limit = min(100, int(request.query_params.get("limit", 50)))
        since = request.query_params.get("fromTimestamp")
        total = len(self.keys) if since is None else bisect.bisect_right(self.keys, -_ms(since))
        chosen = self.offsets[(page - 1) * limit : min(total, page * limit)]
        return JSONResponse(
            {
                "data": [self._line(self.scores_file, o) for o in chosen],
                "meta": {"page": page, "limit": limit, "totalItems": total, "totalPages": -(-total // limit)},
            }
        )

    async def get_trace(self, request: Request) -> Response:
        if request.headers.get("authorization") != _AUTH:
            return JSONResponse({"message": "Invalid credentials"}, status_code=401)
        offset = self.trace_at.get(request.path_params["trace_id"])
        if offset is None:
            return JSONResponse({"message": "Trace not found"}, status_code=404)
        return JSONResponse(self._line(self.traces_file, offset))


def main(argv: list[str] | None = None) -> None:
    folder = Path((argv or sys.argv[1:])[0])
    project = Project(folder)
    app = Starlette(
        routes=[
            Route("/api/public/scores", project.list_scores),
            Route("/api/public/traces/{trace_id}", project.get_trace),
        ]
    )
    sock = bind("127.0.0.1", 0)
    print(base_url(sock), flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
