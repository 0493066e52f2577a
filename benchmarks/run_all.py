"""Run every benchmark and print its figures (`make bench`)."""

from __future__ import annotations

import importlib

BENCHMARKS = (
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
    "bench_efficacy",
    "bench_watch",
    "bench_live",
    "bench_import",
)


def main() -> int:
    failed = [name for name in BENCHMARKS if not importlib.import_module(f"benchmarks.{name}").main()]
    print("all targets met" if not failed else f"targets missed in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
