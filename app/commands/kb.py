"""``flywheel kb``: the knowledge index."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from flywheel.app.context import _settings
from flywheel.app.display import print_kb_status
from flywheel.app.output import JsonFlag, answer, err, handles_errors
from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.runtime import runtime_for

kb_app = typer.Typer(help="The versioned knowledge index behind retrieval (Chroma).", no_args_is_help=True)


@contextmanager
def _index(settings: Settings) -> Iterator[Any]:
    from flywheel.knowledge.index import open_index

    with runtime_for(settings).borrow_state() as state:
        yield open_index(settings, state)


@kb_app.command("sync")
@handles_errors
def kb_sync(
    source: Annotated[Path | None, typer.Option("--source", help="Directory of .md/.txt or a JSONL file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a new index version from the knowledge source, embedding only chunks whose content changed."""
    settings = _settings()
    path = source or settings.knowledge_source
    if path is None:
        raise UsageError("no knowledge source: pass --source or set FLYWHEEL_KNOWLEDGE_SOURCE / knowledge_source")
    with _index(settings) as index:
        report = index.sync(path)
    answer(
        as_json,
        report.public(),
        lambda: err.print(
            f"index version {report.version}{' (active)' if report.activated else ''}: "
            f"{report.added} added, {report.updated} updated, {report.deleted} deleted, "
            f"{report.unchanged} unchanged; {report.embedded} embedded",
            highlight=False,
        ),
    )


@kb_app.command("status")
@handles_errors
def kb_status(as_json: JsonFlag = False) -> None:
    """The active index version, every retained version, and what the active one holds."""
    with _index(_settings()) as index:
        doc = index.status()
    answer(as_json, doc, lambda: print_kb_status(doc))


@kb_app.command("rebuild")
@handles_errors
def kb_rebuild(as_json: JsonFlag = False) -> None:
    """Restore the Chroma store from the state store (after it was lost or corrupted)."""
    with _index(_settings()) as index:
        doc = index.rebuild()
    answer(
        as_json,
        doc,
        lambda: err.print(f"restored {doc['restored']} of {doc['records']} records ({doc['embedded']} embedded)"),
    )
