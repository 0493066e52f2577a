"""Shared fixtures: a temporary state directory per test, the simulator on an ephemeral port,
and the real local embedding model loaded once per session."""

from __future__ import annotations

import gc
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flywheel._offline import apply_offline_defaults

apply_offline_defaults()  # the offline switches before Prefect, MLflow or Hugging Face load
# One OpenMP thread in every test process and what it starts: the suite runs three test processes on
# two cores, and torch's threads (one per core by default) spin while they wait for each other. Three
# processes embedding the same texts side by side took 30 s of CPU each with two threads, 12 s with one
# (46 s and 19 s of wall time). Before torch or numpy's BLAS loads; a test that sets it otherwise wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A test process holds Prefect, MLflow, torch and every test's leftovers: each full collection walks
# that heap (~0.4 s). With the default thresholds the collector took 10.9 s of a 115 s in-process run
# of test_cycle and test_approval (22 full collections); with these, 4.6 s (2). Garbage cycles wait a
# little longer to be freed, which a test process can afford.
gc.set_threshold(20_000, 20, 20)

import pytest
from typer.testing import CliRunner

from flywheel.app.cli import app
from flywheel.config import EmbeddingSettings, Settings, load_settings
from flywheel.embeddings import LocalEmbedder
from flywheel.evals.golden import load_golden
from flywheel.runtime import runtime_for
from flywheel.sim.server import SimOptions, Simulator
from flywheel.sim.world import write_world
from pg_server import PostgresServer, ensure_postgres, server_bin

_ENV_TO_CLEAR = (
    "FLYWHEEL_CONFIG",
    "FLYWHEEL_GOLDEN",
    "FLYWHEEL_KNOWLEDGE_SOURCE",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "FLYWHEEL_STORE_URL",
    "FLYWHEEL_STATE_URL",
)
TEST_TRACE_ITEMS = "2"


def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary directory that every pytest-xdist worker (and the controller) sees."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared


