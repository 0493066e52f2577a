"""The feedback store: SQLite (one host, the default) or Postgres (several writers), by its URL.

One code path on SQLAlchemy Core serves both; the schema is migrated with Alembic on open
(``migrate.py``), so an old ``$FLYWHEEL_HOME`` is upgraded in place when a newer Flywheel opens it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Insert, Row, Select, String, case, func, literal, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite

from flywheel.errors import FlywheelError
from flywheel.feedback.engine import LOCK_TIMEOUT_SECONDS, create_store_engine, describe, store_errors, store_url
from flywheel.feedback.migrate import current_revision, migrate
from flywheel.feedback.rated import RatedColumns
from flywheel.feedback.rows import ROW_ERRORS, Unstorable, as_json, check_row, database_refusal, utc
from flywheel.feedback.tables import SCHEMA_REVISION
from flywheel.feedback.tables import events as events_table
from flywheel.schemas import StoredEvent

SCHEMA_VERSION = SCHEMA_REVISION  # the Alembic revision a store is at once opened
_STREAM_BATCH = 2000  # rows per fetch when streaming events
_GET_CHUNK = 500  # ids per IN (...) lookup


@dataclass(frozen=True, slots=True)
class Refused:
    """One event the store would not keep: its position in the events given, and why (no value quoted)."""

    position: int
    error: str


@dataclass(frozen=True, slots=True)
class NewIds:
    """Events stored after a mark. ``exact``: exactly those (SQLite: by rowid, which its single writer
    hands out in commit order); otherwise (Postgres: by ``ingested_at``, re-reading ``MARK_SLACK``
    seconds, as a slow transaction commits rows stamped before others) some may have been seen."""

    ids: list[str]
    mark: float
    exact: bool


MARK_SLACK = 300.0  # seconds re-read before a Postgres mark


@dataclass(slots=True)
class AddResult:
    """What :meth:`FeedbackStore.add_each` did: the events it stored new, and those it refused."""

    new: list[StoredEvent] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


class FeedbackStore(Protocol):
    """What the rest of Flywheel needs from a feedback store."""

    where: str  # which store, for messages (and what incremental triage's clusters were made from)

    def add(self, events: Sequence[StoredEvent], source: str) -> list[StoredEvent]:
        """Store events not seen before (by ``event_id``) in one transaction; return those that were new.

        Exactly this call's new events, whatever other writers store meanwhile: the counts an ingest
        reports (and the Prefect events it sends) are its own. An event the store cannot keep fails
        the whole call, before anything is written."""

    def add_each(self, events: Sequence[StoredEvent], source: str) -> AddResult:
        """Store what can be stored: like :meth:`add`, but an event the store cannot keep (a time out
        of range, a NUL, a value the database refuses) is refused alone, the others are stored."""

    def events(self, *, polarity: int | None = None, since: datetime | None = None) -> Iterator[StoredEvent]:
        """Stored events, oldest first, optionally only one polarity or those after ``since``."""

    def get(self, event_ids: Iterable[str]) -> list[StoredEvent]:
        """The stored events among ``event_ids`` (unknown ids are skipped)."""

    def counts(self) -> dict[str, int]:
        """Totals for statistics: all, negative, positive, consented."""

    def newest_ts(self) -> datetime | None:
        """When the newest stored event happened (its ``ts``), None for an empty store."""

    def count_ingested_since(self, epoch: float, polarity: int | None = None) -> int:
        """Events stored after ``epoch`` (seconds), optionally of one polarity."""

    def stored_mark(self) -> float:
        """Where the store is now, for :meth:`ids_after` (0 for an empty store)."""

    def ids_after(self, mark: float, polarity: int | None = None) -> NewIds:
        """The ids of events stored after ``mark`` (from :meth:`stored_mark`), optionally of one
        polarity, and the mark to ask from next time: what incremental triage reads instead of the
        whole store."""

    def rated(
        self,
        *,
        since: float | None = None,
        queries: Sequence[str] | None = None,
        versions: Sequence[str] = ("prompt_version", "index_version", "model"),
    ) -> RatedColumns:
        """Events with a polarity, column by column (the watch's input; event_id only when ``queries``
        is given, version columns only those in ``versions``)."""

    def close(self) -> None: ...


def _row(e: StoredEvent, source: str, now: float) -> dict[str, Any]:
    """The row of one event, or :class:`Unstorable` when no dialect should keep it."""
    ts = utc(e.ts)
    return check_row(
        {
            "event_id": e.event_id,
            "ts": ts.isoformat(),
            "ts_epoch": ts.timestamp(),
            "signal": e.signal,
            "polarity": e.polarity,
            "strength": e.strength,
            "user_id": e.user_id,
            "session_id": e.session_id,
            "consent": int(e.consent),
            "prompt_version": e.prompt_version,
            "model": e.model,
            "confidence": e.confidence,
            "reason": e.reason,
            "query": e.query,
            "output": e.output,
            "comment": e.comment,
            "correction": e.correction,
            "final_text": e.final_text,
            "value": e.value,
            "context_ids": as_json("context_ids", e.context_ids, ascii_only=True),
            "metadata": as_json("metadata", e.metadata),
            "pii_scrubbed": ",".join(sorted(e.pii_scrubbed)) if e.pii_scrubbed else None,
            "source": source,
            "ingested_at": now,
            "index_version": e.index_version,
            "arm": e.arm,
        }
    )


def _first_copies(events: Sequence[StoredEvent]) -> list[tuple[int, StoredEvent]]:
    """The first copy of each id with its position (later copies in a batch are duplicates)."""
    first: dict[str, tuple[int, StoredEvent]] = {}
    for position, e in enumerate(events):
        first.setdefault(e.event_id, (position, e))
    return list(first.values())


_Rows = list[tuple[int, dict[str, Any]]]  # rows with the position of their event


def _rows(unique: list[tuple[int, StoredEvent]], source: str) -> tuple[_Rows, list[Refused]]:
    """Rows with their positions, in id order (concurrent writers then lock rows in the same order: no
    deadlock), and the events refused before any database sees them."""
    now = datetime.now(UTC).timestamp()
    rows: _Rows = []
    refused: list[Refused] = []
    for position, e in unique:
        try:
            rows.append((position, _row(e, source, now)))
        except Unstorable as exc:
            refused.append(Refused(position, str(exc)))
    rows.sort(key=lambda item: item[1]["event_id"])
    return rows, refused


def _event(r: Row[Any]) -> StoredEvent:
    return StoredEvent(
        event_id=r.event_id,
        ts=datetime.fromisoformat(r.ts),
        signal=r.signal,
        polarity=r.polarity,
        strength=r.strength,
        user_id=r.user_id,
        session_id=r.session_id,
        consent=bool(r.consent),
        prompt_version=r.prompt_version,
        model=r.model,
        confidence=r.confidence,
        reason=r.reason,
        query=r.query,
        output=r.output,
        comment=r.comment,
        correction=r.correction,
        final_text=r.final_text,
        value=r.value,
        context_ids=json.loads(r.context_ids) if r.context_ids else [],
        metadata=json.loads(r.metadata) if r.metadata else {},
        pii_scrubbed=r.pii_scrubbed.split(",") if r.pii_scrubbed else [],
        index_version=r.index_version,
        arm=r.arm,
    )


_COLUMNS = tuple(c.name for c in events_table.columns)
_AS_TUPLE = itemgetter(*_COLUMNS)  # a row dict -> its values in column order (in C, not a genexpr per row)
_SQLITE_INSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_SQLITE_EXISTING = "SELECT event_id FROM events WHERE event_id IN ({})"


def _insert_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """SQLite's batch: one prepared statement run by the driver's ``executemany`` on plain tuples.

    SQLAlchemy's multi-row ``INSERT ... RETURNING`` compiles and binds every row in Python, most of
    the store's share of an ingest (issue 31: 27k -> 17k events/s). The ids that are new are those not
    in the table before the insert, read in the same transaction: a write transaction holds SQLite's
    one write lock from its start (``BEGIN IMMEDIATE``, engine.py), so no other writer adds any in
    between, and the caller's rows have distinct ids."""
    ids = [row["event_id"] for row in rows]
    existing: set[str] = set()
    for i in range(0, len(ids), _GET_CHUNK):
        chunk = tuple(ids[i : i + _GET_CHUNK])
        existing.update(conn.exec_driver_sql(_SQLITE_EXISTING.format(", ".join("?" * len(chunk))), chunk).scalars())
    conn.exec_driver_sql(_SQLITE_INSERT, list(map(_AS_TUPLE, rows)))
    return set(ids) - existing


