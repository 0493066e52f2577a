"""`benchmarks/bench_import.py --smoke`: every source's data is written, imported by the real CLI (or
posted to a real `flywheel serve`), imported again, and reported; the speed targets are the full
run's business (a few dozen traces say nothing of speed), the counts are checked here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks are not installed: they live beside the tests
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_import  # noqa: E402
from benchmarks._util import OUT_ENV, load_targets, out_dir  # noqa: E402


@pytest.mark.slow
def test_smoke_reports_every_source_and_a_reimport_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OUT_ENV, str(tmp_path))
    bench_import.main(["--smoke"])
    result = json.loads((out_dir() / "import_smoke.json").read_text())
    assert result["smoke"] is True
    figures, targets = result["figures"], {t.name: t.met for t in load_targets(result["targets"])}
    n = figures["traces"]
    for source in ("mlflow", "otlp", "traces", "langfuse"):
        assert figures[f"{source}_accepted"] == n, source
        assert figures[f"{source}_reimport_new"] == 0, source
        assert figures[f"{source}_events_per_s"] > 0, source
        assert figures[f"{source}_seconds"] > 0, source
    for source in ("mlflow", "otlp", "langfuse"):
        assert figures[f"{source}_reimport_duplicates"] == n, source
        assert 0 < figures[f"{source}_peak_rss_mb"] < 500, source
    assert figures["traces_spans"] == 3 * n and figures["traces_spans_per_s"] > 0
    assert figures["traces_rejected_spans"] == 0
    assert targets["every trace's feedback stored"] and targets["a re-import stores nothing new (each source)"]
