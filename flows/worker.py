"""A warm worker: the project's deployments' flow runs executed in this process, one at a time.

Why not Prefect's own worker or ``flow.serve``: both start every flow run in a fresh process (the
process worker runs ``python -m prefect.engine``; a Runner spawns ``run_flow_in_subprocess``), so
each run imports Flywheel, loads the embedding model and opens the stores anew: the `watch`
deployment pays that every 15 minutes. Here the process's :class:`flywheel.runtime.Runtime` (the
embedder, the stores, the MLflow and LLM clients) outlives the runs.

How a run is taken, as Prefect's workers do it: the work pool's scheduled runs are read (the same
endpoint ``prefect worker start`` polls, so event-triggered runs arrive the same way), a run whose
deployment's entrypoint is one of Flywheel's flows is claimed by proposing Pending (a run another
worker claimed first is refused by the server and skipped), and Prefect's flow engine runs it here
(``run_flow`` with the flow run: it proposes Running, runs the tasks, proposes the final state). A
run that did not reach a final state (a crash, a stop) is marked Crashed, never left Running.
Runs of other projects' deployments on the same pool are left for their own workers.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import Abort, ObjectNotFound, Pause
from prefect.flow_engine import run_flow
from prefect.flows import Flow
from prefect.states import Crashed, Pending
from prefect.utilities.engine import propose_state_sync

import flywheel.flows  # noqa: F401 - the flow-run face first (masking, expected errors)
from flywheel.config import Settings
from flywheel.errors import FlywheelError, UsageError
from flywheel.runtime import Runtime, process_runtime, runtime_for

DEFAULT_POOL = "flywheel-process"  # prefect.yaml's work pool
FLOWS_FOLDER = "flows/"  # prefect.yaml's entrypoints: `flows/cycle.py:improvement_cycle`


class PrefectUnreachable(FlywheelError):
    """The Prefect API did not answer: nothing to take runs from."""


@dataclass
class RunRecord:
    """One flow run the worker executed: what, how it ended, how long, and what it had to open."""

    flow_run_id: str
    name: str
    flow: str
    deployment: str | None
    state: str
    seconds: float
    opened: dict[str, int] = field(default_factory=dict)  # Runtime resources this run made (none: warm)
    runtime_id: int = 0  # the process Runtime's identity after the run: equal across runs = shared

    def public(self) -> dict[str, Any]:
        return asdict(self) | {"seconds": round(self.seconds, 3)}


def project_flow(entrypoint: str | None) -> Flow[..., Any] | None:
    """The Flywheel flow a deployment's entrypoint names (``flows/watch.py:watch`` is
    ``flywheel.flows.watch.watch``, imported once, by module name), or None for anything else."""
    if not entrypoint or not entrypoint.startswith(FLOWS_FOLDER) or ":" not in entrypoint:
        return None
    path, _, attr = entrypoint.partition(":")
    module = path.removeprefix(FLOWS_FOLDER).removesuffix(".py")
    if not module.isidentifier():
        return None
    try:
        found = getattr(importlib.import_module(f"flywheel.flows.{module}"), attr, None)
    except ImportError:
        return None
    return found if isinstance(found, Flow) else None


@contextmanager
def connected(settings: Settings) -> Iterator[SyncPrefectClient]:
    """A client of the Prefect API the worker takes runs from (``PREFECT_API_URL``, from the
    environment, flywheel.toml or Prefect's profile), in effect for the runs too; one clear error
    when there is none or it does not answer."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = settings.prefect_api_url or PREFECT_API_URL.value()
    with temporary_settings(updates={PREFECT_API_URL: api_url} if api_url else {}):
        client = _connect(api_url)
        try:
            yield client
        finally:
            client.__exit__(None, None, None)


def _connect(api_url: str | None) -> SyncPrefectClient:
    if not api_url:
        raise UsageError(
            "flywheel worker needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api; "
            "README, 'A warm worker')"
        )
    client = get_client(sync_client=True)
    client.__enter__()
    failure = client.api_healthcheck()
    if failure is not None:
        client.__exit__(None, None, None)
        raise PrefectUnreachable(f"the Prefect API at {api_url} does not answer ({type(failure).__name__})")
    return client


class WarmWorker:
    """Takes the scheduled runs of Flywheel's deployments on ``pool`` (optionally some ``queues``)
    and runs each in this process."""

    def __init__(
        self,
        client: SyncPrefectClient,
        pool: str = DEFAULT_POOL,
        queues: list[str] | None = None,
        *,
        on_start: Callable[[FlowRun, str], None] | None = None,
        on_done: Callable[[RunRecord], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.queues = queues or None
        self.on_start = on_start
        self.on_done = on_done
        self.on_error = on_error
        self.current: FlowRun | None = None  # the run executing now (a stop marks it)
        self._deployments: dict[UUID, tuple[str | None, Flow[..., Any] | None]] = {}

    def check_pool(self) -> None:
        try:
            self.client.read_work_pool(self.pool)
        except ObjectNotFound:
            raise UsageError(
                f"no work pool {self.pool!r} on the Prefect server: create it "
                f"(`prefect work-pool create {self.pool} --type process`) and deploy (`prefect deploy --all`)"
            ) from None

    def warm_up(self, settings: Settings) -> Runtime:
        """Open what the runs will: the stores, the MLflow client and the embedder with its model's
        weights, before the first run."""
        from flywheel.embeddings import preload

        rt = runtime_for(settings)
        _ = rt.feedback, rt.state, rt.mlflow
        preload(rt.embedder)
        return rt

    def due(self) -> list[tuple[FlowRun, Flow[..., Any], str | None]]:
        """The runs due now whose deployment runs a Flywheel flow, earliest first."""
        runs = self.client.get_scheduled_flow_runs_for_work_pool(
            self.pool, work_queue_names=self.queues, scheduled_before=datetime.now(UTC) + timedelta(seconds=1)
        )
        out = []
        for response in sorted(runs, key=lambda r: r.flow_run.next_scheduled_start_time or r.flow_run.created):
            fr = response.flow_run
            name, flow = self._deployment(fr.deployment_id)
            if flow is not None:
                out.append((fr, flow, name))
        return out

    def _deployment(self, deployment_id: UUID | None) -> tuple[str | None, Flow[..., Any] | None]:
        if deployment_id is None:
            return None, None
        if deployment_id not in self._deployments:
            try:
                d = self.client.read_deployment(deployment_id)
            except ObjectNotFound:
                return None, None
            self._deployments[deployment_id] = (d.name, project_flow(d.entrypoint))
        return self._deployments[deployment_id]

    def claim(self, flow_run: FlowRun) -> FlowRun | None:
        """Scheduled -> Pending, as a worker does; None when the server refuses (taken elsewhere,
        cancelled, deleted) or cannot be asked right now (the next poll asks again)."""
        try:
            # Still scheduled? A run another worker finished since the poll could be moved from
            # Completed to Pending again (the server allows a re-run), and would run twice.
            current = self.client.read_flow_run(flow_run.id).state
            if current is None or not current.is_scheduled():
                return None
            state = propose_state_sync(self.client, Pending(), flow_run_id=flow_run.id)
        except (Abort, Exception):  # noqa: BLE001 - refused (Abort is a BaseException), gone, or the API away
            return None
        if not state.is_pending():
            return None
        return self.client.read_flow_run(flow_run.id)

    def execute(self, flow_run: FlowRun, flow: Flow[..., Any], deployment: str | None) -> RunRecord:
        """Run a claimed flow run here with Prefect's flow engine; a run left unfinished is marked Crashed."""
        before = _openings_of_runtime()
        started = time.perf_counter()
        self.current = flow_run
        if self.on_start is not None:
            self.on_start(flow_run, deployment or "")
        try:
            outcome = run_flow(flow, flow_run=flow_run, return_type="state")
            if asyncio.iscoroutine(outcome):
                asyncio.run(outcome)
        except (Abort, Pause):
            pass  # the server would not let it run (cancelled, taken) or suspended it: its state says so
        except Exception as exc:  # noqa: BLE001 - the engine itself failed (the API went away): the worker goes on
            self.mark_crashed(flow_run, f"the warm worker's engine failed: {type(exc).__name__}")
        except BaseException as exc:  # a stop (Ctrl-C, SIGTERM): the run is marked, then the stop goes on up
            self.mark_crashed(flow_run, f"the warm worker was stopped ({type(exc).__name__})")
            raise
        finally:
            self.current = None
        self.mark_crashed(flow_run, "the run ended without a final state")  # a no-op when it has one
        return self._record(flow_run, flow, deployment, time.perf_counter() - started, before)

    def mark_crashed(self, flow_run: FlowRun, why: str) -> None:
        """Crashed, unless the run already reached a final state (or is paused, waiting for a person)."""
        try:
            state = self.client.read_flow_run(flow_run.id).state
            if state is None or not (state.is_final() or state.is_paused()):
                propose_state_sync(self.client, Crashed(message=why), flow_run_id=flow_run.id)
        except (Abort, Exception):  # noqa: BLE001 - best effort: the server's own late-run checks remain
            pass

    def _record(
        self,
        flow_run: FlowRun,
        flow: Flow[..., Any],
        deployment: str | None,
        seconds: float,
        before: tuple[int, dict[str, int]],
    ) -> RunRecord:
        state = self.client.read_flow_run(flow_run.id).state
        runtime_id, after = _openings_of_runtime()
        earlier = before[1] if before[0] == runtime_id else {}  # another Runtime (other settings): all new
        record = RunRecord(
            flow_run_id=str(flow_run.id),
            name=flow_run.name,
            flow=flow.name,
            deployment=deployment,
            state=state.name if state is not None else "unknown",
            seconds=seconds,
            opened={k: v - earlier.get(k, 0) for k, v in after.items() if v > earlier.get(k, 0)},
            runtime_id=runtime_id,
        )
        if self.on_done is not None:
            self.on_done(record)
        return record

    def serve(
        self,
        *,
        limit: int | None = None,
        once: bool = False,
        poll_seconds: float = 5.0,
        stop: Any = None,
        done: list[RunRecord] | None = None,
    ) -> list[RunRecord]:
        """Poll and run until ``limit`` runs are done, or nothing is due with ``once``, or ``stop``
        (a ``threading.Event``) is set; each record is appended to ``done`` as its run ends (what a
        stop leaves behind)."""
        done = [] if done is None else done
        while stop is None or not stop.is_set():
            try:
                due = self.due()
            except Exception as exc:  # noqa: BLE001 - the API away for a moment: look again at the next poll
                if once:
                    raise
                if self.on_error is not None:
                    self.on_error(f"could not read the pool's runs ({type(exc).__name__}); trying again")
                due = []
            ran = False
            for flow_run, flow, deployment in due:
                if (limit is not None and len(done) >= limit) or (stop is not None and stop.is_set()):
                    break
                claimed = self.claim(flow_run)
                if claimed is not None:
                    done.append(self.execute(claimed, flow, deployment))
                    ran = True
                    break  # the list is as old as that run: ask the server again
            if limit is not None and len(done) >= limit:
                break
            if ran:
                continue
            if once:
                break
            if stop is not None:
                stop.wait(poll_seconds)
            else:
                time.sleep(poll_seconds)
        return done


def _openings_of_runtime() -> tuple[int, dict[str, int]]:
    """The process Runtime's identity and what it has opened so far."""
    rt = process_runtime()
    return (id(rt), dict(rt.openings)) if rt is not None else (0, {})
