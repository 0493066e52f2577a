"""The installed improvers, as the cycle and the faces use them (found by :mod:`flywheel.plugins`)."""

from __future__ import annotations

from flywheel.candidates import ChampionKind
from flywheel.errors import UsageError
from flywheel.improvers.base import Improver
from flywheel.plugins import GROUP, registered, spec


def improvers() -> list[Improver]:
    """Every installed improver, the built-ins first; each must be a whole :class:`Improver`."""
    out = []
    for s in registered():
        if not isinstance(s, Improver):
            raise UsageError(
                f"the {GROUP} entry point {s.name!r} lacks part of the Improver protocol "
                "(improvers.base.Improver; subclass improvers.base.BaseImprover)"
            )
        out.append(s)
    return out


def improver(kind: str) -> Improver:
    """The improver of a candidate's kind."""
    found = spec(kind)
    assert isinstance(found, Improver), f"{kind} is not an Improver"
    return found


def slots() -> list[ChampionKind]:
    """The champion slots the installed improvers move, in their order (each once)."""
    return list(dict.fromkeys(i.slot for i in improvers()))


def stages() -> list[str]:
    """The cycle stages improvers run under, in their order (each once)."""
    return list(dict.fromkeys(i.stage for i in improvers()))
