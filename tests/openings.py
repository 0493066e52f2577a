"""Counting what a process opens, from the libraries' own hooks (no mocks): every SQLite connection
by file (Python's ``sqlite3.connect`` audit event, whoever makes it) and every check of the feedback
store's Alembic revision (a statement on ``alembic_version``, SQLAlchemy's ``before_cursor_execute``)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event


class Openings:
    def __init__(self) -> None:
        self.connects: Counter[str] = Counter()
        self.migration_checks = 0

    def of(self, path: Path | str) -> int:
        return self.connects[Path(path).name]


_active: list[Openings] = []


def _audit(name: str, args: tuple[Any, ...]) -> None:
    if name == "sqlite3.connect" and _active:
        for counts in _active:
            counts.connects[Path(str(args[0])).name] += 1


def _statement(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
    if "alembic_version" in statement and "SELECT version_num" in statement:
        for counts in _active:
            counts.migration_checks += 1


_installed = False


@contextmanager
def counting() -> Iterator[Openings]:
    """The openings made inside the block (in any thread of this process)."""
    global _installed
    if not _installed:  # an audit hook cannot be removed: installed once, silent outside a block
        sys.addaudithook(_audit)
        event.listen(Engine, "before_cursor_execute", _statement)
        _installed = True
    counts = Openings()
    _active.append(counts)
    try:
        yield counts
    finally:
        _active.remove(counts)
