"""Where the kinds of fix come from: the ``flywheel.improvers`` entry points.

Every improver, the three built-ins included, is an object named by an entry point of the group
``flywheel.improvers`` (``name = "package.module:OBJECT"``), so adding a kind of fix is a package and
an entry point, nothing in the cycle. The core only needs what reading a stored candidate needs
(:class:`KindSpec`: its name, its champion slot and the model of its payload); the full protocol,
with the cycle's steps, is :class:`improvers.base.Improver`.

Entry points come from the installed distributions (``importlib.metadata``). A checkout run from
its own tree (``PYTHONPATH``, or an editable install made before an entry point was added) also
reads its ``pyproject.toml``'s ``[project.entry-points."flywheel.improvers"]``: the same
declaration, so the built-ins register exactly as a third party's improver does.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flywheel.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - for the type checker only
    from flywheel.candidates import BasePayload, ChampionKind

log = logging.getLogger("flywheel.plugins")

GROUP = "flywheel.improvers"
_CHECKOUT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_LOCK = threading.Lock()


@runtime_checkable
class KindSpec(Protocol):
    """What the core needs of a kind of fix to read and name its candidates."""

    name: str  # the candidate kind: `flywheel.kind` on MLflow runs, `kind` in the cycle's JSON
    slot: ChampionKind  # the champion its candidates move (several kinds may share one)
    payload_model: type[BasePayload]  # its candidates' typed payload


def _checkout_entry_points() -> list[EntryPoint]:
    """The group as this checkout's pyproject.toml declares it (empty when installed as a wheel)."""
    if not _CHECKOUT.is_file():
        return []
    doc = tomllib.loads(_CHECKOUT.read_text(encoding="utf-8"))
    if doc.get("project", {}).get("name") != "flywheel":
        return []
    declared = doc["project"].get("entry-points", {}).get(GROUP, {})
    return [EntryPoint(name=name, value=value, group=GROUP) for name, value in declared.items()]


def _declared() -> list[EntryPoint]:
    """Installed entry points of the group; this checkout's own declaration replaces what an older
    install of Flywheel recorded for it."""
    own = _checkout_entry_points()
    installed = [
        ep for ep in entry_points(group=GROUP) if not (own and ep.dist is not None and ep.dist.name == "flywheel")
    ]
    return own + installed


@lru_cache(maxsize=1)
def _loaded() -> tuple[KindSpec, ...]:
    found: dict[str, KindSpec] = {}
    for ep in _declared():
        if ep.name in found:
            continue  # a checkout's declaration wins over an older install of the same name
        obj, problem = _load(ep)
        if obj is None:
            # One broken plugin must not stop every command (the CLI, the service, the cycle): it is
            # left out, said once per process; its stored candidates then read as an unknown kind.
            log.warning("improver plugin %s = %s left out: %s", ep.name, ep.value, problem)
            continue
        found[ep.name] = obj
    return tuple(found.values())


def _load(ep: EntryPoint) -> tuple[KindSpec, None] | tuple[None, str]:
    """The improver an entry point names, or why it cannot be used."""
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - a third party's import error is theirs to fix, not ours to raise
        return None, f"it does not load ({type(exc).__name__}: {exc})"
    if not isinstance(obj, KindSpec):
        return None, "it is not an improver (it needs name, slot and payload_model)"
    if obj.name != ep.name:
        return None, f"it names its improver {obj.name!r}"
    return obj, None


def registered() -> tuple[KindSpec, ...]:
    """Every improver, in declaration order (the built-ins first), loaded once per process."""
    with _LOCK:
        return _loaded()


def refresh() -> None:
    """Read the entry points again (after a distribution was installed into the running process)."""
    with _LOCK:
        _loaded.cache_clear()


def spec(kind: str) -> KindSpec:
    """The improver of ``kind``; a kind no installed improver provides is a usage error."""
    for s in registered():
        if s.name == kind:
            return s
    raise UsageError(
        f"no improver provides the kind {kind!r} (installed: {', '.join(names())}); "
        f"improvers register under the entry-point group {GROUP}"
    )


def names() -> list[str]:
    return [s.name for s in registered()]
