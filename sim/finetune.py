"""The simulator's files and fine-tuning jobs (OpenAI's ``/v1/files`` and ``/v1/fine_tuning/jobs``).

A job goes ``validating_files`` -> ``running`` -> ``succeeded`` (or ``failed``) on the clock:
``validate_seconds`` then ``train_seconds`` after creation, advanced whenever it is read. The
training file is validated as OpenAI does (JSONL, each line ``{"messages": [...]}`` with a user
and an assistant message, at least 10 examples); a bad file fails the job with the line number.
A succeeded job serves a fine-tuned model, ``ft:<base>:flywheel-sim:<suffix>:<id>``, which has
learned its training examples (:class:`sim.rules.Learned`).

With a ``data_dir`` the files and jobs are kept on disk, so a restarted simulator still knows its
jobs and serves its fine-tuned models; without one they live in memory.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.sim.rules import Learned

MIN_EXAMPLES = 10
TERMINAL = ("succeeded", "failed", "cancelled")


class SimError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass
class FineTuneOptions:
    validate_seconds: float = 0.2
    train_seconds: float = 1.0
    fail_jobs: str | None = None  # a message: every job fails in training with it (tests)
    malformed_status: bool = False  # a job's status is answered without a usable status or model


def parse_training_file(content: bytes) -> list[tuple[str, str]]:
    """``(last user message, assistant answer)`` per line; SimError naming the first bad line."""
    pairs: list[tuple[str, str]] = []
    for n, raw in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SimError(400, f"line {n}: not JSON ({exc.msg})", "training_file") from None
        messages = doc.get("messages") if isinstance(doc, dict) else None
        if not isinstance(messages, list) or not messages:
            raise SimError(400, f"line {n}: expected an object with a non-empty 'messages' list", "training_file")
        user = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        answer = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        if not user or not answer or not all(isinstance(t, str) for t in (*user, *answer)):
            raise SimError(
                400, f"line {n}: needs a user message and an assistant message with text content", "training_file"
            )
        pairs.append((str(user[-1]), str(answer[-1])))  # both checked to be text above
    if len(pairs) < MIN_EXAMPLES:
        raise SimError(
            400, f"the training file has {len(pairs)} examples; at least {MIN_EXAMPLES} are required", "training_file"
        )
    return pairs


@dataclass
class FineTuneStore:
    options: FineTuneOptions = field(default_factory=FineTuneOptions)
    data_dir: Path | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, Learned] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._load()

    # persistence ----------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.data_dir is not None
        for meta in sorted(self.data_dir.glob("file-*.json")):
            self.files[meta.stem] = json.loads(meta.read_text())
        for path in sorted(self.data_dir.glob("ftjob-*.json")):
            job = json.loads(path.read_text())
            self.jobs[job["id"]] = job
            if job["status"] == "succeeded":
                self._learn(job)

    def _save(self, doc: dict[str, Any]) -> None:
        if self.data_dir is not None:
            path = self.data_dir / f"{doc['id']}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(path)

    def _content(self, file_id: str) -> bytes:
        if self.data_dir is not None:
            return (self.data_dir / f"{file_id}.jsonl").read_bytes()
        return self.files[file_id]["_content"]  # type: ignore[no-any-return]

    # files ----------------------------------------------------------------------------------
    def upload(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        if purpose not in ("fine-tune", "batch", "assistants", "user_data", "evals"):
            raise SimError(400, f"unknown purpose {purpose!r}", "purpose")
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        doc = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        with self.lock:
            if self.data_dir is not None:
                (self.data_dir / f"{file_id}.jsonl").write_bytes(content)
                self._save(doc)
                self.files[file_id] = doc
            else:
                self.files[file_id] = {**doc, "_content": content}
        return doc

    def file(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.files:
            raise SimError(404, f"no such file: {file_id}", "file_id")
        return {k: v for k, v in self.files[file_id].items() if not k.startswith("_")}

    # jobs -----------------------------------------------------------------------------------
    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        model, training_file = body.get("model"), body.get("training_file")
        if not isinstance(model, str) or not model:
            raise SimError(400, "'model' is required", "model")
        if not isinstance(training_file, str) or training_file not in self.files:
            raise SimError(400, f"training_file {training_file!r} does not exist", "training_file")
        if self.files[training_file]["purpose"] != "fine-tune":
            raise SimError(400, f"file {training_file} was not uploaded with purpose 'fine-tune'", "training_file")
        suffix = str(body.get("suffix") or "")[:40]
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        now = time.time()
        job: dict[str, Any] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": model,
            "created_at": int(now),
            "_created": now,
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-flywheel-sim",
            "result_files": [],
            "status": "validating_files",
            "validation_file": body.get("validation_file"),
            "training_file": training_file,
            "hyperparameters": (body.get("hyperparameters") or {"n_epochs": "auto"}),
            "trained_tokens": None,
            "error": None,
            "seed": body.get("seed") or 0,
            "suffix": suffix or None,
            "estimated_finish": None,
            "integrations": [],
            "metadata": body.get("metadata"),
            "method": body.get("method") or {"type": "supervised"},
        }
        with self.lock:
            self.jobs[job_id] = job
            self._save(job)
        return self.public(job)

    def _current(self, job_id: str) -> dict[str, Any]:
        """The job, moved along its clock (called with the lock held); 404 when unknown."""
        job = self.jobs.get(job_id)
        if job is None:
            raise SimError(404, f"no such fine-tuning job: {job_id}", "fine_tuning_job_id")
        self._advance(job)
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self.public(self._current(job_id))

    def list_jobs(self) -> list[dict[str, Any]]:
        with self.lock:
            for job in self.jobs.values():
                self._advance(job)
            return [self.public(j) for j in sorted(self.jobs.values(), key=lambda j: -j["_created"])]

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self._current(job_id)
            if job["status"] not in TERMINAL:
                job["status"], job["finished_at"] = "cancelled", int(time.time())
                self._save(job)
            return self.public(job)

    @staticmethod
    def public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _advance(self, job: dict[str, Any]) -> None:
        """Move a job along its clock (called with the lock held)."""
        if job["status"] in TERMINAL:
            return
        elapsed = time.time() - job["_created"]
        opts = self.options
        if elapsed < opts.validate_seconds:
            return
        if job["status"] == "validating_files":
            try:
                pairs = parse_training_file(self._content(job["training_file"]))
            except SimError as exc:
                self._fail(job, "invalid_training_file", f"The training file is invalid: {exc.message}")
                return
            job["status"], job["trained_tokens"] = "running", sum(len((q + a).split()) for q, a in pairs)
            job["estimated_finish"] = int(job["_created"] + opts.validate_seconds + opts.train_seconds)
        if job["status"] == "running" and elapsed >= opts.validate_seconds + opts.train_seconds:
            if opts.fail_jobs:
                self._fail(job, "training_failed", opts.fail_jobs)
                return
            short = job["id"].removeprefix("ftjob-")[:8]
            job["fine_tuned_model"] = f"ft:{job['model']}:flywheel-sim:{job['suffix'] or 'custom'}:{short}"
            job["status"], job["finished_at"] = "succeeded", int(time.time())
            self._learn(job)
        self._save(job)

    def _fail(self, job: dict[str, Any], code: str, message: str) -> None:
        job["status"], job["finished_at"] = "failed", int(time.time())
        job["error"] = {"code": code, "message": message, "param": "training_file"}
        self._save(job)

    def _learn(self, job: dict[str, Any]) -> None:
        self.models[job["fine_tuned_model"]] = Learned.from_examples(
            parse_training_file(self._content(job["training_file"]))
        )

    def learned(self, model: str) -> Learned | None:
        with self.lock:
            if model not in self.models:
                for job in self.jobs.values():  # a job nobody polled since it finished
                    self._advance(job)
            return self.models.get(model)
