"""``flywheel config``: the effective configuration, and where each value came from."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from flywheel.app.context import _settings
from flywheel.app.output import JsonFlag, answer, handles_errors, human_console
from flywheel.config import Settings
from flywheel.config_sources import setting_sources
from flywheel.masking import mask_secrets, masked_model


def _document(settings: Settings) -> dict[str, Any]:
    doc = masked_model(settings)
    doc["config_file"] = str(settings.config_file) if settings.config_file else None
    doc["resolved"] = {
        "store_url": mask_secrets(settings.resolved_store_url),
        "state_url": mask_secrets(settings.resolved_state_url),
        "mlflow_tracking_uri": mask_secrets(settings.resolved_tracking_uri),
        "golden": str(settings.golden_file),
    }
    doc["sources"] = setting_sources(settings)
    return doc


def _value_at(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node[part]
    return node


@handles_errors
def show_config(
    all_values: Annotated[bool, typer.Option("--all", help="List settings left at their defaults too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show the effective configuration (secrets and URL passwords masked) and where each value came from: an
    environment variable, the config file, or the default. Without --all only what was set
    (environment or file) is listed, then the file and the resolved store and MLflow locations."""
    settings = _settings()
    doc = _document(settings)
    answer(as_json, doc, lambda: _print_config(doc, all_values))


def _print_config(doc: dict[str, Any], all_values: bool) -> None:
    table = Table(title="configuration (environment over file over defaults)")
    for col in ("setting", "value", "from"):
        table.add_column(col, overflow="fold")
    shown = 0
    for path, source in doc["sources"].items():
        if source == "default" and not all_values:
            continue
        table.add_row(path, str(_value_at(doc, path)), source)
        shown += 1
    out = human_console()
    out.print(table if shown else "every setting has its default value", highlight=False)
    out.print(f"config file: {doc['config_file'] or 'none (no FLYWHEEL_CONFIG, no ./flywheel.toml)'}", highlight=False)
    for key, value in doc["resolved"].items():
        out.print(f"{key}: {value}", highlight=False)
    if not all_values:
        out.print("--all lists the defaults too; --json prints everything", highlight=False)
