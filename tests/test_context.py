"""A cycle's context: the golden set it began with is the one its steps, gate and report use, and it
travels between processes without its open resources (loop/context.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.errors import UsageError
from flywheel.evals.golden import load_golden
from flywheel.loop.context import CycleContext


def _golden(path: Path, items: int) -> None:
    path.write_text(
        "".join(
            json.dumps({"id": f"g{i}", "input": f"question {i}?", "expected": f"answer {i}", "category": "factual"})
            + "\n"
            for i in range(items)
        )
    )


def _context(tmp_path: Path) -> tuple[Path, CycleContext]:
    golden = tmp_path / "golden.jsonl"
    _golden(golden, 3)
    settings = load_settings(golden=golden)
    return golden, CycleContext(
        settings=settings,
        cycle_id="cyc-1",
        resumed=False,
        champion_version="1",
        champion_template="t",
        golden_version=load_golden(golden).version,
    )


def test_an_edit_to_the_golden_set_mid_cycle_stops_the_cycle(tmp_path: Path) -> None:
    golden, ctx = _context(tmp_path)
    assert ctx.golden.version == ctx.golden_version
    with pytest.raises(UsageError, match="changed during cycle cyc-1"):
        ctx.golden_for("0" * 64)  # an evaluation recorded on another version
    _golden(golden, 4)
    fresh = ctx.model_copy()  # another process reads the file again
    fresh._golden = None
    with pytest.raises(UsageError, match=str(golden)):
        fresh.golden  # noqa: B018


def test_the_golden_set_is_read_once_per_process(tmp_path: Path) -> None:
    golden, ctx = _context(tmp_path)
    first = ctx.golden
    golden.unlink()  # read already: the steps of this process do not read the file again
    assert ctx.golden is first and len(ctx.protected_texts()) == 6


def test_the_context_travels_without_its_open_resources(tmp_path: Path) -> None:
    _, ctx = _context(tmp_path)
    ctx.golden  # noqa: B018
    assert ctx.mlflow is not None
    copy = pickle.loads(pickle.dumps(ctx))
    assert copy._golden is None and copy._mlflow is None
    assert copy.cycle_id == ctx.cycle_id and copy.golden.version == ctx.golden_version
    assert copy.champions.model == "base" and copy.champions.prompt == "1"
