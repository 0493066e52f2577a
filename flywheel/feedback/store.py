"""The feedback store: SQLite in WAL mode behind a small interface a Postgres store could also meet.

Schema changes are numbered migrations; ``PRAGMA user_version`` records how far a database has
come, so an old ``$FLYWHEEL_HOME`` is upgraded in place when a newer Flywheel opens it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from flywheel.errors import UsageError
from flywheel.schemas import StoredEvent
from flywheel.sqlite_util import open_migrated

MIGRATIONS: tuple[str, ...] = (
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

SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = (
    "event_id, ts, ts_epoch, signal, polarity, strength, user_id, session_id, consent, prompt_version, model, "
    "confidence, reason, query, output, comment, correction, final_text, value, context_ids, metadata, "
    "pii_scrubbed, source, ingested_at, index_version, arm"
)
_INSERT = f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS.split(', ')))})"
_SELECT = f"SELECT {_COLUMNS} FROM events"


class FeedbackStore(Protocol):
    """What the rest of Flywheel needs from a feedback store."""

    def add(self, events: Sequence[StoredEvent], source: str) -> list[StoredEvent]:
        """Store events not seen before (by ``event_id``) in one transaction; return those that were new.

        Exactly this call's new events, whatever other writers store meanwhile: the counts an ingest
        reports (and the Prefect events it sends) are its own."""

    def events(self, *, polarity: int | None = None, since: datetime | None = None) -> Iterator[StoredEvent]:
        """Stored events, oldest first, optionally only one polarity or those after ``since``."""

    def counts(self) -> dict[str, int]:
        """Totals for statistics: all, negative, positive, consented."""

    def rated(self, *, since: float | None = None, queries: Sequence[str] | None = None,
              versions: Sequence[str] = ("prompt_version", "index_version", "model")) -> list[tuple[Any, ...]]:
        """Events with a polarity as (event_id, ts_epoch, negative, user_id, arm, prompt_version,
        index_version, model) rows (the watch's input; event_id only when ``queries`` is given)."""

    def close(self) -> None: ...


def _row_tuple(e: StoredEvent, source: str, now: float) -> tuple[Any, ...]:
    ts = e.ts.astimezone(timezone.utc)
    return (
        e.event_id,
        ts.isoformat(),
        ts.timestamp(),
        e.signal,
        e.polarity,
        e.strength,
        e.user_id,
        e.session_id,
        int(e.consent),
        e.prompt_version,
        e.model,
        e.confidence,
        e.reason,
        e.query,
        e.output,
        e.comment,
        e.correction,
        e.final_text,
        e.value,
        json.dumps(e.context_ids) if e.context_ids else None,
        json.dumps(e.metadata, ensure_ascii=False) if e.metadata else None,
        ",".join(sorted(e.pii_scrubbed)) if e.pii_scrubbed else None,
        source,
        now,
        e.index_version,
        e.arm,
    )


def _row_event(r: sqlite3.Row | tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(
        event_id=r[0],
        ts=datetime.fromisoformat(r[1]),
        signal=r[3],
        polarity=r[4],
        strength=r[5],
        user_id=r[6],
        session_id=r[7],
        consent=bool(r[8]),
        prompt_version=r[9],
        model=r[10],
        confidence=r[11],
        reason=r[12],
        query=r[13],
        output=r[14],
        comment=r[15],
        correction=r[16],
        final_text=r[17],
        value=r[18],
        context_ids=json.loads(r[19]) if r[19] else [],
        metadata=json.loads(r[20]) if r[20] else {},
        pii_scrubbed=r[21].split(",") if r[21] else [],
        index_version=r[24],
        arm=r[25],
    )


class SQLiteFeedbackStore:
    """The default store: one SQLite file, WAL journal, migrated on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_migrated(path, MIGRATIONS, "feedback store")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def add(self, events: Sequence[StoredEvent], source: str) -> list[StoredEvent]:
        now = datetime.now(timezone.utc).timestamp()
        with self._db:  # one transaction; each INSERT OR IGNORE says whether its row was new
            return [e for e in events if self._db.execute(_INSERT, _row_tuple(e, source, now)).rowcount == 1]

    def events(self, *, polarity: int | None = None, since: datetime | None = None) -> Iterator[StoredEvent]:
        where, args = [], []
        if polarity is not None:
            where.append("polarity = ?")
            args.append(polarity)
        if since is not None:
            where.append("ts_epoch > ?")
            args.append(since.timestamp())
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts_epoch, event_id"
        with closing(self._db.cursor()) as cur:
            cur.arraysize = 2000
            cur.execute(sql, args)
            while batch := cur.fetchmany():
                yield from (_row_event(r) for r in batch)

    def get(self, event_ids: Iterable[str]) -> list[StoredEvent]:
        ids = list(event_ids)
        out: list[StoredEvent] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            sql = f"{_SELECT} WHERE event_id IN ({','.join('?' * len(chunk))})"
            out.extend(_row_event(r) for r in self._db.execute(sql, chunk))
        return out

    def counts(self) -> dict[str, int]:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(polarity < 0), 0), COALESCE(SUM(polarity > 0), 0), "
            "COALESCE(SUM(consent), 0) FROM events"
        ).fetchone()
        return {"events": row[0], "negative": row[1], "positive": row[2], "consented": row[3]}

    def count_ingested_since(self, epoch: float, polarity: int | None = None) -> int:
        if polarity is None:
            return int(self._db.execute("SELECT COUNT(*) FROM events WHERE ingested_at > ?", (epoch,)).fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM events WHERE ingested_at > ? AND polarity = ?",
                                    (epoch, polarity)).fetchone()[0])

    def rated(self, *, since: float | None = None, queries: Sequence[str] | None = None,
              versions: Sequence[str] = ("prompt_version", "index_version", "model")) -> list[tuple[Any, ...]]:
        """The events with a polarity, in no particular order, as ``(event_id, ts_epoch, negative, user_id,
        arm, prompt_version, index_version, model)`` rows: what ``flywheel watch`` aggregates (one query,
        no event objects). ``queries``: only events whose query text is one of these; without it the
        event id is left out (None), as are the version columns not in ``versions``: each string
        column costs about a second a million rows."""
        picked = [c if c in versions else "NULL" for c in ("prompt_version", "index_version", "model")]
        sql = (f"SELECT {'NULL' if queries is None else 'event_id'}, ts_epoch, polarity < 0, user_id, arm, "
               f"{', '.join(picked)} FROM events WHERE polarity != 0")
        args: list[Any] = []
        if since is not None:
            sql += " AND ts_epoch >= ?"
            args.append(since)
        if queries is None:
            return self._db.execute(sql, args).fetchall()
        out: list[tuple[Any, ...]] = []
        wanted = sorted(set(queries))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            out += self._db.execute(sql + f" AND query IN ({','.join('?' * len(chunk))})", [*args, *chunk]).fetchall()
        return out

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteFeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str) -> SQLiteFeedbackStore:
    """Open the store a URL names: ``sqlite:///path`` or a plain path. Postgres is not built yet."""
    if url.startswith("sqlite:///"):
        return SQLiteFeedbackStore(Path(url.removeprefix("sqlite:///")))
    if "://" not in url:
        return SQLiteFeedbackStore(Path(url))
    scheme = url.split("://", 1)[0]
    raise UsageError(
        f"store_url scheme '{scheme}' is not supported yet; use sqlite:///PATH "
        "(the store interface in flywheel/feedback/store.py is where a Postgres store would go)"
    )
