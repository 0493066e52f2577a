"""The layering contract (README, "Architecture"): each folder imports only the layers below it.

Every import in every module counts, also one inside a function: a lazy import is still a
dependency. The core ``flywheel`` knows nothing of the cycle, Prefect or the simulator; the
improvers sit on the evaluation (they screen drafts by running the product's pipeline, DESIGN.md's
``improvers -> evals, core``), which sits on the core; ``loop`` is the cycle without Prefect;
``flows`` is Prefect and nothing of the faces; ``sim`` serves only the faces (the demo) and tests.
"""

from __future__ import annotations

import ast
from pathlib import Path
from nonempty import every

ROOT = Path(__file__).resolve().parent.parent

# layer -> the first-party layers it may import (itself included)
MAY_IMPORT = {
    "flywheel": {"flywheel"},
    "improvers": {"improvers", "evals", "flywheel"},
    "evals": {"evals", "flywheel"},
    "loop": {"loop", "improvers", "evals", "flywheel"},
    "flows": {"flows", "loop", "improvers", "evals", "flywheel"},
    "app": {"app", "flows", "loop", "improvers", "evals", "flywheel", "sim"},
    "sim": {"sim", "evals", "flywheel"},  # it mirrors the pipeline's context format, embeds like the core
}
# third-party packages reserved to some layers
RESERVED = {"prefect": {"flows"}, "prefect_dask": {"flows"}, "typer": {"app"}}


MAPPED = {"flows", "improvers", "evals", "loop", "app", "sim"}  # folders mapped into `flywheel.`


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to: `flywheel.loop.gate` -> loop, `flywheel.state` -> flywheel;
    a third-party module is its top-level name."""
    parts = module.split(".")
    if parts[0] == "flywheel" and len(parts) > 1 and parts[1] in MAPPED:
        return parts[1]
    return parts[0]


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, layer or top-level module) of every import in the file, at any depth."""
    package = path.relative_to(root).parent.parts
    if package and package[0] in MAPPED:
        package = ("flywheel", *package)  # what the installed name is
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, layer_of(alias.name)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module or ""]).strip(".")
            else:
                name = node.module or ""
            out.append((node.lineno, layer_of(name)))
    return out


def modules() -> list[Path]:
    return sorted(p for layer in MAY_IMPORT for p in (ROOT / layer).rglob("*.py"))


def wrong_way(path: Path, root: Path = ROOT) -> list[str]:
    layer = path.relative_to(root).parts[0]
    problems = []
    for line, top in imports_of(path, root):
        if top in MAY_IMPORT and top not in MAY_IMPORT[layer]:
            problems.append(f"{path.relative_to(root)}:{line}: {layer} imports {top}")
        if top in RESERVED and layer not in RESERVED[top]:
            problems.append(f"{path.relative_to(root)}:{line}: {layer} imports {top} (only {', '.join(RESERVED[top])})")
    return problems


def test_every_layer_exists() -> None:
    assert every((ROOT / layer / "__init__.py").is_file() for layer in MAY_IMPORT)


def test_no_module_imports_a_layer_above_it() -> None:
    problems = [p for path in modules() for p in wrong_way(path)]
    assert not problems, "wrong-way imports:\n" + "\n".join(problems)


def test_the_contract_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "flywheel" / "knowledge" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from flywheel.loop.gate import gate_step\n    import flywheel.sim.world\n"
                     "    import prefect\n    from .. import state\n    from ..feedback import store\n")
    found = [p.split(": ", 1)[1] for p in wrong_way(probe, tmp_path)]
    assert found == ["flywheel imports loop", "flywheel imports sim", "flywheel imports prefect (only flows)"]


def test_only_the_faces_use_the_simulator() -> None:
    """Besides the tests and the benchmarks, which are no layer."""
    users = {path.relative_to(ROOT).parts[0] for path in modules() if any(top == "sim" for _, top in imports_of(path))}
    assert users <= {"app", "sim"}
