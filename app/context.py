"""What a command reads besides its options: the settings, and who is acting (for the record)."""

from __future__ import annotations

import os
from typing import Any

from flywheel.config import Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _who(by: str | None) -> str:
    import getpass

    return by or os.environ.get("FLYWHEEL_USER") or getpass.getuser()
