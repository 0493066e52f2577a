"""Every benchmark runs at its smoke size (imports, runs, reports its figures), so a refactor cannot
break one silently; and `run_all` turns results into RESULTS.md. Speed targets are the benchmarks'
own business (a smoke run's figures are not held to them here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks import run_all
from benchmarks._util import OUT_ENV, PREFECT_ENV, Target, load_targets, report

ROOT = Path(__file__).resolve().parent.parent
_CHILD = (
    "import sys; from benchmarks.{module} import main; met = main(['--smoke']); "
    "sys.exit(0 if met is True else 1 if met is False else 3)"
)


# bench_import's smoke run has its own test, which also checks each source's counts
# (tests/test_bench_import_smoke.py): it is not run twice.
SMOKED_ELSEWHERE = {"bench_import"}
# Benchmarks whose flows run on a Prefect API: their smoke runs are given the test process's server.
RUN_FLOWS = {"bench_cycle", "bench_efficacy", "bench_worker"}


@pytest.mark.slow
@pytest.mark.parametrize("module", [m for m in run_all.BENCHMARKS if m not in SMOKED_ELSEWHERE])
def test_each_benchmark_runs_at_smoke_size_and_reports_its_figures(
    module: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, OUT_ENV: str(out), "PYTHONPATH": str(ROOT)}
    if module in RUN_FLOWS:  # this process's Prefect test server, not one more of their own
        env[PREFECT_ENV] = request.getfixturevalue("prefect_api")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(module=module)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), f"{module} did not run through (exit {done.returncode}):\n{done.stderr[-4000:]}"
    reports = [json.loads(p.read_text()) for p in out.glob("*.json")]
    reports = [r for r in reports if "figures" in r and "targets" in r]
    assert reports, f"{module} wrote no figures"
    for r in reports:
        assert r["smoke"] is True
        assert r["figures"], r
        assert r["met"] == all(t.met for t in load_targets(r["targets"]))
        assert f"== {r['name']} (smoke)" in done.stdout  # and printed them
    assert (done.returncode == 0) == all(r["met"] for r in reports)


def test_report_takes_target_records_or_a_name_to_met_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OUT_ENV, str(tmp_path))
    assert report("plain", {"n": 1}, {"ok": True, "also ok": True}) is True
    assert (
        report("typed", {"rate": 9}, [Target.of("rate", 9, ">=", 10, "events/s"), Target.check("ran", True)]) is False
    )
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert [(t.name, t.met) for t in load_targets(plain["targets"])] == [("ok", True), ("also ok", True)]
    typed = load_targets(json.loads((tmp_path / "typed.json").read_text())["targets"])
    assert typed[0] == Target("rate", False, 9, "events/s", 10, ">=")
    assert (typed[0].figure_text(), typed[0].bound_text()) == ("9 events/s", ">= 10 events/s")
    assert load_targets({"old format": False}) == [Target.check("old format", False)]


def _fake(module: str, name: str, figures: dict[str, object], targets: list[Target]) -> run_all.Outcome:
    """One benchmark's outcome as run_one would read it back from its figures file."""
    record = {"name": name, "smoke": False, "figures": figures, "targets": [asdict(t) for t in targets]}
    return run_all.Outcome(module, seconds=1.5, cpu_seconds=1.2, reports={name: record})


def test_run_all_writes_results_md_with_each_target_the_peer_and_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = {
        "bench_ingest": _fake(
            "bench_ingest",
            "ingest",
            {"events_per_s": 26_000},
            [Target.of("SQLite ingest", 26_000, ">=", 25_000, "events/s")],
        ),
        "bench_eval": _fake(
            "bench_eval",
            "eval",
            {"seconds": 5.0, "items": 1000, "mlflow_seconds": 20.0, "mlflow_ratio": 0.25},
            [Target.of("evaluation time / ideal", 1.4, "<=", 1.3)],
        ),
        "bench_cli": run_all.Outcome("bench_cli", error="exited 2"),
    }
    ran: list[tuple[str, list[str]]] = []

    def run_one(module: str, argv: list[str]) -> run_all.Outcome:
        ran.append((module, argv))
        return fake[module]

    monkeypatch.setattr(run_all, "run_one", run_one)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setenv(OUT_ENV, str(tmp_path / "out"))
    code = run_all.main(["--only", "ingest", "bench_eval", "cli"])
    assert code == 1  # a target missed and an error
    assert not (tmp_path / "RESULTS.md").exists()  # a part of the set never overwrites the full run's file
    assert ran == [("bench_ingest", []), ("bench_eval", []), ("bench_cli", [])]

    monkeypatch.setattr(run_all, "BENCHMARKS", tuple(fake))
    assert run_all.main([]) == 1
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| benchmark | target | figure | bound | met |" in text
    assert "| ingest | SQLite ingest | 26000 events/s | >= 25000 events/s | yes |" in text
    assert "| eval | evaluation time / ideal | 1.4 | <= 1.3 | **no** |" in text
    assert "| bench_cli | (did not run through: exited 2) | | | **error** |" in text
    assert "1 of 3 benchmarks met every target." in text
    assert "ratio 0.25" in text and "mlflow_seconds" not in text
    for key in ("- CPU: ", "- RAM: ", "- Python: ", "- Date: ", "- Git revision: "):
        assert key in text

    (tmp_path / "RESULTS.md").unlink()
    assert run_all.main(["--smoke"]) == 1
    assert (tmp_path / "out" / "RESULTS-smoke.md").exists() and not (tmp_path / "RESULTS.md").exists()
    assert all(argv == ["--smoke"] for _, argv in ran[-3:])


def test_run_all_refuses_an_unknown_benchmark_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run_all.main(["--only", "bench_nothing"])
    assert exc.value.code == 2
    assert "unknown benchmark(s): bench_nothing" in capsys.readouterr().err
