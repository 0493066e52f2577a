"""The ``api_keys`` table: the live service's keys as salted hashes, one row per key id.
``flywheel/keys.py`` makes and checks keys (hashing, the memo of verified keys) and calls these;
this module writes the SQL. Its own connection: a server reads one row per request, from any
thread, on one engine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass

from sqlalchemy import bindparam, select, update

from flywheel.errors import StoreUnavailable
from flywheel.feedback.engine import (
    LOCK_TIMEOUT_SECONDS,
    create_store_engine,
    store_errors,
)
from flywheel.state.base import WHAT, StateConnection
from flywheel.state.tables import api_keys
from flywheel.state.upsert import insert_ignore


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One stored key: its id, name, scope, salt and hash (hex), when made and revoked (epoch s)."""

    key_id: str
    name: str
    scope: str
    salt: str
    hash: str
    created_at: float
    revoked_at: float | None


_COLUMNS = [api_keys.c[name] for name in KeyRow.__slots__]
_BY_ID = select(*_COLUMNS).where(api_keys.c.key_id == bindparam("key_id"))  # built once: its cache key too


class KeyRows(StateConnection):
    """Queries on ``api_keys``."""

    def __init__(self, where: str, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        super().__init__(where, lock_timeout)
        # On Postgres the per-request read has its own lean engine (autocommit, no pre-ping): one round
        # trip, not four (ping, BEGIN, SELECT, ROLLBACK). SQLite has no round trips: the same engine.
        self._lean = (
            self._engine if self.path is not None else create_store_engine(self.url, lock_timeout, lean_reads=True)
        )

    def key(self, key_id: str) -> KeyRow | None:
        """The row of one id (a primary-key read: what every request costs). A connection the server
        dropped (a restart) fails once and is replaced: the read is tried once more."""
        for attempt in (1, 2):
            try:
                with store_errors(self.url, "read", WHAT), self._lean.connect() as conn:
                    row = conn.execute(_BY_ID, {"key_id": key_id}).first()
                return KeyRow(*row) if row else None
            except StoreUnavailable:
                if attempt == 2 or self._lean is self._engine:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._lean is not self._engine:
            self._lean.dispose()
        super().close()

    def all_keys(self) -> list[KeyRow]:
        with self._read() as conn:
            return [KeyRow(*r) for r in conn.execute(select(*_COLUMNS).order_by(api_keys.c.created_at))]

    def readable(self) -> None:
        """Raise if the table cannot be read now (for readiness)."""
        with self._read() as conn:
            conn.execute(select(api_keys.c.key_id).limit(1)).first()

    def add_key(self, row: KeyRow) -> bool:
        """Insert ``row`` unless an active key has its name (checked in the same write transaction)."""
        k = api_keys.c
        with self._write() as conn:
            if conn.execute(select(k.key_id).where(k.name == row.name, k.revoked_at.is_(None))).first():
                return False
            conn.execute(api_keys.insert().values(dict(zip(KeyRow.__slots__, astuple(row), strict=True))))
        return True

    def revoke_keys(self, name: str) -> int:
        """Mark the active keys named ``name`` revoked now; how many there were."""
        k = api_keys.c
        with self._write() as conn:
            done = conn.execute(
                update(api_keys).where(k.name == name, k.revoked_at.is_(None)).values(revoked_at=time.time())
            )
        return int(done.rowcount)

    def import_keys(self, rows: Sequence[KeyRow]) -> int:
        """Insert rows whose id is new (an id already stored keeps its row); how many were new."""
        added = 0
        with self._write() as conn:
            for row in rows:
                values = dict(zip(KeyRow.__slots__, astuple(row), strict=True))
                added += conn.execute(insert_ignore(conn, api_keys, ["key_id"]).values(values)).rowcount
        return added
