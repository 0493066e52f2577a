"""What a watch leaves behind: a chart of the negative rate by version over time, and one MLflow
run ``flywheel-watch`` (tag ``flywheel.kind=watch``) that every watch logs to: a metric per
comparison (its negative rate and difference, stepped by time), the latest document and the chart.
The Prefect flow shows the same as a Markdown artifact (:func:`watch_markdown`).
"""

from __future__ import annotations

import base64
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flywheel.config import Settings
from flywheel.loop.watch import WatchReport
from flywheel.loop.watch_data import VERSION_COLUMN, RatedEvents
from flywheel.runtime import Runtime

CHART = "watch/negative_rate_by_version.png"
RUN_NAME = "flywheel-watch"


def rates_by_version(data: RatedEvents, kind: str, max_versions: int = 6) -> pd.DataFrame:
    """Negative rate per time bucket (hours over two days or less, else days) and version of ``kind``:
    one column a version (the most rated ones), one row a bucket. Production events only."""
    if data.size == 0:
        return pd.DataFrame()
    column = VERSION_COLUMN[kind]
    frame = data.frame[data.not_canary()]
    frame = frame[frame[column].notna()]
    if frame.empty:
        return pd.DataFrame()
    span = float(frame["ts"].max() - frame["ts"].min())
    width = 3600.0 if span <= 2 * 86400 else 86400.0
    top = frame[column].value_counts().index[:max_versions]
    frame = frame[frame[column].isin(top)].assign(
        bucket=lambda f: pd.to_datetime((f["ts"] // width) * width, unit="s", utc=True),
        version=lambda f: f[column].astype(str),
    )
    return frame.groupby(["bucket", "version"])["negative"].mean().unstack("version").sort_index()


def chart(data: RatedEvents) -> bytes | None:
    """A PNG: one panel a kind, one line a version, negative rate over time. None without data."""
    panels = [(kind, table) for kind in VERSION_COLUMN if not (table := rates_by_version(data, kind)).empty]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), dpi=100, squeeze=False)
    for ax, (kind, table) in zip(axes[0], panels, strict=True):
        for version in table.columns:
            series = table[version].dropna()
            ax.plot(series.index, series.to_numpy(np.float64), marker=".", label=f"{kind} {version}")
        ax.set_ylim(0, 1)
        ax.set_title(f"negative rate by {kind} version")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def log_watch(settings: Settings, client: Any, report: WatchReport, png: bytes | None) -> str:
    """Log this watch to the one ``flywheel-watch`` MLflow run (created the first time); its id.
    ``client``: the process's MLflow client."""
    experiment = client.get_experiment_by_name(settings.experiment)
    found = client.search_runs([experiment.experiment_id], "tags.`flywheel.kind` = 'watch'", max_results=1)
    run_id = (
        found[0].info.run_id
        if found
        else client.create_run(experiment.experiment_id, run_name=RUN_NAME, tags={"flywheel.kind": "watch"}).info.run_id
    )
    now_ms, step = int(time.time() * 1000), int(time.time())
    for row in report.watches:
        key = f"watch.{row.scope}.{row.kind}.{row.version}"
        for name in ("negative_rate", "difference"):
            value = getattr(row.comparison, name)
            if value is not None:
                client.log_metric(run_id, f"{key}.{name}", float(value), timestamp=now_ms, step=step)
    client.log_dict(run_id, report.public(), "watch/latest.json")
    if png:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / CHART.rsplit("/", 1)[1]
            path.write_bytes(png)
            client.log_artifact(run_id, str(path), CHART.rsplit("/", 1)[0])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def watch_markdown(report: WatchReport, png: bytes | None, drift_why: str | None = None) -> str:
    """The watch as Markdown: each comparison, what was done and why, the clusters, the chart."""
    lines = ["# Flywheel watch", ""]
    if report.watches:
        lines += [
            (
                "| kind | version | against | events | negative rate | baseline | difference | interval | verdict "
                "| action | why |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.scope} {r.kind} | {r.version} | {_fmt(r.against)} | {c.events} vs {c.baseline_events} | "
            f"{_fmt(c.negative_rate)} | {_fmt(c.baseline_rate)} | {_fmt(c.difference)} | "
            f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}] | {c.verdict} | **{r.action}** | {r.why} |"
            for r in report.watches
            for c in [r.comparison]
        ]
    else:
        lines.append("Nothing to watch: no canary runs and no promotion in the window.")
    if report.clusters:
        lines += [
            "",
            "## Failure clusters: their own queries before and after the fix",
            "",
            "| cluster | candidate | before | after | difference | verdict |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {cl.cluster_id} | {cl.candidate_id} | {_fmt(c.baseline_rate)} ({c.baseline_events}) | "
            f"{_fmt(c.negative_rate)} ({c.events}) | {_fmt(c.difference)} | {c.verdict} |"
            for cl in report.clusters
            for c in [cl.comparison]
        ]
    if drift_why:
        lines += ["", f"**Drift:** {drift_why}"]
    if png:
        lines += [
            "",
            "## Negative rate by version over time",
            "",
            f"![negative rate by version](data:image/png;base64,{base64.b64encode(png).decode()})",
        ]
    return "\n".join(lines)


class WatchOutcome:
    """One watch, everything it produced: the document, the chart, the MLflow run, the drift."""

    def __init__(self, report: WatchReport, png: bytes | None, run_id: str | None, drift: Any, alarm_new: bool) -> None:
        self.report, self.png, self.run_id, self.drift, self.alarm_new = report, png, run_id, drift, alarm_new

    def public(self) -> dict[str, Any]:
        return {**self.report.public(), "drift": self.drift.model_dump(mode="json"), "mlflow_run_id": self.run_id}


def watch_once(rt: Runtime, *, dry_run: bool = False) -> WatchOutcome:
    """The watch as the CLI and the flow run it: compare and act, chart and log, check drift, on the
    stores and MLflow client of the process's Runtime."""
    from flywheel.loop.drift import alarm_is_new, drift
    from flywheel.loop.watch import run_watch

    settings, state, store = rt.settings, rt.state, rt.feedback
    report = run_watch(settings, state, store, dry_run=dry_run)
    png = chart(report.data) if report.data is not None else None
    run_id = None if dry_run else log_watch(settings, rt.mlflow, report, png)
    current = drift(settings, state, store)
    return WatchOutcome(report, png, run_id, current, False if dry_run else alarm_is_new(state, current))
