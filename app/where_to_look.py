"""The commands printed for a person to paste: they must run as printed, from where they stand.

A bare ``mlflow`` is not on the PATH when Flywheel lives in a virtual environment nobody activated
(``make demo`` creates ``.venv`` and runs ``.venv/bin/flywheel``), so the MLflow CLI is named by
its path: the one installed beside the running interpreter."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def mlflow_executable(cwd: Path | None = None) -> str:
    """``.venv/bin/mlflow`` relative to ``cwd`` when it lies below it, else its absolute path; a bare
    ``mlflow`` only when none is installed beside the interpreter."""
    bin_dir = Path(sys.executable).absolute().parent  # not resolved: a venv's python is a symlink
    exe = next((p for p in (bin_dir / "mlflow", bin_dir / "mlflow.exe") if p.exists()), None)
    if exe is None:
        return "mlflow"
    try:
        return str(exe.relative_to((cwd or Path.cwd()).absolute()))
    except ValueError:
        return str(exe)


def mlflow_ui_command(tracking_uri: str, cwd: Path | None = None) -> str:
    """The ``mlflow ui`` line for a tracking URI, quoted for a POSIX shell."""
    return shlex.join([mlflow_executable(cwd), "ui", "--backend-store-uri", tracking_uri, "--workers", "1"])
