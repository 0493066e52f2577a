"""Deciding proposals, and the golden versions acceptance makes.

An accepted proposal becomes a line appended to the golden file (the team's lines stay as they
wrote them, so their version control shows only the new items). The bundled golden set is never
written: with no golden file configured, the first acceptance starts ``$FLYWHEEL_HOME/golden/golden.jsonl``
from the bundled items, and every later read (``Settings.golden_file``) takes that copy. The new file is written next to
the old one and moved over it with ``os.replace``: a reader sees the old version or the new one,
never half a file, and a crash leaves the old one. Both versions are kept under
``$FLYWHEEL_HOME/golden/versions/<version>.jsonl``, the version being the content hash
``evals.golden`` computes. The new version is logged to MLflow as a dataset, on a run tagged
``flywheel.kind=golden`` that says who accepted which proposals.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flywheel.config import Settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.evals.golden import GoldenItem, GoldenSet, canonical_version, load_golden
from flywheel.proposals import GoldenProposal, ProposalStatus
from flywheel.runtime import runtime_for

GOLDEN_KIND = "golden"


def current_golden(settings: Settings) -> GoldenSet | None:
    """The configured golden set, or None when there is none yet (no file, or an empty one). A
    file with a bad line is a usage error naming it, as everywhere else."""
    path = settings.golden_file
    if not path.is_file() or not path.read_bytes().strip():
        return None
    return load_golden(path)


def versions_dir(settings: Settings) -> Path:
    return settings.home / "golden" / "versions"


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` all at once: a temporary file in the same directory, synced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def keep_version(settings: Settings, version: str, data: bytes) -> Path:
    """A copy of one golden version under FLYWHEEL_HOME (written once: a version never changes)."""
    target = versions_dir(settings) / f"{version}.jsonl"
    if not target.exists():
        write_atomically(target, data)
    return target


@contextmanager
def _golden_lock(settings: Settings) -> Iterator[None]:
    """One acceptance at a time per state directory (the CLI and a flow may decide at once)."""
    lock = settings.ensure_home() / "golden" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


class AcceptReport(BaseModel):
    accepted: list[str]
    already_accepted: list[str] = []
    accepted_by: str
    golden_version: str
    previous_version: str | None
    path: str
    items: int
    previous_kept: str | None = None
    version_kept: str
    mlflow_run_id: str | None = None


def _item(p: GoldenProposal) -> GoldenItem:
    return GoldenItem(
        id=p.proposal_id,
        input=p.input,
        expected=p.expected,
        category=p.category,
        scorer=p.scorer,
        tags=["proposed", f"source:{p.source.kind}"],
    )


def _decidable(settings: Settings, ids: Sequence[str]) -> list[GoldenProposal]:
    if not ids:
        raise UsageError("name at least one proposal id (`flywheel golden review` lists them)")
    out = []
    with runtime_for(settings).borrow_state() as state:
        for pid in dict.fromkeys(ids):
            p = state.proposal(pid)
            if p is None:
                raise UsageError(f"no proposal {pid!r} (`flywheel golden review` lists the pending ones)")
            if p.status is ProposalStatus.rejected:
                raise UsageError(f"proposal {pid} was rejected by {p.decided_by} ({p.reason}); it cannot be accepted")
            out.append(p)
    return out


def accept(settings: Settings, ids: Sequence[str], *, by: str) -> AcceptReport:
    """Add the proposals to the golden set as a new version; see the module's docstring."""
    chosen = _decidable(settings, ids)
    with _golden_lock(settings):
        golden = current_golden(settings)
        old = golden.path.read_bytes() if golden else b""
        target = settings.golden_target  # never the bundled file: a copy under FLYWHEEL_HOME then
        present = {i.id for i in golden.items} if golden else set()
        # Already in the file (accepted before, or a crash between the write and the record): not added twice.
        adding = [p for p in chosen if p.proposal_id not in present and p.status is ProposalStatus.pending]
        already = [p.proposal_id for p in chosen if p not in adding]
        if not adding:
            if golden is None:
                raise UsageError("nothing to accept")
            version = golden.version
            kept = None
            target = golden.path
        else:
            items = [*(golden.items if golden else ()), *(_item(p) for p in adding)]
            version = canonical_version(items)
            kept = str(keep_version(settings, golden.version, old)) if golden else None
            data = old if not old or old.endswith(b"\n") else old + b"\n"
            data += b"".join(_item(p).model_dump_json(exclude_defaults=True).encode() + b"\n" for p in adding)
            write_atomically(target, data)
            written = load_golden(target)
            if written.version != version:  # pragma: no cover - canonical_version is order-free
                raise FlywheelError(f"{target}: wrote version {written.version}, expected {version}")
        version_kept = keep_version(settings, version, target.read_bytes())
        now = datetime.now(UTC)
        with runtime_for(settings).borrow_state() as state:
            for p in chosen:
                if p.status is ProposalStatus.pending:
                    state.save_proposal(
                        p.model_copy(
                            update={
                                "status": ProposalStatus.accepted,
                                "decided_by": by,
                                "decided_at": now,
                                "golden_version": version,
                            }
                        )
                    )
    report = AcceptReport(
        accepted=[p.proposal_id for p in adding],
        already_accepted=already,
        accepted_by=by,
        golden_version=version,
        previous_version=golden.version if golden else None,
        path=str(target),
        items=len(load_golden(target)),
        previous_kept=kept,
        version_kept=str(version_kept),
    )
    if adding:
        try:
            report.mlflow_run_id = log_version(settings, load_golden(target), adding, report)
        except Exception as exc:
            raise FlywheelError(
                f"accepted {len(adding)} proposal(s) into golden version {version[:12]} "
                f"({target}), but logging it to MLflow failed: {exc}"
            ) from exc
    return report


