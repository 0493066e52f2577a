"""The state store's schema over time: Alembic on open, an existing ``state.sqlite`` written by the
raw-SQL store (``PRAGMA user_version`` 1 to 4) adopted in place with its rows, a newer store refused,
the tables the code queries equal to what the migrations build, and the same store on PostgreSQL
(alone, or sharing the feedback store's database)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from flywheel.candidates import Candidate
from flywheel.config import load_settings
from flywheel.errors import FlywheelError
from flywheel.feedback.engine import store_url
from flywheel.feedback.store import open_store
from flywheel.schema_migrations import head_revision
from flywheel.state import KbRecord, StateStore, open_state
from flywheel.state.migrate import STATE_SCHEMA
from flywheel.state.tables import SCHEMA_REVISION, metadata

# The raw-SQL state store's migrations, exactly as that Flywheel ran them (frozen here: the
# state.sqlite files in users' homes were made by this SQL, one script per PRAGMA user_version).
LEGACY_MIGRATIONS: tuple[str, ...] = (
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


_CANDIDATE = (
    '{"candidate_id": "prompt-old", "cycle_id": "cyc-old", "kind": "prompt", "cluster_ids": ["fmt-1"], '
    '"parent": "1", "version": "2", "decision": "pending_approval", "payload": {"template": "t"}}'
)


def _old_state(path: Path, version: int) -> None:
    """A state.sqlite as the old code left it at ``PRAGMA user_version`` ``version``, with rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    for number in range(1, version + 1):
        db.executescript(f"BEGIN; {LEGACY_MIGRATIONS[number - 1]}; PRAGMA user_version = {number}; COMMIT;")
    db.execute(
        "INSERT INTO cycles VALUES ('cyc-old', 100.0, 160.0, 'done', 'g-old', 0.5, '{\"clusters\": [{\"id\": 1}]}')"
    )
    db.execute(
        "INSERT INTO candidates VALUES ('prompt-old', 'cyc-old', 'prompt', ?, 'pending_approval', 120.0)", (_CANDIDATE,)
    )
    db.execute(
        "INSERT INTO promotions (kind, action, from_version, to_version, candidate_id, at, by, note) "
        "VALUES ('prompt', 'promote', '1', '2', 'prompt-old', 150.0, 'ann', 'looks good')"
    )
    db.execute("INSERT INTO cluster_attempts VALUES ('fmt-1', 'cyc-old', 'prompt', 'prompt-old', 'rejected', 130.0)")
    db.execute("INSERT INTO eval_cache VALUES ('k1', 110.0, '{\"score\": 0.75}')")
    if version >= 2:
        db.execute("INSERT INTO kb_versions VALUES (1, 90.0, NULL, 'docs', 1, 1, 'active', 'kb sync', '{}')")
        db.execute("INSERT INTO kb_records VALUES ('r1', 'doc#0', 'doc', 'old text', 'docs/doc.md', '')")
        db.execute("INSERT INTO kb_members VALUES (1, 'r1')")
        db.execute("INSERT INTO pointers VALUES ('active_index', '1')")
    if version >= 3:
        db.execute(
            "INSERT INTO finetune_jobs VALUES ('job-1', 'ds1', 'base', 'cyc-old', 'fmt-1', 'running', NULL, "
            'NULL, NULL, \'{"job_id": "job-1", "status": "running"}\', 100.0, 100.0)'
        )
    db.commit()
    db.close()


def test_schema_revision_is_the_newest_migration() -> None:
    assert head_revision(STATE_SCHEMA) == SCHEMA_REVISION


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_old_state_file_is_adopted_in_place_with_its_rows(flywheel_home: Path, version: int) -> None:
    _old_state(flywheel_home / "state.sqlite", version)
    with open_state(flywheel_home) as state:
        assert state.schema_version == SCHEMA_REVISION
        assert state.last_finished_cycle() == "cyc-old" and state.last_cycle_clusters() == [{"id": 1}]
        candidate = state.candidate("prompt-old")
        assert candidate is not None and candidate.decision == "pending_approval"
        assert [c.candidate_id for c in state.candidates(decision="pending_approval")] == ["prompt-old"]
        promotion = state.promotions("prompt")[0]
        assert (promotion["id"], promotion["to_version"], promotion["by"]) == (1, "2", "ann")
        assert state.prompt_failed_clusters() == {"fmt-1"}
        assert state.cached_eval("k1") == {"score": 0.75}
        # the new code writes beside the old rows: ids continue, upserts replace
        state.record_promotion("prompt", "rollback", "2", "1", None, "bob", None)
        assert [p["id"] for p in state.promotions()] == [1, 2]
        state.start_cycle("cyc-new")
        assert state.unfinished_cycle() == "cyc-new"
        if version >= 2:
            assert state.pointer("active_index") == "1"
            assert [v.version for v in state.kb_versions()] == [1]
            assert [r.text for r in state.kb_members(1)] == ["old text"]
        if version >= 3:
            assert state.finetune_job(job_id="job-1") == {"job_id": "job-1", "status": "running"}
        assert state.proposals() == []  # golden_proposals made by the upgrade (version < 4) or already there
    with open_state(flywheel_home) as state:  # reopening changes nothing
        assert state.schema_version == SCHEMA_REVISION and len(state.promotions()) == 2


