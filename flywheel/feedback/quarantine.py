"""Rejected items kept with where they came from and why, PII scrubbed, each distinct item once."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from flywheel.feedback.scrub import scrub_text
from flywheel.feedback.sources import STDIN, Position
from flywheel.sqlite_util import open_migrated


class _SeenLines:
    """Content hashes of the lines already quarantined (``quarantine/seen.sqlite``), so a re-ingest of
    the same bad file keeps no second copy. It lives beside the quarantine files: deleting the directory
    resets both. A hash is recorded in the same transaction that writes its line, so concurrent ingests
    write a line once and a failed write leaves no mark."""

    MIGRATIONS = ("CREATE TABLE seen (sha256 TEXT PRIMARY KEY)",)

    def __init__(self, directory: Path) -> None:
        self._db = open_migrated(directory / "seen.sqlite", self.MIGRATIONS, "quarantine index")

    def write_once(self, raw: bytes, write: Callable[[], None]) -> None:
        """Call ``write`` unless a line with this content was quarantined before."""
        with self._db:
            digest = hashlib.sha256(raw).hexdigest()
            if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (digest,)).rowcount == 1:
                write()

    def close(self) -> None:
        self._db.close()


class Quarantine:
    """One source's rejected items under ``$FLYWHEEL_HOME/quarantine/``.

    An item longer than ``ingest.max_field_chars`` is kept cut to that length (``raw_chars`` says how
    long it was): the error already names the field, and scrubbing or storing it whole would cost what
    the limit is there to bound. Files and the index are created on first use."""

    def __init__(self, directory: Path, source: str, counts: Position, max_chars: int, daily: bool = False) -> None:
        self.directory, self.source, self.counts, self.max_chars = directory, source, counts, max_chars
        stem = "stdin" if source == STDIN else Path(source).name or "stdin"
        # A file per run; a service writes a file per day and process instead of one per request.
        stamp = datetime.now(UTC).strftime("%Y%m%d" if daily else "%Y%m%dT%H%M%S")
        self.path = directory / f"{stem}.{stamp}.{os.getpid()}.rejected.jsonl"
        self._fh: IO[str] | None = None
        self._seen: _SeenLines | None = None

    def write(self, position: int, error: str, raw: bytes) -> None:
        """Keep one rejected item unless the same content was kept before."""
        if self._seen is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._seen = _SeenLines(self.directory)
        self._seen.write_once(raw, lambda: self._append(self._record(position, error, raw)))

    def _record(self, position: int, error: str, raw: bytes) -> dict[str, Any]:
        text = raw.decode("utf-8", "replace")
        record: dict[str, Any] = {"file": self.source, self.counts.value: position, "error": error}
        if len(text) > self.max_chars:
            record["raw_chars"] = len(text)
            text = text[: self.max_chars]
        return record | {"raw": scrub_text(text, set())}

    def _append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> str | None:
        """Close what was opened; the file written to, if any."""
        if self._seen is not None:
            self._seen.close()
        if self._fh is None:
            return None
        self._fh.close()
        return str(self.path)
