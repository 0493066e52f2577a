"""Helpers for the benchmarks: sizes and ``--smoke``, timing, peak memory of a child process, and the
figures and targets each benchmark reports (kept as JSON for ``run_all`` and ``RESULTS.md``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

BIN = Path(sys.executable).parent
OUT_ENV = "FLYWHEEL_BENCH_OUT"  # where figures go (tests and run_all's children point it elsewhere)
# A Prefect API the benchmark's flows run on instead of one of its own: the test suite hands its smoke
# runs the test server its process already runs (starting another costs each smoke run seconds of CPU).
PREFECT_ENV = "FLYWHEEL_BENCH_PREFECT_API"
_DEFAULT_OUT = Path(__file__).parent / "out"
OUT = _DEFAULT_OUT  # the default; read the place with out_dir()

Comparison = Literal["<", "<=", ">", ">=", "==", ""]
_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


def given_prefect_api() -> AbstractContextManager[Any] | None:
    """Prefect settings pointing at ``$FLYWHEEL_BENCH_PREFECT_API`` while the block runs, or None when
    it is not set (the benchmark then uses a server of its own, or the ephemeral API)."""
    url = os.environ.get(PREFECT_ENV)
    if not url:
        return None
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: url})


def out_dir() -> Path:
    """Where figures are written: ``$FLYWHEEL_BENCH_OUT`` if set, else ``benchmarks/out``."""
    path = Path(os.environ.get(OUT_ENV) or _DEFAULT_OUT)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True, slots=True)
class Target:
    """One target of a benchmark: the figure measured, the bound it is held to, and whether it was met.

    ``comparison`` is how the figure must relate to the bound (``figure <= bound``...); empty for a
    yes/no check (``figure`` then None or a count, ``bound`` None)."""

    name: str
    met: bool
    figure: float | int | str | None = None
    unit: str = ""
    bound: float | int | None = None
    comparison: Comparison = ""

    @classmethod
    def of(cls, name: str, figure: float | int, comparison: Comparison, bound: float | int, unit: str = "") -> Target:
        """A numeric target, met when ``figure comparison bound`` holds."""
        return cls(name, bool(_OPS[comparison](figure, bound)), figure, unit, bound, comparison)

    @classmethod
    def check(cls, name: str, met: bool) -> Target:
        """A yes/no target (everything accepted, nothing embedded twice...)."""
        return cls(name, bool(met))

    def bound_text(self) -> str:
        """``<= 60 s``, or ``yes`` for a check."""
        if not self.comparison:
            return "yes"
        return f"{self.comparison} {self.bound:g}{' ' + self.unit if self.unit else ''}"

    def figure_text(self) -> str:
        if self.figure is None:
            return "yes" if self.met else "no"
        shown = f"{self.figure:g}" if isinstance(self.figure, float) else str(self.figure)
        return f"{shown}{' ' + self.unit if self.unit else ''}"


Targets = Mapping[str, bool] | Sequence[Target]


def as_targets(targets: Targets) -> list[Target]:
    """Targets given either way (a name -> met mapping, as older callers pass, or Target records)."""
    if isinstance(targets, Mapping):
        return [Target.check(name, bool(ok)) for name, ok in targets.items()]
    return list(targets)


_SMOKE = False  # set by parse_args when --smoke is given: recorded with the figures


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, **smoke: Any) -> argparse.Namespace:
    """Parse with a ``--smoke`` flag added: a tiny run (``smoke``: the sizes it uses) that proves the
    benchmark imports, runs and reports, in seconds. Sizes given explicitly on the command line win."""
    global _SMOKE
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes: runs in seconds (the test suite's run).")
    args = parser.parse_args(argv)
    _SMOKE = args.smoke
    if args.smoke:
        given = set(argv if argv is not None else sys.argv[1:])
        for key, value in smoke.items():
            flag = "--" + key.replace("_", "-")
            if not any(a == flag or a.startswith(flag + "=") for a in given):
                setattr(args, key, value)
    return args


def _hwm_mb(pid: int) -> int:
    """The process's own peak resident memory (VmHWM), in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def run_child(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Run a command; return (seconds, its peak RSS in MB, the completed process).

    The peak is sampled from /proc (VmHWM) while it runs: ``RUSAGE_CHILDREN`` would report the
    parent's memory for a child forked from a big parent, since Linux keeps that high-water mark
    across exec.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env={**os.environ, **(env or {})})
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _hwm_mb(proc.pid))
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(args, proc.returncode, out.read(), err.read())
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, peak, done


def report(name: str, figures: dict[str, Any], targets: Targets) -> bool:
    """Print figures and pass/fail per target; keep them in ``out_dir()/NAME.json``; True when all are met.

    ``targets``: :class:`Target` records (figure, bound, met) or a plain ``{name: met}`` mapping."""
    records = as_targets(targets)
    met = all(t.met for t in records)
    record = {
        "name": name,
        "smoke": _SMOKE,
        "met": met,
        "figures": figures,
        "targets": [asdict(t) for t in records],
    }
    (out_dir() / f"{name}.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"== {name}{' (smoke)' if _SMOKE else ''}")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    for t in records:
        detail = f" ({t.figure_text()}, target {t.bound_text()})" if t.comparison else ""
        print(f"  [{'PASS' if t.met else 'FAIL'}] {t.name}{detail}")
    return met


def load_targets(raw: list[dict[str, Any]] | dict[str, bool]) -> list[Target]:
    """Targets as read back from a figures file (this format, or the older name -> met mapping)."""
    if isinstance(raw, dict):
        return as_targets(raw)
    return [Target(**t) for t in raw]
