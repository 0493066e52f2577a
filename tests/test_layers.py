"""The layering contract (README, "Architecture") is import-linter's: pyproject.toml's
[tool.importlinter] contracts, which `make check` runs too. Here they run on the installed layout and
must hold, and a module planted the wrong way must break them: a lazy import inside a function
counts, and so do Prefect, typer and SQLAlchemy outside their modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from installed_tree import ROOT, build

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts on ``tree`` in a fresh process: this one already imported `flywheel` from the
    checkout, whose `flywheel/` folder lacks the mapped layers."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLYWHEEL_CHECKOUT")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_hold(tmp_path: Path) -> None:
    result = lint_imports(build(tmp_path / "tree"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 7 kept, 0 broken." in result.stdout, result.stdout


def test_a_wrong_way_import_breaks_them(tmp_path: Path) -> None:
    tree = build(tmp_path / "tree", copy=True)
    probe = tree / "flywheel" / "knowledge" / "probe.py"
    probe.write_text(
        "def f():\n    from flywheel.loop.gate import gate_step\n    import prefect\n    import typer\n"
        "    import sqlalchemy\n    from flywheel.sim import world\n"
    )
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line.split(" BROKEN")[0] for line in result.stdout.splitlines() if " BROKEN" in line]
    assert broken == [
        "Layers: app > flows | sim > loop > improvers > evals > core",
        "Prefect only in flywheel.flows",
        "typer only in flywheel.app",
        "SQLAlchemy only in the core's store modules",
        "No import circle between sibling modules, at any depth",
    ], result.stdout
    assert "flywheel.knowledge.probe -> flywheel.loop.gate (l.2)" in result.stdout
    assert "flywheel.knowledge.probe -> flywheel.sim.world" in result.stdout


def test_a_circle_breaks_them(tmp_path: Path) -> None:
    """loop/watch.py and loop/watch_clusters.py once imported each other; ClusterRate moved out."""
    tree = build(tmp_path / "tree", copy=True)
    clusters = tree / "flywheel" / "loop" / "watch_clusters.py"
    clusters.write_text(clusters.read_text() + "\n\ndef _back():\n    from flywheel.loop.watch import run_watch\n")
    result = lint_imports(tree)
    broken = [line.split(" BROKEN")[0] for line in result.stdout.splitlines() if " BROKEN" in line]
    assert result.returncode == 1 and broken == ["No import circle between sibling modules, at any depth"], (
        result.stdout
    )
