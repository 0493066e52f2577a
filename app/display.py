"""What a person sees on the terminal: the tables of clusters and candidates, and a progress bar."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.output import err


def _byte_progress(total: int | None) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal or total is None,
    )


def print_clusters(clusters: list[Any], limit: int = 30, console: Console | None = None) -> None:
    """A readable table; on stdout unless a console (stderr, in the demo) is given."""
    table = Table(title=f"{len(clusters)} failure clusters, highest priority first", show_lines=False)
    for col, kw in (
        ("priority", {"justify": "right"}),
        ("cluster", {"no_wrap": True}),
        ("category", {}),
        ("route", {}),
        ("size", {"justify": "right"}),
        ("users", {"justify": "right"}),
        ("fine-tune", {"no_wrap": True}),
        ("example (consented text only)", {"overflow": "fold", "max_width": 60}),
    ):
        table.add_column(col, **kw)
    for c in clusters[:limit]:
        example = c.example_queries[0] if c.example_queries else "[dim](text withheld: no consent)[/]"
        # Persistent clusters (prompts failed) show how far they are from fine-tuning.
        tune = ("ready" if c.finetune_gap == 0 else f"{c.finetune_gap} short") if c.prompt_failed else "-"
        table.add_row(f"{c.priority:.1f}", c.cluster_id, c.category, c.route, str(c.size), str(c.users), tune, example)
    out = console or Console()
    if not out.is_terminal:
        out = Console(width=160, stderr=out.stderr)
    out.print(table)
    if len(clusters) > limit:
        err.print(f"... {len(clusters) - limit} more (use --json for all)")


def print_candidates(cands: list[Any], title: str, empty: str = "no candidates") -> None:
    from evals.report import ci_text

    if not cands:
        Console().print(f"{title}: {empty}", highlight=False)
        return
    table = Table(title=title)
    for col in ("candidate", "kind", "clusters", "golden", "champion", "delta [95% CI]", "decision", "reason"):
        table.add_column(col, overflow="fold")
    for c in cands:
        ci = ci_text(c)
        table.add_row(c.candidate_id, c.kind, ", ".join(c.cluster_ids), f"{c.golden_score or 0:.3f}",
                      f"{c.champion_score or 0:.3f}", ci, c.decision or "-", c.reason)
    out = Console()
    (out if out.is_terminal else Console(width=180)).print(table)


def print_outcomes(outcomes: list[Any]) -> None:
    """What the cycle did with each cluster and why (on stdout, like the candidates)."""
    from rich.text import Text

    table = Table(title=f"what the cycle did with each of {len(outcomes)} clusters")
    for col in ("cluster", "route", "status", "drafts (kept)", "resolved: champion -> best", "decision", "why"):
        table.add_column(col, overflow="fold")
    share = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    for o in outcomes:
        resolved = (f"{share(o.champion_resolved)} -> {share(o.best_resolved)}"
                    if o.champion_resolved is not None or o.best_resolved is not None else "-")
        # User-derived text is never read as Rich markup (a `[prompt_variables]` would vanish).
        table.add_row(o.cluster_id, o.route, str(o.status), f"{o.drafts} ({o.kept})" if o.drafts is not None else "-",
                      resolved, str(o.decision or "-"), Text(o.why + (f" (note: {o.note})" if o.note else "")))
    out = Console()
    (out if out.is_terminal else Console(width=180)).print(table)
