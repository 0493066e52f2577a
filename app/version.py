"""``flywheel --version``: what is installed, so a bug report or a README step can name it."""

from __future__ import annotations

import importlib.metadata

import typer


def installed_version() -> str:
    """The installed distribution's version; the package's own constant when run from a source tree
    that was never installed (no metadata to read)."""
    try:
        return importlib.metadata.version("flywheel")
    except importlib.metadata.PackageNotFoundError:
        import flywheel

        return flywheel.__version__


def print_version(value: bool) -> None:
    """Eager option callback: print ``flywheel X.Y.Z`` and stop before any command runs."""
    if value:
        typer.echo(f"flywheel {installed_version()}")
        raise typer.Exit()
