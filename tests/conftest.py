"""Shared fixtures: a temporary state directory per test, the simulator on an ephemeral port,
and the real local embedding model loaded once per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flywheel  # noqa: F401 - offline switches before anything else loads
import pytest
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.config import EmbeddingSettings, Settings, load_settings
from flywheel.embeddings import LocalEmbedder
from flywheel.sim.server import Simulator

_ENV_TO_CLEAR = (
    "FLYWHEEL_CONFIG",
    "FLYWHEEL_GOLDEN",
    "FLYWHEEL_KNOWLEDGE_SOURCE",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
)


@pytest.fixture(autouse=True)
def flywheel_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own FLYWHEEL_HOME and a working directory with no flywheel.toml."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("FLYWHEEL_HOME", str(home))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture
def settings(flywheel_home: Path) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder(EmbeddingSettings())


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def sim_env(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    monkeypatch.setenv("OPENAI_BASE_URL", simulator.base_url)
    return simulator


class Cli:
    """Runs the real CLI in-process and parses --json output."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0) -> Any:
        result = self.runner.invoke(app, list(args))
        assert result.exit_code == expect, (
            f"flywheel {' '.join(args)} exited {result.exit_code}, expected {expect}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
        self.last = result
        if "--json" in args:
            return json.loads(result.stdout)
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows are dicts (written as JSON) or raw strings (written as they are)."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    base = {
        "event_id": event_id,
        "ts": "2026-11-10T10:00:00+00:00",
        "signal": "thumbs_down",
        "query": "How much does the Pro plan cost?",
        "output": "The Pro plan costs $10 per month.",
        "consent": True,
        "user_id": "u-1",
    }
    base.update(fields)
    return base
