"""Helpers for the benchmarks: timing, peak memory of a child process, printing figures."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out"
BIN = Path(sys.executable).parent


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Run a command; return (seconds, the child's peak RSS in MB, the process)."""
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    # ru_maxrss of children is the largest single child so far, in KB on Linux.
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return elapsed, rss_mb, proc


def report(name: str, figures: dict[str, Any], targets: dict[str, bool]) -> bool:
    """Print figures and pass/fail per target; keep them in benchmarks/out/NAME.json."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps({"figures": figures, "targets": targets}, indent=2))
    print(f"== {name}")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    for target, ok in targets.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {target}")
    return all(targets.values())
