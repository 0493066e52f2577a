"""The feedback store's schema over time: Alembic migrations on open, an old SQLite store (from
before Alembic, ``PRAGMA user_version`` 1 or 2) upgraded in place with its events, a newer store
refused, and the tables the code queries equal to what the migrations build, on both dialects."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from conftest import event, write_jsonl
from flywheel.errors import FlywheelError
from flywheel.feedback.engine import store_url
from flywheel.feedback.migrate import head_revision
from flywheel.feedback.store import SCHEMA_VERSION, open_store
from flywheel.feedback.tables import metadata

# The pre-Alembic store's migrations, exactly as that Flywheel ran them (frozen here: the old
# files in users' homes were made by this SQL).
LEGACY_MIGRATIONS: tuple[str, ...] = (
    # 1: events
    """
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        ts TEXT NOT NULL,
        ts_epoch REAL NOT NULL,
        signal TEXT NOT NULL,
        polarity INTEGER NOT NULL,
        strength REAL NOT NULL,
        user_id TEXT,
        session_id TEXT,
        consent INTEGER NOT NULL,
        prompt_version TEXT,
        model TEXT,
        confidence REAL,
        reason TEXT,
        query TEXT NOT NULL,
        output TEXT NOT NULL,
        comment TEXT,
        correction TEXT,
        final_text TEXT,
        value REAL,
        context_ids TEXT,
        metadata TEXT,
        pii_scrubbed TEXT,
        source TEXT,
        ingested_at REAL NOT NULL
    );
    CREATE INDEX events_polarity_ts ON events (polarity, ts_epoch);
    CREATE INDEX events_ingested ON events (ingested_at);
    """,
    # 2: which index version and which arm (production or canary) served the output (SPEC's optional fields)
    """
    ALTER TABLE events ADD COLUMN index_version TEXT;
    ALTER TABLE events ADD COLUMN arm TEXT;
    """,
)


_OLD_ROW = (
    "INSERT INTO events (event_id, ts, ts_epoch, signal, polarity, strength, consent, query, output, "
    "ingested_at, metadata) VALUES (?, '2026-11-01T00:00:00+00:00', 1761955200.0, 'thumbs_down', -1, 1.0, "
    "1, 'old query', 'old answer', 1.0, '{\"k\": \"v\"}')"
)


def _old_store(path: Path, version: int, event_ids: list[str]) -> None:
    """A store file as the old code left it at ``PRAGMA user_version`` ``version``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    for number in range(1, version + 1):
        db.executescript(f"BEGIN; {LEGACY_MIGRATIONS[number - 1]}; PRAGMA user_version = {number}; COMMIT;")
    db.executemany(_OLD_ROW, [(i,) for i in event_ids])
    db.commit()
    db.close()


def test_schema_revision_is_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_VERSION


def test_a_new_store_is_at_the_newest_revision_and_a_second_open_changes_nothing(any_store_url: str) -> None:
    with open_store(any_store_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.add([], "nothing")
    with open_store(any_store_url) as store:
        assert store.schema_version == SCHEMA_VERSION and store.counts()["events"] == 0


def test_the_tables_the_code_queries_equal_what_the_migrations_build(any_store_url: str) -> None:
    open_store(any_store_url).close()
    engine = create_engine(store_url(any_store_url))
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    engine.dispose()
    assert differences == []


def test_a_sqlite_store_stays_in_wal_mode(settings) -> None:
    settings.ensure_home()
    open_store(settings.resolved_store_url).close()
    db = sqlite3.connect(settings.store_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_sqlite_store_is_upgraded_in_place_without_losing_events(
    settings, tmp_path: Path, cli, version: int
) -> None:
    old_ids = [f"old{i}" for i in range(25)]
    _old_store(settings.store_path, version, old_ids)
    out = cli(
        "ingest",
        str(write_jsonl(tmp_path / "fb.jsonl", [event("new", arm="production", index_version="4"), event("old3")])),
        "--json",
    )
    assert (out["accepted"], out["duplicates"]) == (1, 1)  # the old events still count for idempotency
    with open_store(settings.resolved_store_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        stored = {e.event_id: e for e in store.events()}
    assert set(stored) == {*old_ids, "new"}
    old = stored["old0"]
    assert (old.query, old.metadata, old.consent, old.polarity) == ("old query", {"k": "v"}, True, -1)
    assert (old.index_version, old.arm) == (None, None)
    assert (stored["new"].index_version, stored["new"].arm) == ("4", "production")


def test_a_store_newer_than_this_flywheel_is_refused(any_store_url: str) -> None:
    open_store(any_store_url).close()
    engine = create_engine(store_url(any_store_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9001'"))
    engine.dispose()
    with pytest.raises(FlywheelError, match="revision 9001, newer than this Flywheel"):
        open_store(any_store_url)


def test_an_old_sqlite_store_of_an_unknown_version_is_refused(settings) -> None:
    _old_store(settings.store_path, 2, ["a"])
    db = sqlite3.connect(settings.store_path)
    db.execute("PRAGMA user_version = 3")
    db.close()
    with pytest.raises(FlywheelError, match="version 3, newer than this Flywheel"):
        open_store(settings.resolved_store_url)


def test_a_corrupted_store_gives_a_clear_error(cli, settings, tmp_path: Path) -> None:
    settings.ensure_home()
    settings.store_path.write_bytes(b"this is not a database" * 100)
    out = cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", [event("e1")])), "--json", expect=1)
    assert str(settings.store_path) in out["error"] and "\n" not in out["error"]
