"""``flywheel config``: the effective configuration."""

from __future__ import annotations

import json

from rich.console import Console

from app.context import _settings
from app.output import JsonFlag, emit, handles_errors


@handles_errors
def show_config(as_json: JsonFlag = False) -> None:
    """Show the effective configuration (secrets masked) and where it came from."""
    settings = _settings()
    doc = settings.model_dump(mode="json")
    doc["openai_api_key"] = "***" if settings.openai_api_key else None
    doc["config_file"] = str(settings.config_file) if settings.config_file else None
    doc["resolved"] = {"store_url": settings.resolved_store_url, "mlflow_tracking_uri": settings.resolved_tracking_uri}
    if as_json:
        emit(doc)
    else:
        Console().print_json(json.dumps(doc))
