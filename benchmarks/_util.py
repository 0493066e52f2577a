"""Helpers for the benchmarks: timing, peak memory of a child process, printing figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out"
BIN = Path(sys.executable).parent


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
