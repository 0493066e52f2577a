"""Where feedback comes from: a source yields items with their position, and nothing else.

Validation, consent, scrubbing, quarantine and deduplication are the ingest's one path
(``ingest.py``, ``validate.py``); a new source (OTLP, MLflow traces, Langfuse) only has to say how
it frames its items and what a position counts, so the path it feeds stays the same.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

from flywheel.errors import UsageError

ProgressFn = Callable[[int], None]
STDIN = "-"


class Position(StrEnum):
    """What an item's position counts, and the key errors and quarantine records name it by."""

    line = "line"  # 1-based line of a file (blank lines counted)
    index = "index"  # type: ignore[assignment]  # 0-based place in a request's list (shadows str.index: harmless)


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One item as its source framed it: where it was, its JSON text (what is validated and, when
    rejected, quarantined), or why it could not be read as one item at all."""

    position: int
    text: bytes
    unreadable: str | None = None

    @classmethod
    def of_value(cls, position: int, value: Any) -> SourceItem:
        """A decoded JSON value as an item, encoded back so it meets the parser a file's line meets.
        Text stays UTF-8; a lone surrogate (from a ``\\ud800`` escape) stays an escape, which the
        parser rejects as it does in a file."""
        try:
            try:
                return cls(position, json.dumps(value, ensure_ascii=False).encode("utf-8"))
            except UnicodeEncodeError:
                return cls(position, json.dumps(value).encode("ascii"))
        except (RecursionError, ValueError, TypeError) as exc:
            return cls(position, b"(not re-encodable)", f"cannot be read as one event ({type(exc).__name__})")


class Source(Protocol):
    """Items to ingest, in order. ``name`` names the source in reports, errors and quarantine files."""

    name: str

    @property
    def counts(self) -> Position:
        """What its positions count (lines of a file, items of a batch): a class constant of each source."""
        ...

    def items(self) -> Iterator[SourceItem]: ...


@dataclass
class JsonLines:
    """The lines of a JSONL stream, one item per non-blank line; ``progress`` hears each line's bytes."""

    name: str
    lines: Iterable[bytes]
    progress: ProgressFn | None = None
    counts: ClassVar[Position] = Position.line

    def items(self) -> Iterator[SourceItem]:
        for line_no, raw in enumerate(self.lines, start=1):
            if self.progress:
                self.progress(len(raw))
            line = raw.strip()
            if line:
                yield SourceItem(line_no, line)


@dataclass
class DecodedEvents:
    """Already-decoded events (one request's body), by 0-based index."""

    name: str
    values: Sequence[Any]
    counts: ClassVar[Position] = Position.index

    def items(self) -> Iterator[SourceItem]:
        for index, value in enumerate(self.values):
            yield SourceItem.of_value(index, value)


def check_openable(path: str) -> None:
    """Raise the usage error ``open_jsonl`` would, without reading (stdin is always there)."""
    if path != STDIN:
        _open(path).close()


@contextmanager
def open_jsonl(path: str, progress: ProgressFn | None = None) -> Iterator[JsonLines]:
    """A JSONL file (or stdin for ``-``) as a source; it is closed after (stdin is left open)."""
    fh = sys.stdin.buffer if path == STDIN else _open(path)
    try:
        yield JsonLines(path, _read(fh, path), progress)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _open(path: str) -> IO[bytes]:
    """The binary stream of a file; one that cannot be opened is a usage error naming it."""
    try:
        return Path(path).open("rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a JSONL file") from None
    except OSError as exc:  # permission denied, a path through a file, ...
        raise UsageError(f"{path}: cannot be opened: {exc.strerror or exc}") from None


def _read(fh: IO[bytes], path: str) -> Iterator[bytes]:
    """Lines of ``fh``, a UTF-8 byte order mark dropped; a read error is a usage error naming the file."""
    try:
        first = True
        for raw in fh:
            yield raw.removeprefix(codecs.BOM_UTF8) if first else raw
            first = False
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror or exc}") from None
