"""What an operator reads after a cycle: the report (Markdown), the candidate table and the chart.

Pure functions of a cycle's results (no Prefect, no MLflow): the flow publishes them as Prefect
artifacts under stable keys, so the UI versions them cycle after cycle, and the chart is logged to
the cycle's MLflow run.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flywheel.candidates import Candidate, Decision, FinetunePayload
from flywheel.evals.calibration import JudgeCalibration
from flywheel.evals.evidence import EVIDENCE_KEY, ci_text, finetune_table, inline, untested_combinations, wilson
from flywheel.schemas import ClusterOutcome

REPORT_KEY = "flywheel-cycle-report"
TABLE_KEY = "flywheel-cycle-candidates"
CHART_KEY = "flywheel-cycle-chart"
CHART_ARTIFACT = "charts/cycle.png"
TRIAGE_KEY = "flywheel-triage"
PROMOTION_KEY = "flywheel-promotion"


def candidate_rows(candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    """One row per candidate for a table artifact (plain values only). Short columns first (the
    decision, the scores, the MLflow run), long text last: at 1400 px the clusters and the reason
    run off the right edge, not what an approver compares."""
    return [
        {
            "candidate": c.candidate_id,
            "what": c.target_name(),
            "decision": c.decision or "-",
            "golden": round(c.golden_score, 4) if c.golden_score is not None else None,
            "champion": round(c.champion_score, 4) if c.champion_score is not None else None,
            "delta [95% CI]": ci_text(c),
            "mlflow_run_id": c.mlflow_run_id or "-",
            "decided by": c.decided_by or "-",
            "clusters": ", ".join(c.cluster_ids),
            "reason": c.reason,
        }
        for c in candidates
    ]


def cluster_rows(clusters: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per failure cluster for a table artifact; the summary is triage's, which shows no
    text of users without consent."""
    return [
        {
            "cluster": c["cluster_id"],
            "category": c["category"],
            "route": c["route"],
            "size": c["size"],
            "users": c["users"],
            "priority": round(float(c["priority"]), 1),
            "summary": c["summary"],
        }
        for c in clusters
    ]