@pytest.fixture(scope="session", autouse=True)
def flywheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the session's processes (the migrated MLflow database new homes copy,
    flywheel/mlflow_db.py), shared by the pytest-xdist workers and not the user's ~/.cache."""
    shared = shared_tmp(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLYWHEEL_CACHE_DIR", str(shared / "flywheel-cache"))
        yield shared / "flywheel-cache"


@pytest.fixture(autouse=True)
def flywheel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FLYWHEEL_HOME and a working directory with no flywheel.toml."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("FLYWHEEL_HOME", str(home))
    # Each golden answer logged as an MLflow trace costs ~8 ms (one SQLite transaction): ~5 s a cycle
    # for every reviewable variant. Tests of the traces themselves unset this; the others log a few.
    monkeypatch.setenv("FLYWHEEL_EVAL__TRACE_ITEMS", TEST_TRACE_ITEMS)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def settings(flywheel_home: Path) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder(EmbeddingSettings())


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def broken_endpoint() -> Iterator[Simulator]:
    """Another endpoint, set up wrong: its product model answers every question with an empty
    string, and its screening judge calls every complaint resolved."""
    with Simulator(options=SimOptions(empty_answers=True, resolve_everything=True)) as sim:
        yield sim


@pytest.fixture
def small_golden(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every eighth item of the world's golden set (each intent, a few times), as FLYWHEEL_GOLDEN."""
    path = tmp_path / "golden.jsonl"
    path.write_text("".join((world / "golden.jsonl").read_text().splitlines(keepends=True)[::8]))
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(path))
    return path


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prefect test API per test process (flows run against it). A new server builds its SQLite
    database by running every Prefect migration (~6 s of CPU, the same empty schema each time): the
    first test process keeps a copy of its database once the server is up, and the others start from
    that copy (their server finds it migrated). Prefect's harness makes the database in a directory
    from ``mkdtemp``; where that name is gone (another Prefect), each server migrates its own."""
    import contextlib
    import fcntl
    import sqlite3
    import tempfile

    import prefect
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL
    from prefect.testing import utilities
    from prefect.testing.utilities import prefect_test_harness

    shared = shared_tmp(tmp_path_factory)
    template = shared / f"prefect-{prefect.__version__}-migrated.db"
    with contextlib.ExitStack() as stack:
        with (shared / "prefect-template.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held while the first process migrates: the others wait for its copy
            seeded = template.exists()
            with pytest.MonkeyPatch.context() as mp:
                if seeded:
                    directory = tempfile.mkdtemp()
                    shutil.copyfile(template, Path(directory) / "prefect-test.db")
                    mp.setattr(utilities, "mkdtemp", lambda: directory, raising=False)
                stack.enter_context(prefect_test_harness(server_startup_timeout=180))
            if not seeded:
                database = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).partition(":///")[2]
                partial = template.with_suffix(".partial")
                with sqlite3.connect(database) as source, sqlite3.connect(partial) as copy:
                    source.backup(copy)  # consistent while the server holds it open
                source.close()
                copy.close()
                os.replace(partial, template)
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test process (one per xdist worker), started on first use: Debian's
    ``postgresql`` installed with apt-get if missing (one worker at a time: apt holds a lock)."""
    import fcntl

    shared = shared_tmp(tmp_path_factory)
    with (shared / "postgres-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        why = ensure_postgres(shared / "postgres-install.log")
    if why:
        pytest.skip(why)
    bin_dir = server_bin()
    assert bin_dir is not None
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, flywheel_home: Path) -> str:
    """The URL of a fresh, empty store on each dialect: a file under FLYWHEEL_HOME, a new database."""
    if request.param == "sqlite":
        return f"sqlite:///{flywheel_home / 'feedback.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url(server.create_database())


@pytest.fixture
def sim_env(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    monkeypatch.setenv("OPENAI_BASE_URL", simulator.base_url)
    return simulator


class Cli:
    """Runs the real CLI in-process and parses --json output."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0) -> Any:
        result = self.runner.invoke(app, list(args))
        assert result.exit_code == expect, (
            f"flywheel {' '.join(args)} exited {result.exit_code}, expected {expect}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
        self.last = result
        if "--json" in args:
            return json.loads(result.stdout)
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows are dicts (written as JSON) or raw strings (written as they are)."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    base = {
        "event_id": event_id,
        "ts": "2026-11-10T10:00:00+00:00",
        "signal": "thumbs_down",
        "query": "How much does the Pro plan cost?",
        "output": "The Pro plan costs $10 per month.",
        "consent": True,
        "user_id": "u-1",
    }
    base.update(fields)
    return base


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("world")
    write_world(directory)
    return directory


# The slowest tests, longest first (measured from a fresh clone with --durations, 3 workers). They
# start first so short tests fill the end instead of a long one running alone at the end. The first six
# need no world embeddings (the controller builds those in the first minute, see pytest_sessionstart).
SLOW_FIRST = (
    "test_browser.py::",
    "test_demo.py::test_demo_closes_the_loop",
    "test_bench_smoke.py::test_each_benchmark_runs_at_smoke_size_and_reports_its_figures[bench_worker]",
    "test_several_hosts.py::test_two_replicas_share_keys_arms_promotions_and_the_index",
    "test_bench_smoke.py::test_each_benchmark_runs_at_smoke_size_and_reports_its_figures[bench_kb]",
    "test_readme_snippets.py::test_the_readme_snippets_read_what_production_serves",
    "test_cycle.py::test_a_cycle_killed_after_evaluation_resumes_without_duplicates",
    "test_signals.py::test_sigterm_ends_a_cycle_within_seconds_as_interrupted_and_resumable",
    "test_outage.py::test_an_outage_during_evaluation_fails_the_cycle_and_decides_nothing",
    "test_approval.py::test_a_newer_cycle_that_supersedes_the_waiting_candidates_resumes_the_older_run",
    "test_cycle.py::test_a_cluster_prompts_cannot_fix_is_fine_tuned_then_approved_and_rolled_back",
    "test_bench_smoke.py::test_each_benchmark_runs_at_smoke_size_and_reports_its_figures[bench_cycle]",
    "test_cycle.py::test_full_cycle_through_the_cli_then_approve_and_rollback",
    "test_bench_smoke.py::test_each_benchmark_runs_at_smoke_size_and_reports_its_figures[bench_efficacy]",
    "test_approval.py::test_the_form_answer_promotes_what_was_approved_and_rejects_the_rest",
    "test_autonomy.py::test_a_cycle_in_canary_mode_leaves_a_running_canary_that_the_watch_promotes",
    "test_traffic.py::test_watch_on_generated_traffic_promotes_a_better_canary_and_rolls_back_a_worse_promotion",
    "test_deadlines.py::test_a_hung_endpoint_ends_the_cycle_as_an_error_within_its_deadlines",
    "test_cycle.py::test_mlflow_holds_every_candidate_as_spec_names_it",
    "test_bench_import_smoke.py::",
    "test_operations.py::test_triage_and_decisions_from_flows_match_the_cli",
    "test_deadlines.py::test_sigterm_ends_a_cycle_whose_calls_hang_within_seconds",
    "test_approval.py::test_what_nobody_approves_before_the_timeout_is_rejected",
    "test_dask.py::test_a_cycle_on_dask_embeds_and_evaluates_in_worker_processes",
    "test_bench_smoke.py::test_each_benchmark_runs_at_smoke_size_and_reports_its_figures[bench_serve]",
    "test_diagnosis.py::test_a_cycle_on_feedback_without_reasons_diagnoses_drafts_and_reports",
    "test_outage.py::test_a_dead_endpoint_is_given_up_on_within_the_budget",
    "test_approval.py::test_cli_decisions_resume_the_waiting_run",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest tests first (``SLOW_FIRST``), the rest in their order. pytest-xdist (with
    ``--maxschedchunk 1``, pyproject.toml) hands each worker two consecutive tests to start with, then
    one at a time as it finishes: the first six are laid out so the three longest start on three workers
    at once."""

    def rank(item: pytest.Item) -> int:
        return next((i for i, f in enumerate(SLOW_FIRST) if f in item.nodeid), len(SLOW_FIRST))

    items.sort(key=rank)
    head = [i for i in items[:6] if rank(i) < 6]
    if len(head) == 6:  # worker 1 gets positions 0-1, worker 2 positions 2-3, worker 3 positions 4-5
        items[:6] = [head[0], head[3], head[1], head[4], head[2], head[5]]


_EARLY_BUILD: list[Any] = []  # the controller's lock and thread, referenced while the session runs


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist the controller runs no test, so it builds ``world_vectors`` in a thread from
    the start, holding the lock the workers' fixture takes: the ~1 min of embedding overlaps the
    workers' start and their first tests (the demo's and the browser's, which mostly wait on their own
    processes) instead of stalling the first worker whose test needs the vectors."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not session.config.getoption("numprocesses", None):
        return
    import fcntl
    import threading

    factory: pytest.TempPathFactory = session.config._tmp_path_factory  # type: ignore[attr-defined]
    shared = factory.getbasetemp()
    target = shared / "world-vectors.sqlite"
    lock = (shared / "world-vectors.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a worker got there first and builds them
        lock.close()
        return

    def build() -> None:
        try:
            if target.exists():
                return
            world = factory.mktemp("world-early")
            write_world(world)
            _publish_world_vectors(world, factory, target)
        finally:  # on failure, the first worker that needs the vectors builds them itself
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    thread = threading.Thread(target=build, name="world-vectors", daemon=True)
    _EARLY_BUILD.append(thread)
    thread.start()


@pytest.fixture(scope="session")
def world_vectors(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding cache holding what every cycle on the world embeds: its complaints (triage),
    its knowledge before and after the corrections (index versions), and the golden and complaint
    queries (retrieval). A test's home starts from a copy, so it computes only the vectors of what
    it adds. Vectors are keyed by model and text, so a copied one is that text's vector; the
    embedding tests themselves start from an empty cache. Saves ~40 s of a ~90 s cycle test.

    Under pytest-xdist the controller builds it while the workers run their first tests
    (``pytest_sessionstart``), and a worker that needs it first waits for it (the workers' temporary
    directories are inside the controller's); without xdist, the first test that needs it builds it."""
    import fcntl

    shared = shared_tmp(tmp_path_factory)
    target = shared / "world-vectors.sqlite"
    with (shared / "world-vectors.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _publish_world_vectors(world, tmp_path_factory, target)
    return target


def _publish_world_vectors(world: Path, tmp_path_factory: pytest.TempPathFactory, target: Path) -> None:
    """Build the cache and put it at ``target`` whole (a reader never sees a partial copy)."""
    built = _build_world_vectors(world, tmp_path_factory)
    shutil.copy(built, target.with_suffix(".partial"))
    os.replace(target.with_suffix(".partial"), target)


def _build_world_vectors(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache of ``world_vectors``, built in a home of its own. Nothing here changes the process's
    environment: under pytest-xdist the controller builds it in a thread while it starts the workers
    (``pytest_sessionstart``), and they must not inherit a FLYWHEEL_HOME."""
    from flywheel.embeddings import open_embedder
    from flywheel.feedback.ingest import ingest_files
    from flywheel.feedback.store import open_store
    from flywheel.knowledge.source import chunks_of
    from flywheel.loop.embedding import texts_to_embed

    home = tmp_path_factory.mktemp("world-vectors")
    corrected = shutil.copytree(world / "knowledge", home / "knowledge")
    for doc in (world / "knowledge_updates").iterdir():
        shutil.copy(doc, corrected / doc.name)
    settings = load_settings(home=str(home / "home"), knowledge_source=str(corrected))
    settings.ensure_home()
    with open_store(settings.resolved_store_url) as store:
        ingest_files([str(world / "feedback.jsonl")], store, settings.quarantine_dir, settings.ingest)
    texts = texts_to_embed(settings, runtime_for(settings).feedback)  # triage's texts, the corrected chunks
    texts += [c.text for c in chunks_of(world / "knowledge", settings.knowledge.chunk_chars)]
    texts += [i.input for i in load_golden(world / "golden.jsonl").items]
    with open_store(settings.resolved_store_url) as store:
        texts += [e.query for e in store.events(polarity=-1)]
    with open_embedder(settings) as embedder:
        embedder.embed(list(dict.fromkeys(texts)))
    return settings.embedding_cache_path


def seed_world_vectors(world_vectors: Path, settings: Settings) -> None:
    """Start ``settings``' home with the world's embedding cache (see ``world_vectors``)."""
    settings.embedding_cache_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(world_vectors, settings.embedding_cache_path)


@pytest.fixture(scope="session")
def loop_golden(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every other item of the world's golden set (114 of 228: each category, each intent several
    times). A cycle answers and grades the golden set for the champion and every candidate, about a
    third of its CPU; the gate's evidence still holds at this size (its intervals widen by ~1.4x).
    ``test_demo.py`` runs the whole set."""
    path = tmp_path_factory.mktemp("loop-golden") / "golden.jsonl"
    path.write_text("".join((world / "golden.jsonl").read_text().splitlines(keepends=True)[::2]))
    return path


@pytest.fixture
def loop(
    cli,
    world: Path,
    world_vectors: Path,
    loop_golden: Path,
    sim_env: Simulator,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict:
    """A state directory with the world's prompt in production and its feedback ingested; the golden
    set is ``loop_golden`` (``loop["golden"]``)."""
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(loop_golden))
    monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "0")
    monkeypatch.setenv("FLYWHEEL_LLM_MAX_RETRIES", "1")
    monkeypatch.setenv("FLYWHEEL_USER", "tester")
    seed_world_vectors(world_vectors, load_settings())
    start = cli("prompt", "set", str(world / "prompt.txt"), "--json")
    knowledge = shutil.copytree(world / "knowledge", Path("knowledge"))
    monkeypatch.setenv("FLYWHEEL_KNOWLEDGE_SOURCE", str(knowledge))
    cli("kb", "sync", "--json")
    for doc in (world / "knowledge_updates").iterdir():  # the source of truth is corrected; the index is not
        shutil.copy(doc, knowledge / doc.name)
    cli("ingest", str(world / "feedback.jsonl"), "--json")
    return {"start_version": start["version"], "world": world, "golden": loop_golden, "sim": sim_env}
