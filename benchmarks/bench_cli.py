"""CLI start: from process start to the first useful output, for commands that need no model.

Target (issue 31): under 2 s for each, the median of ``--runs`` runs. Each command runs as a user
runs it (`flywheel ...` in a fresh process, in a fresh FLYWHEEL_HOME); the clock stops at its first
byte on stdout or stderr (a usage error's one line counts: it is the answer), and the time to exit
is reported beside it.
"""

from __future__ import annotations

import argparse
import os
import selectors
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._util import BIN, Target, parse_args, report

BOUND_S = 2.0
COMMANDS: dict[str, tuple[list[str], int]] = {  # name -> (arguments, expected exit code)
    "--help": (["--help"], 0),
    "--version": (["--version"], 0),
    "config": (["config"], 0),
    "triage --help": (["triage", "--help"], 0),
    "usage error (unknown command)": (["no-such-command"], 2),
    "usage error (ingest, no file)": (["ingest"], 2),
}


def first_output(args: list[str], env: dict[str, str], expected: int) -> tuple[float, float]:
    """(seconds to the first byte on stdout or stderr, seconds to exit) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None  # both PIPE
    first = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                if os.read(key.fd, 65536):  # type: ignore[arg-type]
                    first = first if first is not None else time.perf_counter() - start
                else:
                    sel.unregister(key.fileobj)
    code = proc.wait()
    done = time.perf_counter() - start
    if code != expected:
        raise SystemExit(f"{' '.join(args)} exited {code}, expected {expected}")
    return (first if first is not None else done), done


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="Runs per command (the median is reported).")
    args = parse_args(parser, argv, runs=1)
    figures: dict[str, object] = {"runs": args.runs}
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FLYWHEEL_HOME": str(Path(tmp) / "home")}
        for name, (command, expected) in COMMANDS.items():
            runs = [first_output([str(BIN / "flywheel"), *command], env, expected) for _ in range(args.runs)]
            first = round(statistics.median(r[0] for r in runs), 2)
            figures[f"{name}: first output s"] = first
            figures[f"{name}: exit s"] = round(statistics.median(r[1] for r in runs), 2)
            targets.append(Target.of(f"flywheel {name}: start to first output", first, "<", BOUND_S, "s"))
    return report("cli", figures, targets)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
