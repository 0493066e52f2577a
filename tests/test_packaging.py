"""One import name (DESIGN.md): an installed Flywheel adds `flywheel` to the environment, the card's
top-level folders mapped into it, and the light client `flywheel_client` (clients/python/), nothing
else; importing it changes nothing global."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("app", "evals", "flows", "improvers", "loop", "sim")
CLIENT = "clients/python/flywheel_client"


def _declared() -> tuple[set[str], dict[str, str]]:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(tool["packages"]), tool["package-dir"]


def test_every_package_folder_is_declared_under_the_one_name() -> None:
    packages, dirs = _declared()
    assert dirs == {"flywheel": "flywheel", **{f"flywheel.{d}": d for d in MAPPED}, "flywheel_client": CLIENT}
    on_disk = {
        ".".join(p.parent.relative_to(ROOT / "clients/python").parts) for p in (ROOT / CLIENT).rglob("__init__.py")
    }
    assert on_disk == {"flywheel_client"}
    for top in ("flywheel", *MAPPED):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            on_disk.add(".".join(rel if top == "flywheel" else ("flywheel", *rel)))
    assert len(on_disk) > 10
    assert on_disk == packages, f"missing from pyproject: {on_disk - packages}; stale: {packages - on_disk}"


@pytest.mark.slow
def test_a_built_wheel_adds_only_flywheel_and_its_client(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ and egg-info beside the sources it builds.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            ".checks_tree",
            ".*_cache",
            "__pycache__",
            ".flywheel",
            "mlruns",
            "tests",
            "benchmarks",
            "docs",
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("flywheel-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"flywheel", "flywheel_client", "flywheel-0.1.0.dist-info"}, tops
    # the mapped folders landed inside, with their data files
    for must in (
        "flywheel/loop/gate.py",
        "flywheel/flows/cycle.py",
        "flywheel/app/cli.py",
        "flywheel/improvers/prompt_improver.py",
        "flywheel/sim/server.py",
        "flywheel/evals/runner.py",
        "flywheel/app/starter_files/flywheel.toml",
        "flywheel/feedback/migrations/script.py.mako",
        "flywheel_client/client.py",
        "flywheel_client/models.py",
        "flywheel_client/py.typed",
    ):
        assert must in names, must
    assert any(n.startswith("flywheel/evals/golden/") and n.endswith(".jsonl") for n in names)
    entry_points = zipfile.ZipFile(wheel).read("flywheel-0.1.0.dist-info/entry_points.txt").decode()
    assert "flywheel = flywheel.app.cli:main" in entry_points
    assert "prompt = flywheel.improvers.prompt_improver:IMPROVER" in entry_points


def test_importing_the_core_changes_no_environment_variable() -> None:
    code = (
        "import os, json; before = dict(os.environ); import flywheel, flywheel.config, flywheel.feedback.store, "
        "flywheel.loop.gate, flywheel.evals.runner; print(json.dumps(sorted(set(os.environ.items()) ^ "
        "set(before.items()))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "HF_", "TRANSFORMERS_"))}
    env.pop("TOKENIZERS_PARALLELISM", None)
    env.pop("DO_NOT_TRACK", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    # and the faces do set the offline switches, a value the user set still winning
    face = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, flywheel.app; print(os.environ['HF_HUB_OFFLINE'], os.environ['DO_NOT_TRACK'])",
        ],
        env={**env, "DO_NOT_TRACK": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert face.stdout.split() == ["1", "0"]