def test_an_old_state_file_of_an_unknown_version_is_refused(flywheel_home: Path) -> None:
    _old_state(flywheel_home / "state.sqlite", 4)
    db = sqlite3.connect(flywheel_home / "state.sqlite")
    db.execute("PRAGMA user_version = 5")
    db.close()
    with pytest.raises(FlywheelError, match=r"state store .* has schema version 5, newer than this Flywheel"):
        open_state(flywheel_home)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_state_url(request: pytest.FixtureRequest, flywheel_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{flywheel_home / 'state.sqlite'}"
    server = request.getfixturevalue("postgres")
    return server.url(server.create_database())


def test_the_tables_the_code_queries_equal_what_the_migrations_build(any_state_url: str) -> None:
    StateStore(any_state_url).close()
    engine = create_engine(store_url(any_state_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": STATE_SCHEMA.version_table}
        )
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_a_state_store_newer_than_this_flywheel_is_refused(any_state_url: str) -> None:
    StateStore(any_state_url).close()
    engine = create_engine(store_url(any_state_url))
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {STATE_SCHEMA.version_table} SET version_num = '9001'"))
    engine.dispose()
    with pytest.raises(FlywheelError, match=r"state store .* revision 9001, newer than this Flywheel"):
        StateStore(any_state_url)


def test_every_kind_of_state_round_trips_on_each_dialect(any_state_url: str) -> None:
    cand = Candidate(
        candidate_id="c1",
        cycle_id="cy1",
        kind="prompt",
        cluster_ids=["a"],
        parent="1",
        version="2",
        decision="pending_approval",
        payload={"template": "x"},
    )
    with StateStore(any_state_url) as state:
        state.start_cycle("cy1")
        state.start_cycle("cy1")  # a resumed cycle: one row
        assert state.add_candidate(cand) and not state.add_candidate(cand)
        state.save_candidate(Candidate.model_validate(cand.model_dump() | {"decision": "promoted"}))
        state.save_drafts("cy1", "a", {"n": 1})
        state.save_drafts("cy1", "a", {"n": 2})
        state.cache_eval("k", {"s": 1})
        state.cache_eval("k", {"s": 2})
        for outcome in ("rejected", "no_improvement"):
            state.record_attempt("a", "cy1", "prompt", f"c-{outcome}", outcome)
        state.record_attempt("b", "cy1", "prompt", "c-b", "rejected")
        state.record_attempt("b", "cy2", "prompt", "c-b2", "promoted")
        state.save_finetune_job({"job_id": "j", "dataset_version": "d", "base_model": "m", "status": "running"})
        state.save_finetune_job({"job_id": "j", "dataset_version": "d", "base_model": "m", "status": "succeeded"})
        state.finish_cycle("cy1", "done", "g", 0.5, {"clusters": [{"id": "a"}]})
        state.kb_add_version(
            1, [KbRecord("r1", "d#0", "d", "t", None, None)] * 2, parent=None, source="s", documents=1, note="n"
        )
        state.kb_add_version(
            2, [KbRecord("r2", "d#0", "d", "t2", "s", "u")], parent=1, source="s", documents=1, note="n"
        )
        state.kb_activate(2, None)
        assert state.kb_delete_versions([1]) == ["r1"]
        state.kb_forget_records(["r1"])

        assert [(c["cycle_id"], c["status"]) for c in state.cycles()] == [("cy1", "done")]
        assert state.candidate("c1").decision == "promoted"  # type: ignore[union-attr]
        assert (state.drafts("cy1", "a"), state.cached_eval("k")) == ({"n": 2}, {"s": 2})
        assert state.prompt_failed_clusters() == {"a"}
        assert state.promoted_at("b", "prompt") is not None and state.promoted_at("a", "prompt") is None
        assert [j["status"] for j in state.finetune_jobs()] == ["succeeded"]
        assert [j["job_id"] for j in state.finetune_jobs(open_only=True)] == ["j"]  # no model version yet
        assert [(v.version, v.status) for v in state.kb_versions()] == [(1, "deleted"), (2, "active")]
        assert [r.record_id for r in state.kb_records()] == ["r2"] and state.kb_latest_version() == 2


def test_on_postgres_the_state_store_shares_the_feedback_stores_database(postgres, monkeypatch) -> None:
    url = postgres.url(postgres.create_database())
    monkeypatch.setenv("FLYWHEEL_STORE_URL", url)
    settings = load_settings()
    assert settings.resolved_state_url == url
    open_store(settings.resolved_store_url).close()
    with open_state(settings.home, settings.resolved_state_url) as state:
        state.set_pointer("active_index", "3")
    with open_store(settings.resolved_store_url) as store:
        assert store.counts()["events"] == 0  # both migrated, neither confused by the other's tables
    engine = create_engine(store_url(url))
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert {"events", "alembic_version", "cycles", "pointers", STATE_SCHEMA.version_table} <= tables
    assert not (settings.home / "state.sqlite").exists()


def test_a_sqlite_feedback_store_leaves_the_state_in_its_own_file(flywheel_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_STORE_URL", f"sqlite:///{flywheel_home / 'elsewhere.sqlite'}")
    assert load_settings().resolved_state_url == f"sqlite:///{flywheel_home / 'state.sqlite'}"
    monkeypatch.setenv("FLYWHEEL_STATE_URL", "postgresql://u@db/state")
    assert load_settings().resolved_state_url == "postgresql://u@db/state"