def reject(settings: Settings, proposal_id: str, *, by: str, reason: str) -> GoldenProposal:
    if not reason.strip():
        raise UsageError("reject needs --reason TEXT: the reason is recorded with the decision")
    with runtime_for(settings).borrow_state() as state:
        p = state.proposal(proposal_id)
        if p is None:
            raise UsageError(f"no proposal {proposal_id!r} (`flywheel golden review` lists the pending ones)")
        if p.status is not ProposalStatus.pending:
            raise UsageError(f"proposal {proposal_id} is already {p.status} (by {p.decided_by})")
        p = p.model_copy(
            update={
                "status": ProposalStatus.rejected,
                "decided_by": by,
                "reason": reason.strip(),
                "decided_at": datetime.now(UTC),
            }
        )
        state.save_proposal(p)
    return p


def pending(settings: Settings) -> list[GoldenProposal]:
    with runtime_for(settings).borrow_state() as state:
        return state.proposals(ProposalStatus.pending)


def log_version(settings: Settings, golden: GoldenSet, accepted: Sequence[GoldenProposal], report: AcceptReport) -> str:
    """An MLflow run for the new version: its dataset as the run's input, who accepted what."""
    from mlflow.entities import Param, RunTag

    from flywheel.evals.tracking import KIND, experiment_id, golden_dataset_input
    from flywheel.registry import use_mlflow

    client = use_mlflow(settings)
    exp = experiment_id(client, settings.experiment)
    tags = {KIND: GOLDEN_KIND, "flywheel.golden_version": golden.version, "flywheel.accepted_by": report.accepted_by}
    run = client.create_run(exp, run_name=f"golden-{golden.version[:12]}", tags=tags)
    run_id: str = run.info.run_id
    params = {
        "golden_version": golden.version,
        "previous_version": report.previous_version or "none",
        "golden_path": str(golden.path),
        "items": len(golden),
        "accepted": len(accepted),
        "accepted_by": report.accepted_by,
    }
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("mlflow.note.content", f"{report.accepted_by} accepted {len(accepted)} proposal(s)")],
    )
    client.log_inputs(run_id, datasets=[golden_dataset_input(golden)])
    client.log_dict(run_id, [_accepted_record(p, report) for p in accepted], "accepted_proposals.json")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _accepted_record(p: GoldenProposal, report: AcceptReport) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "category": p.category,
        "scorer": p.scorer,
        "input": p.input,
        "expected": p.expected,
        "source": p.source.model_dump(mode="json", exclude_none=True),
        "accepted_by": report.accepted_by,
    }
