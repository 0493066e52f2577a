"""Opening SQLite files the same way everywhere: WAL journal, numbered migrations, clear errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from flywheel.errors import FlywheelError


def open_migrated(path: Path, migrations: Sequence[str], what: str) -> sqlite3.Connection:
    """Connect, switch to WAL and apply the migrations this file has not seen (``PRAGMA user_version``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise FlywheelError(f"{what} {path} cannot be opened: {exc}") from exc
    if version > len(migrations):
        db.close()
        raise FlywheelError(
            f"{what} {path} has schema version {version}, newer than this Flywheel understands "
            f"({len(migrations)}); upgrade Flywheel"
        )
    for number in range(version + 1, len(migrations) + 1):
        db.executescript(f"BEGIN; {migrations[number - 1]}; PRAGMA user_version = {number}; COMMIT;")
    return db