class SQLFeedbackStore:
    """The store on SQLAlchemy Core: a SQLite file in WAL mode or a Postgres database, migrated on open.

    Every failure to reach the database is a :class:`~flywheel.errors.StoreUnavailable`; any other
    database failure a :class:`~flywheel.errors.FlywheelError` naming the store."""

    def __init__(self, url: str, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        self.url = store_url(url)
        self.where = describe(self.url)
        self.dialect = self.url.get_backend_name()
        self.path = Path(str(self.url.database)) if self.dialect == "sqlite" else None
        self._engine = create_store_engine(self.url, lock_timeout)
        try:
            with store_errors(self.url, "opened"):
                migrate(self._engine, self.where)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def schema_version(self) -> str | None:
        """The Alembic revision the database is at."""
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            return current_revision(conn)

    def add(self, events: Sequence[StoredEvent], source: str) -> list[StoredEvent]:
        unique = _first_copies(events)
        rows, refused = _rows(unique, source)
        if refused:
            raise FlywheelError(
                f"feedback store {self.where} cannot be written: event {refused[0].position}: {refused[0].error}"
            )
        if not rows:
            return []
        with store_errors(self.url, "written"), self._engine.connect() as conn:
            conn = conn.execution_options(flywheel_write=True)
            with conn.begin():  # one transaction: the whole batch or nothing
                new = self._insert(conn, [row for _, row in rows])
        return [e for _, e in unique if e.event_id in new]

    def add_each(self, events: Sequence[StoredEvent], source: str) -> AddResult:
        unique = _first_copies(events)
        rows, refused = _rows(unique, source)
        new: set[str] = set()
        if rows:
            with store_errors(self.url, "written"), self._engine.connect() as conn:
                conn = conn.execution_options(flywheel_write=True)
                try:
                    with conn.begin():  # the usual case: the whole batch in one statement
                        new = self._insert(conn, [row for _, row in rows])
                except ROW_ERRORS:  # one row's values: find it, store the others
                    new, more = self._insert_one_by_one(conn, rows)
                    refused += more
        stored = [e for _, e in unique if e.event_id in new]
        return AddResult(new=stored, refused=sorted(refused, key=lambda r: r.position))

    def _statement(self) -> Insert:
        # Each dialect's own INSERT (their ON CONFLICT clauses are not one type); store_url allows only these two.
        if self.dialect == "postgresql":
            pg = postgresql.insert(events_table).on_conflict_do_nothing(index_elements=["event_id"])
            return pg.returning(events_table.c.event_id)
        lite = sqlite.insert(events_table).on_conflict_do_nothing(index_elements=["event_id"])
        return lite.returning(events_table.c.event_id)

    def _insert(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert ``rows`` in the caller's transaction; the ids that were new."""
        if self.dialect == "sqlite":
            return _insert_sqlite(conn, rows)
        return set(conn.execute(self._statement(), rows).scalars())

    def _insert_one_by_one(self, conn: Connection, rows: _Rows) -> tuple[set[str], list[Refused]]:
        """Each row under its own savepoint, in one transaction: a refused row is rolled back alone."""
        new: set[str] = set()
        refused: list[Refused] = []
        with conn.begin():
            for position, row in rows:
                try:
                    with conn.begin_nested():
                        new |= set(conn.execute(self._statement(), row).scalars())
                except ROW_ERRORS as exc:
                    refused.append(Refused(position, database_refusal(exc)))
        return new, refused

    def events(self, *, polarity: int | None = None, since: datetime | None = None) -> Iterator[StoredEvent]:
        query = select(events_table)
        if polarity is not None:
            query = query.where(events_table.c.polarity == polarity)
        if since is not None:
            query = query.where(events_table.c.ts_epoch > since.timestamp())
        return self._stream(query.order_by(events_table.c.ts_epoch, events_table.c.event_id))

    def _stream(self, query: Select[Any]) -> Iterator[StoredEvent]:
        """Rows fetched in batches (a server-side cursor on Postgres), not all loaded at once."""
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            result = conn.execution_options(yield_per=_STREAM_BATCH).execute(query)
            for batch in result.partitions():
                yield from map(_event, batch)

    def get(self, event_ids: Iterable[str]) -> list[StoredEvent]:
        ids = list(event_ids)
        out: list[StoredEvent] = []
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            for i in range(0, len(ids), _GET_CHUNK):
                chunk = ids[i : i + _GET_CHUNK]
                query = select(events_table).where(events_table.c.event_id.in_(chunk)).order_by(events_table.c.event_id)
                out.extend(map(_event, conn.execute(query)))
        return out

    def counts(self) -> dict[str, int]:
        c = events_table.c
        query = select(
            func.count(),
            func.count().filter(c.polarity < 0),
            func.count().filter(c.polarity > 0),
            func.count().filter(c.consent != 0),
        )
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            total, negative, positive, consented = conn.execute(query).one()
        return {"events": total, "negative": negative, "positive": positive, "consented": consented}

    def newest_ts(self) -> datetime | None:
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            epoch = conn.execute(select(func.max(events_table.c.ts_epoch))).scalar_one()
        return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)

    def count_ingested_since(self, epoch: float, polarity: int | None = None) -> int:
        query = select(func.count()).where(events_table.c.ingested_at > epoch)
        if polarity is not None:
            query = query.where(events_table.c.polarity == polarity)
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _position(self) -> Any:
        """What orders rows by commit: SQLite's rowid, else the time they were stored."""
        return literal_column("rowid") if self.dialect == "sqlite" else events_table.c.ingested_at

    def stored_mark(self) -> float:
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            mark = conn.execute(select(func.max(self._position())).select_from(events_table)).scalar_one()
        return 0.0 if mark is None else float(mark)

    def ids_after(self, mark: float, polarity: int | None = None) -> NewIds:
        position = self._position()
        exact = self.dialect == "sqlite"
        with store_errors(self.url, "read"), self._engine.connect() as conn, conn.begin():
            now = conn.execute(select(func.max(position)).select_from(events_table)).scalar_one()
            now = mark if now is None else float(now)
            c = events_table.c
            query = select(c.event_id, c.polarity).where(position > (mark if exact else mark - MARK_SLACK))
            if exact:
                query = query.where(position <= now)
            # polarity filtered here, not in SQL: SQLite would take the polarity index and scan every
            # negative instead of the rowid range
            ids = [eid for eid, pol in conn.execute(query) if polarity is None or pol == polarity]
        return NewIds(ids, now, exact)

    def rated(
        self,
        *,
        since: float | None = None,
        queries: Sequence[str] | None = None,
        versions: Sequence[str] = ("prompt_version", "index_version", "model"),
    ) -> RatedColumns:
        """The events with a polarity, in no particular order, as typed columns (``event_id``, ``ts``,
        ``negative``, ``user_id``, ``arm``, ``prompt_version``, ``index_version``, ``model``): what
        ``flywheel watch`` aggregates (one query, no event objects). ``queries``: only events whose
        query text is one of these; without it the event id is left out (None), as are the version
        columns not in ``versions``: each string column costs about a second a million rows."""
        c = events_table.c
        none = literal(None, String)
        picked = [
            getattr(c, name) if name in versions else none for name in ("prompt_version", "index_version", "model")
        ]
        query = select(
            none if queries is None else c.event_id,
            c.ts_epoch,
            case((c.polarity < 0, 1), else_=0),
            c.user_id,
            c.arm,
            *picked,
        ).where(c.polarity != 0)
        if since is not None:
            query = query.where(c.ts_epoch >= since)
        with store_errors(self.url, "read"), self._engine.connect() as conn:
            if queries is None:
                return RatedColumns.of_rows(conn.execute(query))
            wanted = sorted(set(queries))
            return RatedColumns.of_rows(
                [
                    r
                    for i in range(0, len(wanted), _GET_CHUNK)
                    for r in conn.execute(query.where(c.query.in_(wanted[i : i + _GET_CHUNK])))
                ]
            )

    @property
    def engine(self) -> Engine:
        """The engine, migrated: for tables beside the events on the same database (the ask ledger)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SQLFeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str, lock_timeout: float = LOCK_TIMEOUT_SECONDS) -> SQLFeedbackStore:
    """Open (and migrate) the store a URL names: ``sqlite:///PATH``, a plain path, ``postgresql://...``
    or ``postgresql+psycopg://...``; a write waits ``lock_timeout`` seconds for another writer."""
    return SQLFeedbackStore(url, lock_timeout)