def outcome_table(outcomes: Sequence[ClusterOutcome]) -> list[str]:
    """Markdown rows: per cluster, its route, what happened (skipped and why, drafts and screening,
    candidate and decision) in one line each."""
    rows = [
        "| cluster | route | status | drafts (kept) | resolved: champion -> best | decision | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        drafts = f"{o.drafts} ({o.kept})" if o.drafts is not None else "-"
        resolved = (
            f"{_share(o.champion_resolved)} -> {_share(o.best_resolved)}"
            if o.champion_resolved is not None or o.best_resolved is not None
            else "-"
        )
        rows.append(
            f"| `{o.cluster_id}` | {o.route} | {o.status} | {drafts} | {resolved} | {o.decision or '-'} | "
            f"{_why(o).replace('|', '/')} |"
        )
    return rows


def diagnosis_table(outcomes: Sequence[ClusterOutcome]) -> list[str]:
    """Markdown rows for the clusters triage left in `other` (feedback without a reason): the category
    and root cause the drafting model named, by which model, or what was missing for one."""
    rows = ["| cluster | diagnosed as | route | root cause / why not | model |", "|---|---|---|---|---|"]
    for o in outcomes:
        d = o.diagnosis
        if d is None:
            continue
        said = d.root_cause if d.diagnosed else (d.why_not or "")
        rows.append(
            f"| `{o.cluster_id}` | {d.category if d.diagnosed else 'not diagnosed (`other`)'} | {o.route} | "
            f"{said.replace('|', '/')} | {d.model or '-'} |"
        )
    return rows if len(rows) > 2 else []


def _why(o: ClusterOutcome) -> str:
    """The outcome's reason, and its note (e.g. no golden item can test the fix) after it."""
    return f"{o.why} **Note:** {o.note}" if o.note else o.why


def promotion_summary(action: str, outcome: dict[str, Any]) -> str:
    """One line: what moved, or what was decided."""
    if action == "rollback":
        return (
            f"{outcome['kind']} champion v{outcome['from_version']} -> v{outcome['to_version']} "
            f"(undoes {outcome['undone_candidate'] or 'a manual change'})"
        )
    return f"{outcome['candidate_id']} ({outcome['kind']}) {outcome['decision']}"


def promotion_markdown(action: str, outcome: dict[str, Any], *, by: str, note: str | None) -> str:
    """What an operator's decision did, for the artifact that records it."""
    lines = [f"# {action.capitalize()} by {by}", "", promotion_summary(action, outcome) + "."]
    if action != "rollback":
        lines += [
            "",
            (
                f"Golden {outcome['golden_score']} vs champion {outcome['champion_score']}, "
                f"delta {ci_text(outcome)}; MLflow run `{outcome['mlflow_run_id']}`."
            ),
        ]
    if note:
        lines += ["", f"> {note}"]
    return "\n".join(lines)


def report_markdown(
    *,
    cycle_id: str,
    golden_version: str,
    champion_score: float | None,
    clusters: Sequence[dict[str, Any]],
    candidates: Sequence[Candidate],
    outcomes: Sequence[ClusterOutcome] = (),
    improver_notes: Sequence[str] = (),
    chart_link: str | None = None,
    judge: JudgeCalibration | None = None,
    notes: Sequence[str] = (),
    champion_per_category: dict[str, float] | None = None,
    champion_per_segment: dict[str, float] | None = None,
) -> str:
    """What was triaged, what was tried, what was decided and why."""
    lines = [
        f"# Improvement cycle {cycle_id}",
        "",
        f"Golden set `{golden_version[:12]}`; champion score **{champion_score}**.",
        "",
        *([judge_warning(judge), ""] if judge is not None and judge_is_weak(judge) else []),
        "## Triaged",
        "",
        "| cluster | category | route | size | users | priority |",
        "|---|---|---|---|---|---|",
    ]
    for c in clusters[:15]:
        lines.append(
            f"| `{c['cluster_id']}` | {c['category']} | {c['route']} | {c['size']} | {c['users']} | "
            f"{c['priority']:.1f} |"
        )
    if len(clusters) > 15:
        lines.append(f"| ... {len(clusters) - 15} more | | | | | |")
    if outcomes:
        lines += ["", "## What happened to each cluster", "", *outcome_table(outcomes)]
    if diagnosed := diagnosis_table(outcomes):
        lines += ["", "## Feedback without a reason: diagnosed clusters", "", *diagnosed]
    drafted = [c for c in clusters if c.get("drafting")]
    if drafted:
        lines += [
            "",
            "## Prompt drafting",
            "",
            "| cluster | rounds | rollouts | champion resolved | best draft resolved | outcome |",
            "|---|---|---|---|---|---|",
        ]
        for c in drafted:
            d = c["drafting"]
            lines.append(
                f"| `{c['cluster_id']}` | {d['rounds']} | {d['rollouts']} | {_share(d['champion_resolved'])} | "
                f"{_share(d['best_resolved'])} | {d['outcome'].replace('|', '/')} |"
            )
    lines += [
        "",
        "## Tried and decided",
        "",
        "| candidate | kind | clusters | golden | delta [95% CI] | decision | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for cand in candidates:
        compare = (
            f" ({f'v{cand.version}: ' if cand.version else ''}compare with v{cand.parent})"
            if cand.kind == "prompt" and cand.parent
            else ""
        )  # the registry's Compare view defaults elsewhere
        lines.append(
            f"| `{cand.candidate_id}`{compare} | {cand.kind} | {', '.join(cand.cluster_ids)} | "
            f"{cand.golden_score} | {ci_text(cand)} | {cand.decision} | {cand.reason.replace('|', '/')} |"
        )
    if not candidates:
        lines.append("| (no candidate this cycle) | | | | | | |")
    lines += decision_lines(candidates)
    if warning := untested_combinations([c for c in candidates if c.decision is Decision.pending_approval]):
        lines += ["", warning]
    lines += merge_lines(candidates)
    lines += finetune_lines(candidates)
    for note in improver_notes:  # "<improver title>: <note>"
        lines += ["", f"- {note}"]
    lines += breakdown_table("category", champion_per_category or {}, candidates, "per_category", "category_deltas")
    lines += breakdown_table("segment", champion_per_segment or {}, candidates, "per_segment", "segment_deltas")
    if judge is not None:
        lines += ["", "## Judge calibration", "", judge_line(judge)]
        if judge.screening is not None:
            lines += ["", "Screening " + judge_line(judge.screening) + " (reported only: screening does not gate)"]
    for note in notes:
        lines += ["", f"**Note:** {note}"]
    if chart_link:
        lines += [
            "",
            (
                f"Chart (golden score per cycle; candidates vs champion per category): the `{CHART_KEY}` "
                f"artifact, and [{CHART_ARTIFACT}]({chart_link}) on the cycle's MLflow run"
            ),
        ]
    return "\n".join(lines)


DECIDED = (Decision.promoted, Decision.rejected, Decision.canary)


def decision_lines(candidates: Sequence[Candidate]) -> list[str]:
    """Who decided each candidate and when (UTC, to the minute): a promotion is a person's act as much
    as a rejection, and the record should name both."""
    decided = [c for c in candidates if c.decision in DECIDED or c.decided_by]
    if not decided:
        return []
    return [
        "",
        *(
            f"- `{c.candidate_id}` {c.decision or 'decided'} by {inline(c.decided_by or 'nobody recorded')}"
            f"{', ' + utc_minute(c.decided_at) if c.decided_at else ''}"
            for c in decided
        ),
    ]


def utc_minute(when: datetime) -> str:
    """A time in UTC to the minute (a naive time is taken as UTC, as the state store writes them)."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def finetune_lines(candidates: Sequence[Candidate]) -> list[str]:
    """Each fine-tune candidate's model, job and dataset as a table."""
    lines: list[str] = []
    for c in candidates:
        if isinstance(c.payload, FinetunePayload):
            lines += ["", f"## Fine-tune {inline(c.title())}", "", *finetune_table(c.payload)]
    return lines


WEAK_AGREEMENT = 0.6


def judge_is_weak(judge: JudgeCalibration) -> bool:
    """Not trusted by the gate, or agreeing with experts too rarely to read its scores alone."""
    return not judge.trusted or (judge.agreement is not None and judge.agreement < WEAK_AGREEMENT)


def judge_warning(judge: JudgeCalibration) -> str:
    """The summary's line on a weak judge: judge-scored results below are only as good as it is."""
    agree = "unknown" if judge.agreement is None else f"{judge.agreement:.0%}"
    kappa = "undefined" if judge.kappa is None else f"{judge.kappa:.2f}"
    return (
        f"> **Judge warning:** `{judge.judge_model}` agrees with expert reviews on {agree} of {judge.items} "
        f"items (kappa {kappa}){'' if judge.trusted else '; not trusted alone'}. Judge-scored results below "
        "rest on it; see Judge calibration."
    )


def merge_lines(candidates: Sequence[Candidate]) -> list[str]:
    """How the merged prompt kept each fix (per cluster, against the best winner there), which
    winners it left out and why, and the fixes deferred to the next cycle."""
    lines: list[str] = []
    for c in candidates:
        merge = getattr(c.payload, "merge", None)
        if merge is None:
            continue
        lines += ["", f"## Merge `{c.candidate_id}` ({merge.method})", ""]
        lines += [f"- kept: {check['text']}" for check in merge.checks]
        lines += [f"- tried: {t['method']}: {t['problem']}" for t in merge.tried]
        lines += [f"- left out `{cid}`: {why}" for cid, why in merge.left_out.items()]
    deferred = [c for c in candidates if c.decision == "deferred"]
    if deferred:
        lines += ["", "## Deferred fixes (redrafted in the next cycle against the new champion)", ""]
        lines += [f"- `{c.candidate_id}` ({', '.join(c.cluster_ids)}): {c.reason}" for c in deferred]
    return lines


def judge_line(judge: JudgeCalibration) -> str:
    """The calibration in one line: figures, confusion, and whether the gate trusted the judge."""
    kappa = "undefined" if judge.kappa is None else f"{judge.kappa:.3f}"
    agree = "-" if judge.agreement is None else f"{judge.agreement:.0%}"
    cm = judge.confusion
    return (
        f"Judge `{judge.judge_model}` against expert reviews: {judge.items} items, agreement {agree}, kappa "
        f"{kappa}; expert pass -> judge pass/fail {cm['expert_pass'].judge_pass}/{cm['expert_pass'].judge_fail}, "
        f"expert fail -> judge pass/fail {cm['expert_fail'].judge_pass}/{cm['expert_fail'].judge_fail}. "
        f"{'Trusted' if judge.trusted else 'Not trusted alone'}: {judge.why}."
    )


def breakdown_table(
    what: str, champion: dict[str, float], candidates: Sequence[Candidate], scores: str, deltas: str
) -> list[str]:
    """Champion and candidates per category (or segment): score and delta, one row per group."""
    groups = sorted(set(champion) | {g for c in candidates for g in getattr(c, scores)})
    if not groups:
        return []
    scored = [c for c in candidates if getattr(c, scores)]
    head = "| " + what + " | champion | " + " | ".join(f"`{c.candidate_id[-6:]}` (delta)" for c in scored) + " |"
    lines = ["", f"## Per {what}", "", head, "|---|---|" + "---|" * len(scored)]
    for g in groups:
        cells = [
            f"{getattr(c, scores).get(g, float('nan')):.3f} ({getattr(c, deltas).get(g, 0.0):+.3f})"
            if g in getattr(c, scores)
            else "-"
            for c in scored
        ]
        base = f"{champion[g]:.3f}" if g in champion else "-"
        lines.append(f"| {g} | {base} | " + " | ".join(cells) + " |")
    return lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def chart_markdown(png: bytes, cycle_id: str, link: str | None = None) -> str:
    """The chart inside a Markdown artifact, as a data URI: the Prefect UI shows it with no MLflow UI
    running and no file access; ``link`` (the MLflow UI's copy) follows when there is one."""
    lines = [
        f"# Cycle {cycle_id}: golden score per cycle; candidates vs champion per category",
        "",
        (
            "![golden score per cycle; candidates vs champion per category]"
            f"(data:image/png;base64,{base64.b64encode(png).decode()})"
        ),
    ]
    if link and link.startswith("http"):
        lines += ["", f"[{CHART_ARTIFACT} in MLflow]({link})"]
    return "\n".join(lines)


def cycle_chart(
    history: Sequence[tuple[str, float]],
    candidates: Sequence[Candidate],
    champion_per_category: dict[str, float],
    category_n: Mapping[str, int] | None = None,
) -> bytes:
    """A PNG: the champion's golden score per cycle, and each kind's best candidate against the
    champion per category; with ``category_n`` (items scored per category) each bar carries its
    95% Wilson interval, so a difference inside the noise looks like one."""
    import matplotlib.pyplot as plt

    fig = cycle_figure(history, candidates, champion_per_category, category_n)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def cycle_figure(
    history: Sequence[tuple[str, float]],
    candidates: Sequence[Candidate],
    champion_per_category: dict[str, float],
    category_n: Mapping[str, int] | None = None,
) -> Any:
    """The chart's matplotlib figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=100)
    if history:
        left.plot(range(len(history)), [s for _, s in history], marker="o", color="#1f6feb")
        left.set_xticks(range(len(history)), [c[-4:] for c, _ in history], rotation=45, fontsize=7)
    left.set_ylim(0, 1.05)
    left.set_title("champion golden score per cycle")
    left.grid(alpha=0.3)
    categories = sorted(champion_per_category)
    best: dict[str, Candidate] = {}
    for c in candidates:
        if c.golden_score is not None and (c.kind not in best or c.golden_score > (best[c.kind].golden_score or 0)):
            best[c.kind] = c
    series = [("champion", [champion_per_category[k] for k in categories])]
    series += [
        (f"{kind} {c.candidate_id[-6:]}", [c.per_category.get(k, 0.0) for k in categories])
        for kind, c in sorted(best.items())
    ]
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series):
        right.bar(
            [x + i * width for x in range(len(categories))],
            values,
            width,
            label=label,
            yerr=_error_bars(values, categories, category_n),
            capsize=3,
            error_kw={"elinewidth": 1},
        )
    right.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(categories))], categories, rotation=30, fontsize=7, ha="right"
    )
    right.set_ylim(0, 1.05)
    right.set_title("candidates vs champion per category" + (" (95% Wilson intervals)" if category_n else ""))
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _error_bars(
    values: Sequence[float], categories: Sequence[str], category_n: Mapping[str, int] | None
) -> list[list[float]] | None:
    """Asymmetric error bars (below, above) of each bar's Wilson interval; None without counts."""
    if not category_n:
        return None
    spans = [wilson(v, category_n[k]) if category_n.get(k) else None for v, k in zip(values, categories, strict=True)]
    return [
        [max(0.0, s.mean - s.low) if s else 0.0 for s in spans],
        [max(0.0, s.high - s.mean) if s else 0.0 for s in spans],
    ]


def approval_markdown(
    candidates: Sequence[Candidate],
    champion_score: float | None,
    *,
    evidence_link: str | None = None,
    run_link: Callable[[str], str | None] | None = None,
    timeout_s: int | None = None,
    deferred: Sequence[Candidate] = (),
) -> str:
    """The approval form's description, short enough to read inside the form: what is asked, one line
    per candidate (score, delta and CI, what should give pause), the untested-combination warning,
    where the full evidence is, and the fixes deferred to the next cycle, so none goes unseen."""
    lines = [
        f"**{len(candidates)} candidate{'s' if len(candidates) != 1 else ''} passed the policy.** "
        f"Champion golden score **{champion_score}**. Switch on what you approve; what you leave off is "
        "rejected when you submit"
        + (f", and everything is rejected after {duration_text(timeout_s)} without an answer." if timeout_s else "."),
        "",
    ]
    lines += [approval_line(c, run_link) for c in candidates]
    if warning := untested_combinations(candidates):
        lines += ["", warning]
    lines += [
        "",
        f"Full evidence (per-category intervals, the change, the answers that changed): "
        f"[{EVIDENCE_KEY}]({evidence_link})"
        if evidence_link
        else f"Full evidence (per-category intervals, the change, the answers that changed): this run's "
        f"`{EVIDENCE_KEY}` artifact.",
    ]
    if deferred:
        lines += ["", "Also passed, deferred to the next cycle (not merged with the above):"]
        lines += [f"- {inline(c.title())}, golden {c.golden_score}: {c.reason}" for c in deferred]
    return "\n".join(lines)


def duration_text(seconds: int) -> str:
    """``86400`` -> ``24 h (86400 s)``: a wait an approver can picture, with the configured figure."""
    if seconds < 120:
        return f"{seconds} s"
    unit = f"{seconds / 3600:g} h" if seconds >= 7200 else f"{seconds / 60:g} min"
    return f"{unit} ({seconds} s)"


def approval_line(c: Candidate, run_link: Callable[[str], str | None] | None = None) -> str:
    """One waiting candidate in a line: its title, golden vs champion, delta with CI, its flags."""
    flags = approval_flags(c)
    link = run_link(c.mlflow_run_id) if run_link and c.mlflow_run_id else None
    run = f" [MLflow]({link})" if link else (f" (MLflow run `{c.mlflow_run_id}`)" if c.mlflow_run_id else "")
    return (
        f"- **{inline(c.title())}**: golden {c.golden_score} vs champion {c.champion_score}, delta {ci_text(c)} "
        f"(95% CI){'; ' + '; '.join(flags) if flags else ''}.{run}"
    )


def approval_flags(c: Candidate, shown: int = 2) -> list[str]:
    """What should give an approver pause: a CI that reaches zero, the categories and segments it
    lowers (worst first), a failed retrieval check, a new model."""
    flags = ["CI reaches 0"] if c.ci_low is not None and c.ci_low <= 0 else []
    for what, deltas in (("category", c.category_deltas), ("segment", c.segment_deltas)):
        worse = sorted((d, g) for g, d in deltas.items() if d < 0)
        if worse:
            flags.append(
                f"lowers {what} "
                + ", ".join(f"{inline(g)} {d:+.3f}" for d, g in worse[:shown])
                + (f" and {len(worse) - shown} more" if len(worse) > shown else "")
            )
    retrieval = getattr(c.payload, "retrieval", None)
    if retrieval is not None and not retrieval.passed:
        flags.append("retrieval check failed")
    if isinstance(c.payload, FinetunePayload):
        flags.append(f"changes the model to `{c.payload.model}`")
    return flags
