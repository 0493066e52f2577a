"""`flywheel init`: the starter kit a newcomer edits into their own product.

The files live in ``app/starter_files`` (package data) rather than in code, so what a user gets is
exactly what a test validates and ingests. They describe the simulator's product, so the kit works
end to end against `flywheel sim serve` before anything in it is replaced."""

from __future__ import annotations

import shlex
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import BaseModel

from flywheel.errors import UsageError

STARTER_PACKAGE = "flywheel.app"
STARTER_DIR = "starter_files"


class InitResult(BaseModel):
    """What `flywheel init` wrote, and what to run next (the ``--json`` document)."""

    directory: str
    written: list[str]
    overwritten: list[str]
    next: list[str]


def starter_files() -> dict[str, Traversable]:
    """Relative path (POSIX) -> the packaged file, for every file of the kit."""
    found: dict[str, Traversable] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif not child.name.startswith("."):
                found[f"{prefix}{child.name}"] = child

    walk(files(STARTER_PACKAGE) / STARTER_DIR, "")
    return found


def write_starter(directory: Path, *, force: bool = False) -> InitResult:
    """Write the kit into ``directory``; refuse, writing nothing, when a file is there and not ``force``."""
    kit = starter_files()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    existing = [name for name in kit if (directory / name).exists()]
    if existing and not force:
        raise UsageError(
            f"{directory}: {', '.join(existing)} already exist; nothing was written (pass --force to overwrite them)"
        )
    for name, source in kit.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return InitResult(
        directory=str(directory),
        written=sorted(set(kit) - set(existing)),
        overwritten=existing,
        next=next_steps(directory),
    )


def next_steps(directory: Path) -> list[str]:
    """The commands that take the kit from files to a first cycle, run from ``directory``."""
    here = [] if directory.resolve() == Path.cwd().resolve() else [f"cd {shlex.quote(str(directory))}"]
    return [
        *here,
        "flywheel sim serve --port 8765   # in another terminal, or set openai_base_url to your endpoint",
        "flywheel validate --prompt prompt.txt",
        "flywheel prompt set prompt.txt",
        "flywheel kb sync",
        "flywheel ingest feedback.jsonl",
        "flywheel cycle",
    ]
