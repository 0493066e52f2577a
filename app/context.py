"""What a command reads besides its options: the settings, and who is acting (for the record)."""

from __future__ import annotations

import os
from typing import Any

from flywheel.config import Settings, load_settings
from flywheel.runtime import Runtime, runtime_for


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _runtime(**overrides: Any) -> Runtime:
    """The command's stores, clients and embedder: the process's Runtime for its settings (a second
    command in the same process with the same settings reuses it)."""
    return runtime_for(_settings(**overrides))


def _who(by: str | None) -> str:
    import getpass

    return by or os.environ.get("FLYWHEEL_USER") or getpass.getuser()
