"""Run the benchmarks in turn and write ``benchmarks/RESULTS.md`` (`make bench`).

``python -m benchmarks.run_all [--smoke] [--only NAME ...]``. Each benchmark runs in its own process
(``python -m benchmarks.NAME``: the offline switches, environment and loaded models of one do not leak
into the next); one that fails is recorded with its error and the others still run. The table printed
and the file written list each target: the figure, the bound, met or not; the peer ratio against
``mlflow.genai.evaluate`` (bench_eval's figures of this run); and the machine. A ``--smoke`` run (tiny
sizes) writes ``benchmarks/out/RESULTS-smoke.md`` and an ``--only`` run ``benchmarks/out/RESULTS-only.md``
instead: RESULTS.md is always the whole set at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._util import OUT_ENV, Target, load_targets, out_dir

BENCHMARKS = (
    "bench_cli",
    "bench_embed",
    "bench_scrub",
    "bench_pii",
    "bench_ingest",
    "bench_triage",
    "bench_kb",
    "bench_dataset",
    "bench_eval",
    "bench_cycle",
    "bench_serve",
    "bench_auth",
    "bench_efficacy",
    "bench_watch",
    "bench_live",
    "bench_worker",
    "bench_import",
)
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "RESULTS.md"
# bench_eval's figures naming the peer (mlflow.genai.evaluate on the same items and endpoint)
PEER_FIGURES = ("mlflow_seconds", "mlflow_ratio")


@dataclass
class Outcome:
    """One benchmark's run: its reports (name -> the figures file's content), or the error that stopped it."""

    module: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None

    @property
    def targets(self) -> list[tuple[str, Target]]:
        return [(name, t) for name, r in self.reports.items() for t in load_targets(r.get("targets", []))]

    @property
    def met(self) -> bool:
        return self.error is None and all(t.met for _, t in self.targets)


def run_one(module: str, argv: list[str]) -> Outcome:
    """``python -m benchmarks.MODULE ARGV`` with its figures sent to a fresh directory, then read back."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, OUT_ENV: tmp}
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *argv], cwd=ROOT, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        outcome = Outcome(
            module,
            seconds=time.perf_counter() - start,
            cpu_seconds=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        )
        for path in sorted(Path(tmp).glob("*.json")):
            data = json.loads(path.read_text())
            if "figures" in data and "targets" in data:
                outcome.reports[path.stem] = data
            (out_dir() / path.name).write_text(path.read_text())  # kept beside the others
    if done.returncode not in (0, 1):
        outcome.error = f"exited {done.returncode}"
    elif not outcome.reports:
        outcome.error = "reported no figures"
    return outcome


def machine() -> dict[str, str]:
    """What the figures were measured on: CPU, cores, memory, Python, date, git revision."""
    cpu, cores = platform.processor() or platform.machine(), os.cpu_count() or 0
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    return {
        "CPU": f"{cpu}, {cores} cores"
        + (f" (usable: {len(os.sched_getaffinity(0))})" if hasattr(os, "sched_getaffinity") else ""),
        "RAM": ram,
        "Python": platform.python_version(),
        "Date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "Git revision": (rev.stdout.strip() or "unknown") + (" (uncommitted changes)" if dirty.stdout.strip() else ""),
        "Load average (1 min) at the end": f"{os.getloadavg()[0]:.1f}",
    }


def peer_line(outcomes: list[Outcome]) -> str:
    """The peer ratio from bench_eval's figures of this run, or why there is none."""
    for o in outcomes:
        report = o.reports.get("eval")
        if report is None:
            continue
        figures = report["figures"]
        if all(k in figures for k in PEER_FIGURES):
            return (
                f"Flywheel's evaluation took {figures['seconds']} s, `mlflow.genai.evaluate` "
                f"{figures['mlflow_seconds']} s on the same {figures['items']} items and endpoint: "
                f"ratio {figures['mlflow_ratio']} (Flywheel / MLflow; below 1 is faster)."
            )
        return "bench_eval ran but did not measure `mlflow.genai.evaluate` (no peer figures)."
    return "not measured: bench_eval was not run."


def render(outcomes: list[Outcome], smoke: bool, info: dict[str, str]) -> str:
    """RESULTS.md: the targets table, failures, the peer ratio, the machine."""
    lines = [
        "# Benchmark results" + (" (smoke sizes: not figures to quote)" if smoke else ""),
        "",
        "Written by `make bench` (`python -m benchmarks.run_all`); each benchmark's figures are in",
        "`benchmarks/out/NAME.json`.",
        "",
        "| benchmark | target | figure | bound | met |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        if o.error is not None:
            lines.append(f"| {o.module} | (did not run through: {o.error}) | | | **error** |")
        for name, t in o.targets:
            lines.append(
                f"| {name} | {t.name} | {t.figure_text()} | {t.bound_text()} | {'yes' if t.met else '**no**'} |"
            )
        if o.error is None and not o.targets:
            lines.append(f"| {o.module} | (no targets at this size) | | | |")
    met = sum(o.met for o in outcomes)
    lines += [
        "",
        f"{met} of {len(outcomes)} benchmarks met every target.",
        "",
        "## Run times",
        "",
        "| benchmark | wall s | CPU s |",
        "|---|---|---|",
        *(f"| {o.module} | {o.seconds:.1f} | {o.cpu_seconds:.1f} |" for o in outcomes),
        "",
        "## Peer: `mlflow.genai.evaluate`",
        "",
        peer_line(outcomes),
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes (seconds each); writes out/RESULTS-smoke.md.")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="Only these benchmarks (bench_ingest or ingest).")
    args = parser.parse_args(argv)
    chosen = list(BENCHMARKS)
    if args.only:
        wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in args.only]
        unknown = [n for n in wanted if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        chosen = wanted
    outcomes = []
    for module in chosen:
        print(f"-- {module}", flush=True)
        outcomes.append(done := run_one(module, ["--smoke"] if args.smoke else []))
        state = done.error or ("targets met" if done.met else "targets missed")
        print(f"-- {module}: {done.seconds:.1f} s, {done.cpu_seconds:.1f} s CPU, {state}", flush=True)
    text = render(outcomes, args.smoke, machine())
    if args.smoke:
        target = out_dir() / "RESULTS-smoke.md"
    elif args.only:  # a part of the set: beside its figures, the full run's file stays whole
        target = out_dir() / "RESULTS-only.md"
    else:
        target = RESULTS
    target.write_text(text)
    print(text)
    print(f"written: {target}")
    failed = [o.module for o in outcomes if not o.met]
    print("all targets met" if not failed else f"targets missed or errors in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
