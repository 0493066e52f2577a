"""Who was asked for feedback today and who opted out: tables beside the feedback store, shared
by every ``serve`` worker (and host, on a shared database).

Users are kept as SHA-256 hashes of their ids: equality is all the policy needs, and a user id
may be an e-mail address. The tables are SQLAlchemy Core, created on open when missing; they
belong in the store's migrations once the store has them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import date
from typing import Any

from sqlalchemy import (Column, Engine, Float, Integer, MetaData, String, Table, create_engine, delete, event, insert,
                        inspect, select, update)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

metadata = MetaData()

ask_counts = Table(
    "serve_ask_counts", metadata,
    Column("user_key", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC date, ISO
    Column("asks", Integer, nullable=False),
)
opt_outs = Table(
    "serve_opt_outs", metadata,
    Column("user_key", String(64), primary_key=True),
    Column("at", Float, nullable=False),
)


def user_key(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def sqlalchemy_url(store_url: str) -> str:
    """The store URL as SQLAlchemy reads it (a plain path is a SQLite file)."""
    return store_url if "://" in store_url else f"sqlite:///{store_url}"


def _engine(store_url: str, timeout: float) -> Engine:
    url = sqlalchemy_url(store_url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    return engine


class AskLedger:
    """Asks per user and day, opt-outs; every check-and-count is one conditional write, so several
    workers never ask a user more than the cap between them."""

    def __init__(self, store_url: str, timeout: float = 5.0) -> None:
        self._engine = _engine(store_url, timeout)
        self._created = False
        # SQLite: this process's writers take turns here rather than in SQLite's busy handler (slow under threads).
        self._turn: AbstractContextManager[Any] = \
            threading.Lock() if self._engine.dialect.name == "sqlite" else nullcontext()

    @property
    def engine(self) -> Engine:
        """The engine, the tables created on first use (a store busy at a server's start is no reason
        not to start: the first request that needs them creates them, or answers 503)."""
        if not self._created:
            for table in metadata.sorted_tables:
                try:
                    table.create(self._engine, checkfirst=True)
                except (OperationalError, ProgrammingError):  # another worker created it between check and create
                    if not inspect(self._engine).has_table(table.name):
                        raise
            self._created = True
        return self._engine

    def opted_out(self, user_id: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(select(opt_outs.c.user_key).where(opt_outs.c.user_key == user_key(user_id))).first() \
                is not None

    def opt_out(self, user_id: str) -> bool:
        """Record the opt-out; False when it was recorded before."""
        try:
            with self._turn, self.engine.begin() as c:
                c.execute(insert(opt_outs).values(user_key=user_key(user_id), at=time.time()))
        except IntegrityError:
            return False
        return True

    def asks(self, user_id: str, day: date) -> int:
        with self.engine.connect() as c:
            row = c.execute(select(ask_counts.c.asks).where(ask_counts.c.user_key == user_key(user_id),
                                                            ask_counts.c.day == day.isoformat())).first()
        return row[0] if row else 0

    def take_ask(self, user_id: str, day: date, cap: int) -> bool:
        """Count one ask of the user on ``day`` unless ``cap`` asks are counted already; True when counted."""
        if cap <= 0:
            return False
        key, today = user_key(user_id), day.isoformat()
        with self._turn:
            return self._take(key, today, cap)

    def _take(self, key: str, today: str, cap: int) -> bool:
        if self._increment(key, today, cap):
            return True
        try:
            with self.engine.begin() as c:  # the user's first ask today; their older days go
                c.execute(delete(ask_counts).where(ask_counts.c.user_key == key, ask_counts.c.day < today))
                c.execute(insert(ask_counts).values(user_key=key, day=today, asks=1))
            return True
        except IntegrityError:  # another worker counted the first one meanwhile
            return self._increment(key, today, cap)

    def _increment(self, key: str, today: str, cap: int) -> bool:
        with self.engine.begin() as c:
            done = c.execute(update(ask_counts)
                             .where(ask_counts.c.user_key == key, ask_counts.c.day == today, ask_counts.c.asks < cap)
                             .values(asks=ask_counts.c.asks + 1))
            return done.rowcount == 1

    def close(self) -> None:
        self._engine.dispose()
