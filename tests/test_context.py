"""The golden set a cycle began with is the one its gate logs and reports (loop/context.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.golden import load_golden
from flywheel.config import load_settings
from flywheel.errors import UsageError
from loop.context import CycleSetup, cycle_golden


def _golden(path: Path, items: int) -> None:
    path.write_text("".join(json.dumps({"id": f"g{i}", "input": f"question {i}?", "expected": f"answer {i}",
                                        "category": "factual"}) + "\n" for i in range(items)))


def test_an_edit_to_the_golden_set_mid_cycle_stops_the_cycle(tmp_path: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    _golden(golden, 3)
    settings = load_settings(golden=golden)
    setup = CycleSetup(cycle_id="cyc-1", resumed=False, champion_version="1", champion_template="t",
                       golden_version=load_golden(golden).version)
    assert cycle_golden(settings, setup).version == setup.golden_version
    with pytest.raises(UsageError, match="changed during cycle cyc-1"):
        cycle_golden(settings, setup, "0" * 64)  # an evaluation recorded on another version
    _golden(golden, 4)
    with pytest.raises(UsageError, match=str(golden)):
        cycle_golden(settings, setup)
