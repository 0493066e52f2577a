"""Flywheel's own state beside the feedback: cycles, candidates, drafts, evaluation cache,
promotions and the history of what was tried on each cluster.

This is what makes a crashed cycle resumable without duplicated work: every step writes its
result here under a deterministic key before the next step starts.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flywheel.candidates import Candidate
from flywheel.proposals import GoldenProposal, ProposalStatus
from flywheel.sqlite_util import open_migrated

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE cycles (
        cycle_id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL,
        golden_version TEXT, champion_score REAL, summary TEXT
    );
    CREATE TABLE candidates (
        candidate_id TEXT PRIMARY KEY, cycle_id TEXT NOT NULL, kind TEXT NOT NULL, doc TEXT NOT NULL,
        decision TEXT, created_at REAL NOT NULL
    );
    CREATE INDEX candidates_cycle ON candidates (cycle_id);
    CREATE TABLE drafts (
        cycle_id TEXT NOT NULL, cluster_id TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (cycle_id, cluster_id)
    );
    CREATE TABLE eval_cache (key TEXT PRIMARY KEY, created_at REAL NOT NULL, doc TEXT NOT NULL);
    CREATE TABLE promotions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, action TEXT NOT NULL,
        from_version TEXT, to_version TEXT NOT NULL, candidate_id TEXT, at REAL NOT NULL, by TEXT, note TEXT
    );
    CREATE TABLE cluster_attempts (
        cluster_id TEXT NOT NULL, cycle_id TEXT NOT NULL, kind TEXT NOT NULL, candidate_id TEXT NOT NULL,
        outcome TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (cluster_id, candidate_id)
    );
    """,
    # 2: knowledge index versions. Chroma holds one record per distinct chunk content; which records
    # make up a version is kept here, so versions can branch, be rolled back and be rebuilt.
    """
    CREATE TABLE kb_versions (
        version INTEGER PRIMARY KEY, created_at REAL NOT NULL, parent INTEGER, source TEXT,
        documents INTEGER NOT NULL, chunks INTEGER NOT NULL, status TEXT NOT NULL, note TEXT, provenance TEXT
    );
    CREATE TABLE kb_records (
        record_id TEXT PRIMARY KEY, chunk_id TEXT NOT NULL, doc_id TEXT NOT NULL, text TEXT NOT NULL,
        source TEXT, updated_at TEXT
    );
    CREATE TABLE kb_members (
        version INTEGER NOT NULL, record_id TEXT NOT NULL, PRIMARY KEY (version, record_id)
    ) WITHOUT ROWID;
    CREATE TABLE pointers (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: fine-tune jobs. A job is recorded before it is polled, so a restarted flow resumes the poll
    # of the same job instead of submitting another; one job per dataset version and base model.
    """
    CREATE TABLE finetune_jobs (
        job_id TEXT PRIMARY KEY, dataset_version TEXT NOT NULL, base_model TEXT NOT NULL, cycle_id TEXT,
        cluster_ids TEXT NOT NULL, status TEXT NOT NULL, fine_tuned_model TEXT, model_version TEXT,
        error TEXT, doc TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX finetune_jobs_dataset ON finetune_jobs (dataset_version, base_model);
    """,
    # 4: golden-set proposals, by content id: a proposal made twice is found, not duplicated, and a
    # rejected one stays rejected.
    """
    CREATE TABLE golden_proposals (
        proposal_id TEXT PRIMARY KEY, status TEXT NOT NULL, category TEXT NOT NULL, doc TEXT NOT NULL,
        created_at REAL NOT NULL, decided_at REAL
    );
    CREATE INDEX golden_proposals_status ON golden_proposals (status, created_at);
    """,
)


def _now() -> float:
    return time.time()


def as_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_migrated(path, MIGRATIONS, "state store")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # cycles ---------------------------------------------------------------------------------
    def unfinished_cycle(self) -> str | None:
        row = self._db.execute(
            "SELECT cycle_id FROM cycles WHERE status IN ('running', 'interrupted') ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def start_cycle(self, cycle_id: str) -> None:
        """Open a cycle, or mark an interrupted one running again as it resumes."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO cycles (cycle_id, started_at, status) VALUES (?, ?, 'running')", (cycle_id, _now())
            )
            self._db.execute("UPDATE cycles SET status = 'running', finished_at = NULL WHERE cycle_id = ?", (cycle_id,))

    def finish_cycle(self, cycle_id: str, status: str, golden_version: str | None, champion_score: float | None,
                     summary: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "UPDATE cycles SET finished_at = ?, status = ?, golden_version = ?, champion_score = ?, summary = ? "
                "WHERE cycle_id = ?",
                (_now(), status, golden_version, champion_score, json.dumps(summary, default=str), cycle_id),
            )

    def last_cycle_started(self) -> float | None:
        row = self._db.execute("SELECT MAX(started_at) FROM cycles WHERE status = 'done'").fetchone()
        return row[0]

    def last_finished_cycle(self) -> str | None:
        """The id of the last cycle that finished (status ``done``), or None."""
        row = self._db.execute(
            "SELECT cycle_id FROM cycles WHERE status = 'done' ORDER BY finished_at DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def last_cycle_clusters(self) -> list[dict[str, Any]]:
        """The clusters the last finished cycle triaged (without their event ids)."""
        row = self._db.execute(
            "SELECT summary FROM cycles WHERE status = 'done' ORDER BY finished_at DESC LIMIT 1").fetchone()
        return (json.loads(row[0]).get("clusters") or []) if row and row[0] else []

    def cycles(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT cycle_id, started_at, finished_at, status, golden_version, champion_score FROM cycles "
            "ORDER BY started_at DESC LIMIT ?", (limit,)
        ).fetchall()
        keys = ("cycle_id", "started_at", "finished_at", "status", "golden_version", "champion_score")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # drafts (improver output, cached per cycle and cluster) ------------------------------------
    def drafts(self, cycle_id: str, cluster_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT doc FROM drafts WHERE cycle_id = ? AND cluster_id = ?", (cycle_id, cluster_id)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def cycle_drafts(self, cycle_id: str) -> list[dict[str, Any]]:
        """Every improver record of a cycle: drafts per cluster, merges, index proposals."""
        rows = self._db.execute("SELECT doc FROM drafts WHERE cycle_id = ? ORDER BY cluster_id", (cycle_id,))
        return [json.loads(r[0]) for r in rows]

    def save_drafts(self, cycle_id: str, cluster_id: str, doc: dict[str, Any]) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO drafts VALUES (?, ?, ?)", (cycle_id, cluster_id, json.dumps(doc)))

    # evaluation cache ----------------------------------------------------------------------------
    def cached_eval(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT doc FROM eval_cache WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def cache_eval(self, key: str, doc: dict[str, Any]) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO eval_cache VALUES (?, ?, ?)", (key, _now(), json.dumps(doc)))

    # candidates --------------------------------------------------------------------------------
    def add_candidate(self, c: Candidate) -> bool:
        """Insert unless the id exists (ids are deterministic); True when it was new."""
        with self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO candidates (candidate_id, cycle_id, kind, doc, decision, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (c.candidate_id, c.cycle_id, c.kind, c.model_dump_json(), c.decision, _now()),
            )
            return cur.rowcount == 1

    def save_candidate(self, c: Candidate) -> None:
        with self._db:
            self._db.execute(
                "UPDATE candidates SET doc = ?, decision = ? WHERE candidate_id = ?",
                (c.model_dump_json(), c.decision, c.candidate_id),
            )

    def candidate(self, candidate_id: str) -> Candidate | None:
        row = self._db.execute("SELECT doc FROM candidates WHERE candidate_id = ?", (candidate_id,)).fetchone()
        return Candidate.model_validate_json(row[0]) if row else None

    def candidates(self, *, cycle_id: str | None = None, decision: str | None = None,
                   kind: str | None = None) -> list[Candidate]:
        where, args = [], []
        for col, val in (("cycle_id", cycle_id), ("decision", decision), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT doc FROM candidates" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at, candidate_id"
        return [Candidate.model_validate_json(r[0]) for r in self._db.execute(sql, args)]

    # promotions ----------------------------------------------------------------------------------
    def record_promotion(self, kind: str, action: str, from_version: str | None, to_version: str,
                         candidate_id: str | None, by: str | None, note: str | None) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO promotions (kind, action, from_version, to_version, candidate_id, at, by, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, action, from_version, to_version, candidate_id, _now(), by, note),
            )

    def promotions(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, kind, action, from_version, to_version, candidate_id, at, by, note FROM promotions"
        rows = self._db.execute(sql + (" WHERE kind = ?" if kind else "") + " ORDER BY id", (kind,) if kind else ())
        keys = ("id", "kind", "action", "from_version", "to_version", "candidate_id", "at", "by", "note")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # what was tried on each cluster (fine-tuning is only for clusters prompts could not fix) --------
    def record_attempt(self, cluster_id: str, cycle_id: str, kind: str, candidate_id: str, outcome: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO cluster_attempts VALUES (?, ?, ?, ?, ?, ?)",
                (cluster_id, cycle_id, kind, candidate_id, outcome, _now()),
            )

    def prompt_failed_clusters(self) -> set[str]:
        """Clusters prompt revisions could not fix: a prompt candidate for them was rejected, or no
        drafted revision did better than the champion on their own failing examples
        (``no_improvement``), and no prompt for them was ever promoted."""
        rows = self._db.execute(
            "SELECT cluster_id FROM cluster_attempts WHERE kind = 'prompt' GROUP BY cluster_id "
            "HAVING SUM(outcome IN ('rejected', 'no_improvement')) > 0 AND SUM(outcome = 'promoted') = 0"
        )
        return {r[0] for r in rows}

    def cluster_history(self, cluster_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT cycle_id, kind, candidate_id, outcome, at FROM cluster_attempts WHERE cluster_id = ? ORDER BY at",
            (cluster_id,))
        return [dict(zip(("cycle_id", "kind", "candidate_id", "outcome", "at"), r, strict=True)) for r in rows]

    def promoted_at(self, cluster_id: str, kind: str) -> float | None:
        """When a fix of ``kind`` for the cluster was last promoted (None: never)."""
        row = self._db.execute(
            "SELECT MAX(at) FROM cluster_attempts WHERE cluster_id = ? AND kind = ? AND outcome = 'promoted'",
            (cluster_id, kind)).fetchone()
        return row[0]


    # fine-tune jobs ------------------------------------------------------------------------------
    def finetune_job(self, *, job_id: str | None = None, dataset_version: str | None = None,
                     base_model: str | None = None) -> dict[str, Any] | None:
        if job_id is not None:
            row = self._db.execute("SELECT doc FROM finetune_jobs WHERE job_id = ?", (job_id,)).fetchone()
        else:
            row = self._db.execute("SELECT doc FROM finetune_jobs WHERE dataset_version = ? AND base_model = ?",
                                   (dataset_version, base_model)).fetchone()
        return json.loads(row[0]) if row else None

    def finetune_jobs(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT doc FROM finetune_jobs"
        if open_only:
            sql += " WHERE status NOT IN ('succeeded', 'failed', 'cancelled') OR (status = 'succeeded' AND model_version IS NULL)"
        return [json.loads(r[0]) for r in self._db.execute(sql + " ORDER BY created_at")]

    def save_finetune_job(self, job: dict[str, Any]) -> None:
        """Insert or update a job record (``job_id``, ``dataset_version``, ``base_model``, ``status``...)."""
        now = _now()
        job.setdefault("created_at", now)
        job["updated_at"] = now
        with self._db:
            self._db.execute(
                "INSERT INTO finetune_jobs (job_id, dataset_version, base_model, cycle_id, cluster_ids, status, "
                "fine_tuned_model, model_version, error, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, fine_tuned_model = excluded.fine_tuned_model, "
                "model_version = excluded.model_version, error = excluded.error, doc = excluded.doc, "
                "updated_at = excluded.updated_at",
                (job["job_id"], job["dataset_version"], job["base_model"], job.get("cycle_id"),
                 ",".join(job.get("cluster_ids") or []), job["status"], job.get("fine_tuned_model"),
                 job.get("model_version"), job.get("error"), json.dumps(job, default=str), job["created_at"], now),
            )

    # golden-set proposals ------------------------------------------------------------------------
    def add_proposals(self, proposals: list[GoldenProposal]) -> list[GoldenProposal]:
        """Store proposals whose id is new; return those (a known id keeps its first record)."""
        now = _now()
        added = []
        with self._db:
            for p in proposals:
                p = p.model_copy(update={"created_at": as_datetime(now)})
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO golden_proposals (proposal_id, status, category, doc, created_at) "
                    "VALUES (?, ?, ?, ?, ?)", (p.proposal_id, p.status, p.category, p.model_dump_json(), now))
                if cur.rowcount == 1:
                    added.append(p)
        return added

    def proposal(self, proposal_id: str) -> GoldenProposal | None:
        row = self._db.execute("SELECT doc FROM golden_proposals WHERE proposal_id = ?", (proposal_id,)).fetchone()
        return GoldenProposal.model_validate_json(row[0]) if row else None

    def proposals(self, status: ProposalStatus | None = None) -> list[GoldenProposal]:
        sql = "SELECT doc FROM golden_proposals" + (" WHERE status = ?" if status else "")
        rows = self._db.execute(sql + " ORDER BY created_at, proposal_id", (status,) if status else ())
        return [GoldenProposal.model_validate_json(r[0]) for r in rows]

    def save_proposal(self, p: GoldenProposal) -> None:
        """Record a decision (status, who, when, why, the golden version it made)."""
        decided = p.decided_at.timestamp() if p.decided_at else None
        with self._db:
            self._db.execute("UPDATE golden_proposals SET status = ?, doc = ?, decided_at = ? WHERE proposal_id = ?",
                             (p.status, p.model_dump_json(), decided, p.proposal_id))

    # pointers (the active index version) ------------------------------------------------------
    def pointer(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM pointers WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_pointer(self, name: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO pointers VALUES (?, ?)", (name, value))

    def clear_pointer(self, name: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM pointers WHERE name = ?", (name,))

    @property
    def db(self) -> Any:
        """The connection, for the knowledge index's own tables (same file, same transactions)."""
        return self._db


def open_state(home: Path) -> StateStore:
    return StateStore(home / "state.sqlite")
