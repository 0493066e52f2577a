"""What a person sees on the terminal: the tables of clusters and candidates, and a progress bar."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flywheel.app.output import err, human_console
from flywheel.wording import plural


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
    table = Table(title=f"{plural(len(clusters), 'failure cluster')}, highest priority first", show_lines=False)
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
    out = console or human_console()
    if not out.is_terminal:
        out = human_console(stderr=out.stderr)
    out.print(table)
    if len(clusters) > limit:
        err.print(f"... {len(clusters) - limit} more (use --json for all)")


def print_candidates(cands: list[Any], title: str) -> None:
    from flywheel.evals.report import ci_text

    table = Table(title=title)
    for col in ("candidate", "kind", "clusters", "golden", "champion", "delta [95% CI]", "decision", "reason"):
        table.add_column(col, overflow="fold")
    for c in cands:
        ci = ci_text(c)
        table.add_row(
            c.candidate_id,
            c.kind,
            ", ".join(c.cluster_ids),
            f"{c.golden_score or 0:.3f}",
            f"{c.champion_score or 0:.3f}",
            ci,
            c.decision or "-",
            c.reason,
        )
    human_console().print(table)


def _diagnosed(o: Any) -> str:
    """How a cluster without reasons got its category (a skipped one's `why` already says why not)."""
    d = o.diagnosis
    return f" (diagnosed {d.category} by {d.model}: {d.root_cause})" if d is not None and d.diagnosed else ""


def print_outcomes(outcomes: list[Any]) -> None:
    """What the cycle did with each cluster and why (on stdout, like the candidates)."""
    from rich.text import Text

    table = Table(
        title=f"what the cycle did with {'each of ' if len(outcomes) > 1 else ''}{plural(len(outcomes), 'cluster')}"
    )
    for col in ("cluster", "route", "status", "drafts (kept)", "resolved: champion -> best", "decision", "why"):
        table.add_column(col, overflow="fold")
    share = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    for o in outcomes:
        resolved = (
            f"{share(o.champion_resolved)} -> {share(o.best_resolved)}"
            if o.champion_resolved is not None or o.best_resolved is not None
            else "-"
        )
        # User-derived text is never read as Rich markup (a `[prompt_variables]` would vanish).
        table.add_row(
            o.cluster_id,
            o.route,
            str(o.status),
            f"{o.drafts} ({o.kept})" if o.drafts is not None else "-",
            resolved,
            str(o.decision or "-"),
            Text(o.why + (f" (note: {o.note})" if o.note else "") + _diagnosed(o)),
        )
    human_console().print(table)


def _canary_rows(canary: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The running canary in two lines: what serves whom, then how it fares against production."""
    if not canary:
        return [("canary", "none running")]
    w = canary["watch"]
    serves = (
        f"{canary['kind']} v{canary['version']} to {canary['percent']:g}% of users (production "
        f"{'v' + canary['production'] if canary.get('production') else 'none'})"
        + (f", since {canary['started_at']}" if canary.get("started_at") else "")
        + (f", candidate {canary['candidate_id']}" if canary.get("candidate_id") else "")
    )
    if w["negative_rate"] is None or w["baseline_rate"] is None:
        fares = f"{w['events']} canary and {w['baseline_events']} production events so far: too few to compare"
    else:
        ci = (
            f", 95% CI {w['ci_low']:+.1%} to {w['ci_high']:+.1%}"
            if w.get("ci_low") is not None and w.get("ci_high") is not None
            else ""
        )
        fares = (
            f"negative {w['negative_rate']:.1%} ({w['events']} events) vs production {w['baseline_rate']:.1%} "
            f"({w['baseline_events']}){ci}: {w['verdict']} so far (the watch acts from {w['min_events']} a side)"
        )
    return [("canary", serves), ("canary watch", fares)]


def print_status(doc: dict[str, Any], now: datetime | None = None) -> None:
    """``flywheel status`` for a person: one line a fact, times as ISO plus how long ago."""
    from rich.text import Text

    from flywheel.wording import iso_and_ago

    champions = doc["champions"]
    model = champions["model"] + (f" (registry v{doc['model_version']})" if doc.get("model_version") else "")
    pending = doc["pending"]
    events, negative, rate = doc["events"], doc.get("negative_events"), doc["negative_feedback_rate"]
    velocity = doc["loop_velocity_hours"]
    last = doc["last_cycle"]
    rows = [
        (
            "champion prompt",
            f"v{champions['prompt']}" if champions["prompt"] else "none yet (flywheel prompt set FILE)",
        ),
        ("champion index", f"v{champions['index']}" if champions["index"] else "none (no retrieval; flywheel kb sync)"),
        ("champion model", model),
        (
            "pending approvals",
            f"{len(pending)}" + (f": {', '.join(c['candidate_id'] for c in pending)}" if pending else ""),
        ),
        *[
            (
                f"deferred fix {d['candidate_id']}",
                f"clusters {', '.join(d['cluster_ids'])} (cycle {d['cycle_id']}): {d['reason']}",
            )
            for d in doc.get("deferred") or []
        ],
        (
            "negative feedback",
            "no feedback yet" if rate is None else f"{rate:.1%} ({negative} of {plural(events, 'event')})",
        ),
        ("events since last cycle", plural(doc["events_since_last_cycle"], "event")),
        (
            "loop velocity",
            "no fix promoted yet"
            if velocity is None
            else f"{velocity:g} h median from first complaint to promoted fix "
            f"({plural(doc['promotions'], 'promotion')})",
        ),
        *_canary_rows(doc.get("canary")),
        (
            "last cycle",
            "none yet (flywheel cycle)"
            if last is None
            else f"{last['cycle_id']}, {last['status']}, "
            f"started {iso_and_ago(datetime.fromisoformat(last['started_at']), now)}"
            + (f", champion score {last['champion_score']:.3f}" if last.get("champion_score") is not None else ""),
        ),
    ]
    from flywheel.improvers.registry import improvers

    rows += [row for i in improvers() if (section := doc.get(i.name)) for row in i.status_rows(section)]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))  # ids and model names are text, never Rich markup
    human_console().print(table)


def print_kb_status(doc: dict[str, Any], now: datetime | None = None) -> None:
    """``flywheel kb status`` for a person: what the product retrieves from, then every kept version."""
    from rich.text import Text

    from flywheel.wording import iso_and_ago

    out = human_console()
    active = doc["active_version"]
    out.print(
        Text(
            f"active index version: v{active}, {plural(doc['documents'], 'document')}, {plural(doc['chunks'], 'chunk')}"
            if active
            else "no active index version (flywheel kb sync --source DIR)"
        )
    )
    out.print(Text(f"embedding model {doc['embedding_model']}, collection {doc['collection']} in {doc['store']}"))
    if not doc["versions"]:
        return
    table = Table(title="index versions", title_justify="left")
    for col in ("version", "status", "created", "parent", "documents", "chunks", "source", "note"):
        table.add_column(col, overflow="fold")
    for v in doc["versions"]:
        created = iso_and_ago(datetime.fromisoformat(v["created_at"].replace("Z", "+00:00")), now)
        table.add_row(
            *(
                Text(str(x))
                for x in (
                    f"v{v['version']}" + (" (active)" if v["active"] else ""),
                    v["status"],
                    created,
                    f"v{v['parent']}" if v["parent"] else "-",
                    v["documents"],
                    v["chunks"],
                    v["source"] or "-",
                    v["note"] or "",
                )
            )
        )
    out.print(table)
