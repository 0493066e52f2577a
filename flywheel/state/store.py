"""Flywheel's own state beside the feedback: cycles, candidates, drafts, evaluation cache,
promotions and the history of what was tried on each cluster.

This is what makes a crashed cycle resumable without duplicated work: every step writes its
result here under a deterministic key before the next step starts. On SQLAlchemy Core by URL, like
the feedback store: a SQLite file under ``$FLYWHEEL_HOME`` by default, Postgres for several hosts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select, text, update

from flywheel.candidates import Candidate
from flywheel.proposals import GoldenProposal, ProposalStatus
from flywheel.state.kb import KnowledgeVersions
from flywheel.state.tables import (
    candidates,
    cluster_attempts,
    cycles,
    drafts,
    eval_cache,
    finetune_jobs,
    golden_proposals,
    pointers,
    promotions,
)
from flywheel.state.triage import TriageClusters
from flywheel.state.upsert import insert_ignore, insert_replace

if TYPE_CHECKING:
    from flywheel.config import Settings

STATE_FILE = "state.sqlite"  # under $FLYWHEEL_HOME, the default store
_FINISHED_JOB = ("succeeded", "failed", "cancelled")


def _now() -> float:
    return time.time()


def as_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


class StateStore(KnowledgeVersions, TriageClusters):
    """The state store: ``StateStore(path)`` for a SQLite file, ``StateStore(url)`` for any store URL."""

    @classmethod
    def from_url(cls, url: str) -> StateStore:
        return cls(url)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # cycles ---------------------------------------------------------------------------------
    def unfinished_cycle(self) -> str | None:
        c = cycles.c
        with self._read() as conn:
            return conn.execute(
                select(c.cycle_id)
                .where(c.status.in_(("running", "interrupted")))
                .order_by(c.started_at.desc())
                .limit(1)
            ).scalar()

    def start_cycle(self, cycle_id: str) -> None:
        """Open a cycle, or mark an interrupted one running again as it resumes."""
        with self._write() as conn:
            conn.execute(
                insert_ignore(conn, cycles, ["cycle_id"]).values(cycle_id=cycle_id, started_at=_now(), status="running")
            )
            conn.execute(update(cycles).where(cycles.c.cycle_id == cycle_id).values(status="running", finished_at=None))

    def finish_cycle(
        self,
        cycle_id: str,
        status: str,
        golden_version: str | None,
        champion_score: float | None,
        summary: dict[str, Any],
    ) -> None:
        with self._write() as conn:
            conn.execute(
                update(cycles)
                .where(cycles.c.cycle_id == cycle_id)
                .values(
                    finished_at=_now(),
                    status=status,
                    golden_version=golden_version,
                    champion_score=champion_score,
                    summary=json.dumps(summary, default=str),
                )
            )

    def last_cycle_started(self) -> float | None:
        with self._read() as conn:
            return conn.execute(select(func.max(cycles.c.started_at)).where(cycles.c.status == "done")).scalar()

    def last_finished_cycle(self) -> str | None:
        """The id of the last cycle that finished (status ``done``), or None."""
        c = cycles.c
        with self._read() as conn:
            return conn.execute(
                select(c.cycle_id).where(c.status == "done").order_by(c.finished_at.desc()).limit(1)
            ).scalar()

    def last_cycle_clusters(self) -> list[dict[str, Any]]:
        """The clusters the last finished cycle triaged (without their event ids)."""
        c = cycles.c
        with self._read() as conn:
            summary = conn.execute(
                select(c.summary).where(c.status == "done").order_by(c.finished_at.desc()).limit(1)
            ).scalar()
        return (json.loads(summary).get("clusters") or []) if summary else []

    def cycles(self, limit: int = 50) -> list[dict[str, Any]]:
        c = cycles.c
        query = (
            select(c.cycle_id, c.started_at, c.finished_at, c.status, c.golden_version, c.champion_score)
            .order_by(c.started_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # drafts (improver output, cached per cycle and cluster) ------------------------------------
    def drafts(self, cycle_id: str, cluster_id: str) -> dict[str, Any] | None:
        d = drafts.c
        with self._read() as conn:
            doc = conn.execute(select(d.doc).where(d.cycle_id == cycle_id, d.cluster_id == cluster_id)).scalar()
        return json.loads(doc) if doc is not None else None

    def cycle_drafts(self, cycle_id: str) -> list[dict[str, Any]]:
        """Every improver record of a cycle: drafts per cluster, merges, index proposals."""
        d = drafts.c
        with self._read() as conn:
            docs = conn.execute(select(d.doc).where(d.cycle_id == cycle_id).order_by(d.cluster_id)).scalars().all()
        return [json.loads(doc) for doc in docs]

    def save_drafts(self, cycle_id: str, cluster_id: str, doc: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(
                insert_replace(conn, drafts, ["cycle_id", "cluster_id"]).values(
                    cycle_id=cycle_id, cluster_id=cluster_id, doc=json.dumps(doc)
                )
            )

    # evaluation cache ----------------------------------------------------------------------------
    def cached_eval(self, key: str) -> dict[str, Any] | None:
        with self._read() as conn:
            doc = conn.execute(select(eval_cache.c.doc).where(eval_cache.c.key == key)).scalar()
        return json.loads(doc) if doc is not None else None

    def cache_eval(self, key: str, doc: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(
                insert_replace(conn, eval_cache, ["key"]).values(key=key, created_at=_now(), doc=json.dumps(doc))
            )

    # candidates --------------------------------------------------------------------------------
    def add_candidate(self, c: Candidate) -> bool:
        """Insert unless the id exists (ids are deterministic); True when it was new."""
        with self._write() as conn:
            result = conn.execute(
                insert_ignore(conn, candidates, ["candidate_id"])
                .values(
                    candidate_id=c.candidate_id,
                    cycle_id=c.cycle_id,
                    kind=c.kind,
                    doc=c.model_dump_json(),
                    decision=c.decision,
                    created_at=_now(),
                )
                .returning(candidates.c.candidate_id)
            )
            return result.first() is not None  # RETURNING: rowcount is not reliable on every driver

    def save_candidate(self, c: Candidate) -> None:
        with self._write() as conn:
            conn.execute(
                update(candidates)
                .where(candidates.c.candidate_id == c.candidate_id)
                .values(doc=c.model_dump_json(), decision=c.decision)
            )

    def candidate(self, candidate_id: str) -> Candidate | None:
        with self._read() as conn:
            doc = conn.execute(select(candidates.c.doc).where(candidates.c.candidate_id == candidate_id)).scalar()
        return Candidate.model_validate_json(doc) if doc is not None else None

    def candidates(
        self, *, cycle_id: str | None = None, decision: str | None = None, kind: str | None = None
    ) -> list[Candidate]:
        c = candidates.c
        query = select(c.doc).order_by(c.created_at, c.candidate_id)
        for column, value in ((c.cycle_id, cycle_id), (c.decision, decision), (c.kind, kind)):
            if value is not None:
                query = query.where(column == value)
        with self._read() as conn:
            docs = conn.execute(query).scalars().all()
        return [Candidate.model_validate_json(doc) for doc in docs]

    # promotions ----------------------------------------------------------------------------------
    def record_promotion(
        self,
        kind: str,
        action: str,
        from_version: str | None,
        to_version: str,
        candidate_id: str | None,
        by: str | None,
        note: str | None,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                promotions.insert().values(
                    kind=kind,
                    action=action,
                    from_version=from_version,
                    to_version=to_version,
                    candidate_id=candidate_id,
                    at=_now(),
                    by=by,
                    note=note,
                )
            )

    def promotions(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = select(promotions).order_by(promotions.c.id)
        if kind:
            query = query.where(promotions.c.kind == kind)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # what was tried on each cluster (fine-tuning is only for clusters prompts could not fix) --------
    def record_attempt(self, cluster_id: str, cycle_id: str, kind: str, candidate_id: str, outcome: str) -> None:
        with self._write() as conn:
            conn.execute(
                insert_replace(conn, cluster_attempts, ["cluster_id", "candidate_id"]).values(
                    cluster_id=cluster_id,
                    cycle_id=cycle_id,
                    kind=kind,
                    candidate_id=candidate_id,
                    outcome=outcome,
                    at=_now(),
                )
            )

    def prompt_failed_clusters(self) -> set[str]:
        """Clusters prompt revisions could not fix: a prompt candidate for them was rejected, or no
        drafted revision did better than the champion on their own failing examples
        (``no_improvement``), and no prompt for them was ever promoted."""
        a = cluster_attempts.c
        failed = func.sum(case((a.outcome.in_(("rejected", "no_improvement")), 1), else_=0))
        promoted = func.sum(case((a.outcome == "promoted", 1), else_=0))
        query = select(a.cluster_id).where(a.kind == "prompt").group_by(a.cluster_id).having(failed > 0, promoted == 0)
        with self._read() as conn:
            return set(conn.execute(query).scalars())

    def cluster_history(self, cluster_id: str) -> list[dict[str, Any]]:
        a = cluster_attempts.c
        query = select(a.cycle_id, a.kind, a.candidate_id, a.outcome, a.at).where(a.cluster_id == cluster_id)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(a.at))]

    def promoted_at(self, cluster_id: str, kind: str) -> float | None:
        """When a fix of ``kind`` for the cluster was last promoted (None: never)."""
        a = cluster_attempts.c
        with self._read() as conn:
            return conn.execute(
                select(func.max(a.at)).where(a.cluster_id == cluster_id, a.kind == kind, a.outcome == "promoted")
            ).scalar()

    # fine-tune jobs ------------------------------------------------------------------------------
    def finetune_job(
        self, *, job_id: str | None = None, dataset_version: str | None = None, base_model: str | None = None
    ) -> dict[str, Any] | None:
        j = finetune_jobs.c
        query = select(j.doc)
        if job_id is not None:
            query = query.where(j.job_id == job_id)
        else:
            query = query.where(j.dataset_version == dataset_version, j.base_model == base_model)
        with self._read() as conn:
            doc = conn.execute(query).scalar()
        return json.loads(doc) if doc is not None else None

    def finetune_jobs(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        j = finetune_jobs.c
        query = select(j.doc).order_by(j.created_at)
        if open_only:
            query = query.where(
                j.status.not_in(_FINISHED_JOB) | ((j.status == "succeeded") & j.model_version.is_(None))
            )
        with self._read() as conn:
            docs = conn.execute(query).scalars().all()
        return [json.loads(doc) for doc in docs]

    def save_finetune_job(self, job: dict[str, Any]) -> None:
        """Insert or update a job record (``job_id``, ``dataset_version``, ``base_model``, ``status``...)."""
        now = _now()
        job.setdefault("created_at", now)
        job["updated_at"] = now
        row = {
            "job_id": job["job_id"],
            "dataset_version": job["dataset_version"],
            "base_model": job["base_model"],
            "cycle_id": job.get("cycle_id"),
            "cluster_ids": ",".join(job.get("cluster_ids") or []),
            "status": job["status"],
            "fine_tuned_model": job.get("fine_tuned_model"),
            "model_version": job.get("model_version"),
            "error": job.get("error"),
            "doc": json.dumps(job, default=str),
            "created_at": job["created_at"],
            "updated_at": now,
        }
        changing = ("status", "fine_tuned_model", "model_version", "error", "doc", "updated_at")
        with self._write() as conn:
            conn.execute(insert_replace(conn, finetune_jobs, ["job_id"], changing).values(**row))

    # golden-set proposals ------------------------------------------------------------------------
    def add_proposals(self, proposals: list[GoldenProposal]) -> list[GoldenProposal]:
        """Store proposals whose id is new; return those (a known id keeps its first record)."""
        now = _now()
        added = []
        with self._write() as conn:
            for p in proposals:
                p = p.model_copy(update={"created_at": as_datetime(now)})
                result = conn.execute(
                    insert_ignore(conn, golden_proposals, ["proposal_id"])
                    .values(
                        proposal_id=p.proposal_id,
                        status=p.status,
                        category=p.category,
                        doc=p.model_dump_json(),
                        created_at=now,
                    )
                    .returning(golden_proposals.c.proposal_id)
                )
                if result.first() is not None:
                    added.append(p)
        return added

    def proposal(self, proposal_id: str) -> GoldenProposal | None:
        g = golden_proposals.c
        with self._read() as conn:
            doc = conn.execute(select(g.doc).where(g.proposal_id == proposal_id)).scalar()
        return GoldenProposal.model_validate_json(doc) if doc is not None else None

    def proposals(self, status: ProposalStatus | None = None) -> list[GoldenProposal]:
        g = golden_proposals.c
        query = select(g.doc).order_by(g.created_at, g.proposal_id)
        if status:
            query = query.where(g.status == status)
        with self._read() as conn:
            docs = conn.execute(query).scalars().all()
        return [GoldenProposal.model_validate_json(doc) for doc in docs]

    def save_proposal(self, p: GoldenProposal) -> None:
        """Record a decision (status, who, when, why, the golden version it made)."""
        decided = p.decided_at.timestamp() if p.decided_at else None
        with self._write() as conn:
            conn.execute(
                update(golden_proposals)
                .where(golden_proposals.c.proposal_id == p.proposal_id)
                .values(status=p.status, doc=p.model_dump_json(), decided_at=decided)
            )

    # pointers (the active index version) ------------------------------------------------------
    def pointer(self, name: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(pointers.c.value).where(pointers.c.name == name)).scalar()

    def set_pointer(self, name: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(insert_replace(conn, pointers, ["name"]).values(name=name, value=value))

    def clear_pointer(self, name: str) -> None:
        with self._write() as conn:
            conn.execute(pointers.delete().where(pointers.c.name == name))

    def update_pointer(self, name: str, change: Callable[[str | None], str | None]) -> str | None:
        """Read ``name``, ``change`` its value and write the result (None: clear it) in one transaction
        that other writers of the pointer wait for. Two flow runs that each read, edit and write a
        shared pointer (the runs waiting for approval) otherwise lose one's edit: the older run,
        resumed, removed itself from a copy read before the newer run added itself."""
        with self._write() as conn:  # SQLite: BEGIN IMMEDIATE, one writer at a time
            if conn.dialect.name == "postgresql":  # the row may not exist yet: lock the name, not a row
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
            value = change(conn.execute(select(pointers.c.value).where(pointers.c.name == name)).scalar())
            if value is None:
                conn.execute(pointers.delete().where(pointers.c.name == name))
            else:
                conn.execute(insert_replace(conn, pointers, ["name"]).values(name=name, value=value))
            return value


def default_state_url(home: Path) -> str:
    """The state store when nothing else is configured: ``state.sqlite`` under the home."""
    return f"sqlite:///{home / STATE_FILE}"


def open_state(where: Settings | Path, url: str | None = None) -> StateStore:
    """Open (and migrate) the state store. Given the settings: where they say
    (``Settings.resolved_state_url``: on PostgreSQL beside the feedback store, else ``state.sqlite``
    under the home); given a home directory: ``url``, else the SQLite file under it."""
    if isinstance(where, Path):
        return StateStore(url or default_state_url(where))
    where.ensure_home()
    return StateStore(url or where.resolved_state_url)
