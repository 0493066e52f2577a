"""Store outages are one typed error, StoreUnavailable, whichever store meets them: the faces catch
that type (503 with Retry-After, exit 1), never a driver's exception by name."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.errors import FlywheelError, StoreUnavailable
from flywheel.sqlite_util import GuardedConnection, open_migrated
from flywheel.state import StateStore
from live_server import LiveServer, make_key


def _locked(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock of the database at ``path``."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_sqlite_database_is_store_unavailable_and_a_bad_statement_is_not(tmp_path: Path) -> None:
    path = tmp_path / "seen.sqlite"
    open_migrated(path, ("CREATE TABLE seen (sha256 TEXT PRIMARY KEY)",), "quarantine index").close()
    holder = _locked(path)
    db = GuardedConnection(sqlite3.connect(path, timeout=0, check_same_thread=False), "quarantine index", path)
    with pytest.raises(StoreUnavailable, match=f"quarantine index {path} is unavailable: database is locked"), db:
        db.execute("INSERT INTO seen VALUES ('x')")
    holder.rollback()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):  # a bug, not an outage
        db.execute("SELECT * FROM no_such_table")
    with db:
        db.execute("INSERT INTO seen VALUES ('x')")
    assert db.execute("SELECT sha256 FROM seen").fetchone() == ("x",)
    db.close()
    holder.close()


def test_a_locked_state_store_is_store_unavailable_and_its_rows_survive(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateStore(path) as state:
        state.set_pointer("active_index", "1")
    holder = _locked(path)
    try:
        with StateStore(f"sqlite:///{path}", lock_timeout=0.1) as state:
            with pytest.raises(StoreUnavailable, match=f"state store {path} is unavailable: database is locked"):
                state.set_pointer("active_index", "2")
            assert state.pointer("active_index") == "1"  # readers never wait (WAL)
    finally:
        holder.rollback()
        holder.close()
    with StateStore(path) as state:
        state.set_pointer("active_index", "2")
        assert state.pointer("active_index") == "2"


def test_an_unreachable_postgres_state_store_is_store_unavailable_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        StoreUnavailable, match=f"state store postgresql://fw@127.0.0.1:{port}/flywheel is unavailable"
    ) as caught:
        StateStore(f"postgresql://fw:hunter2-secret@127.0.0.1:{port}/flywheel?connect_timeout=2")
    assert "hunter2-secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_that_is_no_database_is_a_lasting_error_not_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "seen.sqlite"
    path.write_bytes(b"not a database, and waiting will not make it one" * 100)
    with pytest.raises(FlywheelError, match=f"quarantine index {path} cannot be opened") as caught:
        open_migrated(path, ("CREATE TABLE t (x)",), "quarantine index")
    assert not isinstance(caught.value, StoreUnavailable)


def test_the_service_answers_503_when_the_ask_ledger_cannot_write(cli, monkeypatch) -> None:
    """The ledger shares the feedback store's database: its outage is the same typed error, the same 503."""
    monkeypatch.setenv("FLYWHEEL_SERVE__STORE_TIMEOUT_SECONDS", "0.2")
    settings = load_settings()
    key = make_key(cli, "product", "read")
    with LiveServer(settings) as live:
        assert live.http(key).post("/v1/opt-out", json={"user_id": "warm-up"}).status_code == 200  # migrated
        holder = _locked(settings.store_path)
        try:
            busy = live.http(key).post("/v1/opt-out", json={"user_id": "ann"})
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert live.http(key).post("/v1/opt-out", json={"user_id": "ann"}).json()["new"] is True
