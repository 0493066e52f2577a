"""Who was asked for feedback today and who opted out: tables beside the feedback store, shared
by every ``serve`` worker (and host, on a shared database). A database that cannot serve now is
:class:`~flywheel.errors.StoreUnavailable`, as the store's own failures are.

Users are kept as SHA-256 hashes of their ids: equality is all the policy needs, and a user id
may be an e-mail address. The tables are the feedback store's (flywheel/feedback/tables.py, its
migration 0003), on the same database.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import date
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from flywheel.feedback.engine import create_store_engine, describe, store_errors, store_url
from flywheel.feedback.migrate import migrate
from flywheel.feedback.tables import ask_counts, opt_outs


def user_key(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


class AskLedger:
    """Asks per user and day, opt-outs; every check-and-count is one conditional write, so several
    workers never ask a user more than the cap between them."""

    def __init__(self, url: str, timeout: float = 5.0, *, engine: Callable[[], Engine] | None = None) -> None:
        """``engine``: the process's feedback store's engine (opened and migrated by it on first call),
        shared instead of an engine of the ledger's own."""
        self.url = store_url(url)
        self._shared = engine
        self._engine = create_store_engine(self.url, timeout) if engine is None else None
        self._migrated = False
        # SQLite: this process's writers take turns here rather than in SQLite's busy handler (slow under threads).
        self._turn: AbstractContextManager[Any] = (
            threading.Lock() if self.url.get_backend_name() == "sqlite" else nullcontext()
        )

    @property
    def engine(self) -> Engine:
        """The engine, the store migrated (its tables are the store's, migration 0003) on first use: a
        store busy at a server's start is no reason not to start; the first request that needs the
        tables migrates it, or answers 503."""
        if self._shared is not None:
            return self._shared()
        assert self._engine is not None
        if not self._migrated:
            with store_errors(self.url, "opened"):
                migrate(self._engine, describe(self.url))
            self._migrated = True
        return self._engine

    def _writing(self) -> Any:
        """A write transaction (on SQLite it takes the write lock up front: never fails half-way)."""
        return self.engine.connect().execution_options(flywheel_write=True)

    def opted_out(self, user_id: str) -> bool:
        with store_errors(self.url, "read"), self.engine.connect() as c:
            return (
                c.execute(select(opt_outs.c.user_key).where(opt_outs.c.user_key == user_key(user_id))).first()
                is not None
            )

    def opt_out(self, user_id: str) -> bool:
        """Record the opt-out; False when it was recorded before."""
        with store_errors(self.url, "written"):
            try:
                with self._turn, self._writing() as c, c.begin():
                    c.execute(insert(opt_outs).values(user_key=user_key(user_id), at=time.time()))
            except IntegrityError:
                return False
        return True

    def asks(self, user_id: str, day: date) -> int:
        with store_errors(self.url, "read"), self.engine.connect() as c:
            row = c.execute(
                select(ask_counts.c.asks).where(
                    ask_counts.c.user_key == user_key(user_id), ask_counts.c.day == day.isoformat()
                )
            ).first()
        return row[0] if row else 0

    def take_ask(self, user_id: str, day: date, cap: int) -> bool:
        """Count one ask of the user on ``day`` unless ``cap`` asks are counted already; True when counted."""
        if cap <= 0:
            return False
        key, today = user_key(user_id), day.isoformat()
        with self._turn, store_errors(self.url, "written"):
            return self._take(key, today, cap)

    def _take(self, key: str, today: str, cap: int) -> bool:
        if self._increment(key, today, cap):
            return True
        try:
            with self._writing() as c, c.begin():  # the user's first ask today; their older days go
                c.execute(delete(ask_counts).where(ask_counts.c.user_key == key, ask_counts.c.day < today))
                c.execute(insert(ask_counts).values(user_key=key, day=today, asks=1))
            return True
        except IntegrityError:  # another worker counted the first one meanwhile
            return self._increment(key, today, cap)

    def _increment(self, key: str, today: str, cap: int) -> bool:
        with self._writing() as c, c.begin():
            done = c.execute(
                update(ask_counts)
                .where(ask_counts.c.user_key == key, ask_counts.c.day == today, ask_counts.c.asks < cap)
                .values(asks=ask_counts.c.asks + 1)
            )
            asked: bool = done.rowcount == 1
            return asked

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
