"""`flywheel import` from each source (issue 30 part 6): N traces with feedback per source, written a
batch at a time and imported in a child process (time and peak RSS of the import itself), then
imported again, which must store nothing new.

- mlflow: traces with a person's assessment logged into a local SQLite tracking store
  (:func:`benchmarks.import_data.log_mlflow`), then `flywheel import mlflow --experiment`;
- otlp: an OTLP JSON file, a request of 100 traces a line, then `flywheel import otlp FILE`;
- traces: the same requests protobuf-encoded, POSTed to `/v1/traces` of a `flywheel serve` child on
  127.0.0.1 with an ingest key, from 4 client threads (spans/s; the server's peak RSS);
- langfuse: scores and traces served by a local Langfuse API (:mod:`benchmarks.langfuse_api`), then
  `flywheel import langfuse` (no target: the figure is events/s, with one trace read per score).

Each figure counts the child's whole run, start-up included. Targets (2 cores): >= 2,000 events/s
for the file and MLflow imports, >= 1,000 spans/s through POST /v1/traces, peak RSS < 500 MB, and
a re-import of each source stores nothing new. ``--smoke`` runs 40 traces, the sources side by side;
``--mlflow-traces`` sizes MLflow's run alone, 20,000 by default (its traces are written at ~100 a second
on 2 idle cores, far slower on busy ones: generation is not timed, but it bounds what a run can afford).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._util import BIN, Target, _hwm_mb, parse_args, report, run_child
from benchmarks.bench_serve import Server
from benchmarks.import_data import (
    SOURCES,
    LangfuseServer,
    child_env,
    post_bodies,
    read_protobuf_bodies,
    stored_count,
    synthetic_events,
    write_langfuse,
    write_otlp_json,
    write_otlp_protobuf,
)

EXPERIMENT = "support-bot"
ROOT = Path(__file__).parent.parent


def _import(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[float, int, dict[str, Any]]:
    seconds, rss, done = run_child(
        [str(BIN / "flywheel"), "import", *args, "--json"], env=child_env(home, **(env or {}))
    )
    return seconds, rss, json.loads(done.stdout)


def _figures(first: tuple[float, int, dict[str, Any]], again: tuple[float, int, dict[str, Any]]) -> dict:
    seconds, rss, out = first
    return {
        "seconds": round(seconds, 1),
        "events_per_s": round(out["accepted"] / seconds),
        "peak_rss_mb": max(rss, again[1]),
        "accepted": out["accepted"],
        "rejected": out["rejected"],
        "reimport_new": again[2]["accepted"],
        "reimport_duplicates": again[2]["duplicates"],
        "reimport_seconds": round(again[0], 1),
        "first_rejection": out["errors"][0]["error"] if out["errors"] else None,
    }


def run_mlflow(tmp: Path, n: int) -> dict[str, Any]:
    home = tmp / "mlflow-home"
    home.mkdir()
    uri = f"sqlite:///{home.resolve()}/mlflow.db"  # the home's own tracking store, where the import looks
    subprocess.run(
        [sys.executable, "-m", "benchmarks.import_data", "mlflow", uri, EXPERIMENT, "--synthetic", str(n)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = _import(home, "mlflow", "--experiment", EXPERIMENT)
    again = _import(home, "mlflow", "--experiment", EXPERIMENT, "--since", "2000-01-01")
    return _figures(first, again)


def run_otlp(tmp: Path, n: int) -> dict[str, Any]:
    path = tmp / "otlp.jsonl"
    write_otlp_json(path, synthetic_events(n))
    home = tmp / "otlp-home"
    first = _import(home, "otlp", str(path))
    again = _import(home, "otlp", str(path))
    return _figures(first, again) | {"file_mb": round(path.stat().st_size / 1e6, 1)}


def run_traces(tmp: Path, n: int, threads: int) -> dict[str, Any]:
    bodies = tmp / "otlp.bin"
    _, spans = write_otlp_protobuf(bodies, synthetic_events(n))
    server = Server(tmp / "serve-home")
    server.env = child_env(server.home)
    key = server.cli("keys", "create", "collector", "--scope", "ingest")["key"]
    url = server.start(workers=1)
    try:
        first = post_bodies(url, key, read_protobuf_bodies(bodies), threads)
        stored = stored_count(server.home)
        again = post_bodies(url, key, read_protobuf_bodies(bodies), threads)
        stored_again = stored_count(server.home)
        rss = _hwm_mb(server.proc.pid)
    finally:
        server.stop()
    return {
        "requests": first.requests,
        "spans": spans,
        "seconds": round(first.seconds, 1),
        "spans_per_s": round(spans / first.seconds),
        "events_per_s": round(stored / first.seconds),
        "server_peak_rss_mb": rss,
        "accepted": stored,
        "rejected_spans": first.rejected_spans,
        "busy_retries": first.retried + again.retried,
        "first_rejection": first.first_error,
        "reimport_new": stored_again - stored,
        "reimport_seconds": round(again.seconds, 1),
    }


def run_langfuse(tmp: Path, n: int) -> dict[str, Any]:
    folder = tmp / "langfuse"
    write_langfuse(folder, synthetic_events(n))
    home = tmp / "langfuse-home"
    with LangfuseServer(folder) as api:
        first = _import(home, "langfuse", env=api.env)
        again = _import(home, "langfuse", "--since", "2000-01-01", env=api.env)
    return _figures(first, again)


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_import")
    parser.add_argument("--traces", type=int, default=100_000, help="traces with feedback per source")
    parser.add_argument(
        "--mlflow-traces",
        type=int,
        default=20_000,
        help="traces for MLflow (default 20,000): writing one through MLflow's store costs ~10 ms, so 100k take "
        "~20 min to write on 2 idle cores (hours on busy ones) before the import is timed",
    )
    parser.add_argument("--threads", type=int, default=4, help="client threads posting to /v1/traces")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES), help="the sources to run")
    args = parse_args(parser, argv)  # --smoke: 40 traces, the sources side by side, a quick check
    n = 40 if args.smoke else args.traces
    n_mlflow = n if args.smoke else min(n, args.mlflow_traces)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        runs = {
            "mlflow": lambda: run_mlflow(tmp, n_mlflow),
            "otlp": lambda: run_otlp(tmp, n),
            "traces": lambda: run_traces(tmp, n, args.threads),
            "langfuse": lambda: run_langfuse(tmp, n),
        }
        runs = {source: run for source, run in runs.items() if source in args.sources}
        if args.smoke:  # the figures of a few seconds' run say nothing of speed: no need to wait in turn
            with ThreadPoolExecutor(len(runs)) as pool:
                futures = {source: pool.submit(run) for source, run in runs.items()}
                results = {source: f.result() for source, f in futures.items()}
        else:
            results = {source: run() for source, run in runs.items()}
    figures: dict[str, Any] = {"traces": n} | ({"mlflow_traces": n_mlflow} if "mlflow" in results else {})
    for source, result in results.items():
        figures |= {f"{source}_{k}": v for k, v in result.items()}
    speed = {
        "mlflow": ("mlflow import", "events_per_s", 2000, "events/s"),
        "otlp": ("otlp file import", "events_per_s", 2000, "events/s"),
        "traces": ("POST /v1/traces", "spans_per_s", 1000, "spans/s"),
    }
    targets = [
        Target.of(name, results[s][key], ">=", least, unit)
        for s, (name, key, least, unit) in speed.items()
        if s in results
    ]
    rss = max(r.get("peak_rss_mb", r.get("server_peak_rss_mb", 0)) for r in results.values())
    targets += [
        Target.of("peak RSS (every import, the server)", rss, "<", 500, "MB"),
        Target.check(
            "every trace's feedback stored",
            all(r["accepted"] == (n_mlflow if source == "mlflow" else n) for source, r in results.items()),
        ),
        Target.check(
            "a re-import stores nothing new (each source)", all(r["reimport_new"] == 0 for r in results.values())
        ),
    ]
    return report("import_smoke" if args.smoke else "import", figures, targets)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
