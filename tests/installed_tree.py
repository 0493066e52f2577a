"""Link the source folders into the layout they have once installed, for the tools that read files.

`pip install` maps `loop/` to `flywheel.loop` and so on ([tool.setuptools.package-dir]); mypy and
import-linter's grimp find a package's modules by walking its folder, so they would not see
`flywheel.loop` under `flywheel/`. This builds ``DEST/flywheel`` (the core's entries linked one by
one, each mapped folder linked in as its subpackage) and ``DEST/benchmarks``, read from pyproject.toml.

    python tests/installed_tree.py .checks_tree
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(dest: Path, root: Path = ROOT, *, copy: bool = False) -> Path:
    """(Re)build the linked tree under ``dest`` (with ``copy``, copies: a test may plant a module); returns it."""
    mapping: dict[str, str] = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(dest, ignore_errors=True)
    core = dest / mapping["flywheel"]
    core.mkdir(parents=True)
    for entry in (root / "flywheel").iterdir():
        if entry.name != "__pycache__":
            _place(entry, core / entry.name, copy)
    for package, folder in mapping.items():
        if package != "flywheel":
            _place(root / folder, dest / package.replace(".", "/"), copy)
    _place(root / "benchmarks", dest / "benchmarks", copy)
    return dest


def _place(source: Path, target: Path, copy: bool) -> None:
    if not copy:
        target.symlink_to(source, target_is_directory=source.is_dir())
    elif source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(source, target)


if __name__ == "__main__":
    build(Path(sys.argv[1]).resolve())
