"""The knowledge-source check: the configured source exists, reads, and has been indexed.

A RAG refresh without an index does nothing, and said nothing: ``kb sync`` had to be known."""

from __future__ import annotations

from pathlib import Path

from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.knowledge.source import TEXT_SUFFIXES, load_documents
from flywheel.loop.checks.problems import Check, Problem, error, warning

_FORMAT = 'a directory of .md/.txt files, or a JSONL file of {"id", "text", "source"?, "updated_at"?}'


def check_knowledge(settings: Settings) -> list[Problem]:
    source = settings.knowledge_source
    if source is None:
        return []
    if not source.exists():
        return [
            error(
                Check.KNOWLEDGE,
                "the knowledge source does not exist",
                f"create it ({_FORMAT}), or remove knowledge_source from flywheel.toml",
                source,
            )
        ]
    try:
        documents = load_documents(source)
    except UsageError as exc:
        file, line, message = _located(str(exc), source)
        return [error(Check.KNOWLEDGE, message, f"the source is {_FORMAT}", file, line)]
    except (OSError, UnicodeDecodeError) as exc:
        return [
            error(
                Check.KNOWLEDGE,
                f"cannot read the knowledge source: {exc}",
                "make it readable by this user (and UTF-8 text)",
                source,
            )
        ]
    if not documents:
        found = f"no {'/'.join(sorted(TEXT_SUFFIXES))} files" if source.is_dir() else "no documents"
        return [
            warning(
                Check.KNOWLEDGE,
                f"the knowledge source has {found}: nothing would be indexed",
                f"add documents ({_FORMAT})",
                source,
            )
        ]
    if not _indexed(settings):
        return [
            warning(
                Check.KNOWLEDGE,
                f"the knowledge source ({len(documents)} documents) is not indexed yet: "
                "answers get no retrieved context and a RAG refresh has nothing to refresh",
                "run `flywheel kb sync`",
                source,
            )
        ]
    return []


def _located(message: str, source: Path) -> tuple[Path, int | None, str]:
    """``load_documents`` says "<path>:<line>: <what>"; split it into the problem's fields."""
    prefix = f"{source}:"
    head, _, rest = message.removeprefix(prefix).partition(": ")
    if message.startswith(prefix) and head.isdigit():
        return source, int(head), rest
    return source, None, message


def _indexed(settings: Settings) -> bool:
    """Whether an index version is active; a state store that does not exist yet is not created."""
    if not settings.state_path.exists():
        return False
    from flywheel.knowledge.index import ACTIVE
    from flywheel.runtime import runtime_for

    with runtime_for(settings).borrow_state() as state:  # it exists: the process's store
        return state.pointer(ACTIVE) is not None
