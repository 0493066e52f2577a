"""The approval evidence: what a candidate changes, how sure its per-category scores are, and the
golden answers it changed, as one Markdown document (a Prefect artifact beside the approval form).

Pure functions (no Prefect, no MLflow). The form's description stays short (:mod:`evals.report`);
everything an approver may want to check before switching a candidate on is here.

Intervals: one method throughout, the Wilson score interval on a mean score over ``n`` items. It is
the usual interval for 0/1 scores (pass/fail), and for fractional scores in [0, 1] it is
conservative: such a score's variance is at most ``p(1 - p)``, the variance Wilson assumes. One
method means the chart can draw the same interval from a mean and a count alone.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.candidates import Candidate, FinetunePayload, PromptPayload, RagPayload
from flywheel.evals.runner import EvalResult, EvalRow

EVIDENCE_KEY = "flywheel-approval-evidence"
INTERVAL_METHOD = "Wilson 95%"
PASS = 0.5  # a score from here up is a pass (as the judge calibration reads verdicts)


# --- intervals ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean score over ``n`` items and its 95% interval."""

    mean: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def wilson(mean: float, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of a mean score in [0, 1] over ``n`` items (see the module's note)."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        raise ValueError("an interval needs at least one scored item")
    low, high = proportion_confint(mean * n, n, alpha=1 - confidence, method="wilson")
    return Interval(mean, float(low), float(high), n)


@dataclass(frozen=True)
class CategoryRow:
    """One golden category: items both variants scored, each one's interval, and the delta."""

    category: str
    champion: Interval
    candidate: Interval

    @property
    def n(self) -> int:
        return self.champion.n

    @property
    def delta(self) -> float:
        return self.candidate.mean - self.champion.mean


def category_rows(champion: EvalResult, candidate: EvalResult) -> list[CategoryRow]:
    """Per category, on the items both scored (as the gate compares them)."""
    a, b, cats = champion.scores, candidate.scores, champion.categories
    groups: dict[str, list[str]] = defaultdict(list)
    for item_id in sorted(set(a) & set(b)):
        groups[cats[item_id]].append(item_id)

    def interval(scores: dict[str, float], ids: list[str]) -> Interval:
        return wilson(sum(scores[i] for i in ids) / len(ids), len(ids))

    return [CategoryRow(cat, interval(a, ids), interval(b, ids)) for cat, ids in sorted(groups.items())]


# --- Markdown that user and model text cannot break -------------------------------------------------
_INLINE = re.compile(r"([\\`*_\[\]<>|#])")


def inline(text: str, limit: int = 300) -> str:
    """Text on one line (a table cell, a sentence): whitespace folded, cut at ``limit``, and the
    characters Markdown reads as syntax escaped."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit].rstrip() + " ..."
    return _INLINE.sub(r"\\\1", flat)


def code(text: str) -> str:
    """Inline code that a backtick in ``text`` cannot end early."""
    return "`" + " ".join(text.split()).replace("`", "'") + "`"


def fenced(text: str, limit: int = 600, lang: str = "text") -> str:
    """A code block no backtick run inside ``text`` can close, cut at ``limit`` characters."""
    body = text if len(text) <= limit else text[:limit].rstrip() + "\n... (truncated)"
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body}\n{fence}"


# --- the change itself ----------------------------------------------------------------------------
def ci_text(c: Candidate | dict[str, Any]) -> str:
    """``delta [ci_low, ci_high]``, or ``-`` for a candidate that was not scored."""
    doc = c if isinstance(c, dict) else {"delta": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high}
    if doc["delta"] is None:
        return "-"
    return f"{doc['delta']:+.3f} [{doc['ci_low']:+.3f}, {doc['ci_high']:+.3f}]"


def finetune_table(p: FinetunePayload) -> list[str]:
    """A fine-tune's provenance and dataset as a table, the exclusions one row per reason."""
    rows = [
        ("model", f"`{p.model}`"),
        ("fine-tuned from", f"`{p.base_model}`"),
        ("job", f"`{p.job_id}`"),
        ("dataset", f"`{p.dataset_version}`"),
        ("examples", p.examples),
        ("train", p.train),
        ("validation", p.validation),
        ("preference pairs", p.preference_pairs),
    ]
    rows += [(f"excluded: {inline(reason)}", count) for reason, count in sorted((p.excluded or {}).items())]
    return [
        "| fine-tune | value |",
        "|---|---|",
        *(f"| {name} | {'-' if value is None else value} |" for name, value in rows),
    ]


def change_markdown(c: Candidate, limit: int = 2500) -> str:
    """What the candidate changes, as an approver reads it: a diff, or a fine-tune's table."""
    p = c.payload
    if isinstance(p, FinetunePayload):
        return "\n".join(finetune_table(p))
    if isinstance(p, PromptPayload):
        body = p.diff or p.template
    else:
        assert isinstance(p, RagPayload)
        body = f"# changed documents: {', '.join(p.changed_documents)}\n{p.diff}"
    if len(body) > limit:
        body = body[:limit] + "\n... (truncated; the whole change is on the MLflow run)"
    return fenced(body, limit=len(body), lang="diff")


def untested_combinations(candidates: Sequence[Candidate]) -> str | None:
    """A warning when the waiting candidates change more than one kind of thing: each was scored with
    only its own part changed, so approving several serves a combination nobody evaluated."""
    if len({c.kind for c in candidates}) < 2:
        return None
    names = "; ".join(inline(c.short_title()) for c in candidates)  # the titles above say what each fixes
    return (
        f"**Untested combination:** approving more than one of {names} serves a combination that was never "
        "evaluated together: each was scored only against the current champions, with its own part changed."
    )


# --- the answers that changed ---------------------------------------------------------------------
@dataclass(frozen=True)
class ChangedAnswer:
    """One golden item the candidate answers differently enough to matter (verdict or score)."""

    before: EvalRow
    after: EvalRow

    @property
    def fixed(self) -> bool:
        return _passes(self.after) and not _passes(self.before)

    @property
    def broken(self) -> bool:
        return _passes(self.before) and not _passes(self.after)

    @property
    def label(self) -> str:
        return "fixed" if self.fixed else "broken" if self.broken else "score changed"


def _passes(row: EvalRow) -> bool:
    return row.score is not None and row.score >= PASS


def changed_answers(champion: EvalResult, candidate: EvalResult) -> list[ChangedAnswer]:
    """Items both scored whose score moved: fixed first, then broken, then the rest; the biggest moves
    first within each."""
    mine = {r.id: r for r in candidate.rows if r.score is not None}
    pairs = [
        ChangedAnswer(r, mine[r.id])
        for r in champion.rows
        if r.score is not None and r.id in mine and mine[r.id].score != r.score
    ]
    rank = {"fixed": 0, "broken": 1, "score changed": 2}
    return sorted(pairs, key=lambda p: (rank[p.label], -abs((p.after.score or 0) - (p.before.score or 0)), p.before.id))


def changed_lines(changes: Sequence[ChangedAnswer], max_changed: int, more_link: str | None) -> list[str]:
    """The first ``max_changed`` changes in full, then how many more and where they are."""
    fixed, broken = sum(c.fixed for c in changes), sum(c.broken for c in changes)
    lines = ["", f"### Answers that changed ({len(changes)}: {fixed} fixed, {broken} broken)"]
    if not changes:
        lines += ["", "No golden item's score changed."]
    for ch in changes[:max_changed]:
        lines += [
            "",
            f"**{ch.label}: {code(ch.before.id)}** ({inline(ch.before.category)})",
            "",
            "Question:",
            fenced(ch.before.input, limit=300),
        ]
        for who, row in (("Champion", ch.before), ("Candidate", ch.after)):
            verdict = "pass" if _passes(row) else "fail"
            lines += [
                "",
                (
                    f"{who}: score {row.score:.2f} ({verdict}), scorer {code(row.scorer)}: "
                    f"{inline(row.rationale) or '(no rationale)'}"
                ),
                fenced(row.output or ""),
            ]
    if len(changes) > max_changed:
        where = f"MLflow run {more_link}" if more_link else "the candidate's MLflow run (eval_results.json)"
        lines += ["", f"... and {len(changes) - max_changed} more: {where}"]
    return lines


# --- the document ---------------------------------------------------------------------------------
def category_table(rows: Sequence[CategoryRow]) -> list[str]:
    """Per category: n, champion and candidate with their intervals, and the delta."""
    head = f"| category | n | champion [{INTERVAL_METHOD} CI] | candidate [{INTERVAL_METHOD} CI] | delta |"
    return [
        head,
        "|---|---|---|---|---|",
        *(
            f"| {inline(r.category)} | {r.n} | {r.champion.text()} | {r.candidate.text()} | {r.delta:+.3f} |"
            for r in rows
        ),
    ]


def _run_ref(run_id: str | None, run_link: Callable[[str], str | None] | None) -> str | None:
    if not run_id:
        return None
    link = run_link(run_id) if run_link else None
    return f"[{run_id}]({link})" if link else f"`{run_id}`"


def candidate_evidence(
    c: Candidate,
    champion: EvalResult,
    result: EvalResult | None,
    *,
    run_link: Callable[[str], str | None] | None,
    max_changed: int,
) -> list[str]:
    """One candidate's section: delta, per-category table, the change, the answers that changed."""
    run = _run_ref(c.mlflow_run_id, run_link)
    lines = [
        "",
        f"## {inline(c.title())}",
        "",
        f"Golden **{c.golden_score}** vs champion {c.champion_score}: delta {ci_text(c)} "
        "(95% CI, paired bootstrap over golden items)." + (f" MLflow run {run}." if run else ""),
    ]
    if result is not None:
        lines += ["", *category_table(category_rows(champion, result))]
    lines += ["", "### The change", "", change_markdown(c)]
    if result is not None:
        lines += changed_lines(changed_answers(champion, result), max_changed, run)
    else:
        lines += ["", "(no per-item results for this candidate: the answers that changed are on its MLflow run)"]
    return lines


def evidence_markdown(
    candidates: Sequence[Candidate],
    champion: EvalResult,
    results: dict[str, EvalResult],
    *,
    champion_score: float | None,
    run_link: Callable[[str], str | None] | None = None,
    max_changed: int = 10,
    deferred: Sequence[Candidate] = (),
) -> str:
    """The full evidence behind an approval form, one section per waiting candidate."""
    lines = [
        f"# Approval evidence: {len(candidates)} candidate{'s' if len(candidates) != 1 else ''}",
        "",
        (
            f"Champion golden score **{champion_score}** on {len(champion.scores)} scored items. Per-category "
            f"intervals are {INTERVAL_METHOD} score intervals (for fractional scores, conservative); a pass is a "
            f"score of at least {PASS}."
        ),
    ]
    if warning := untested_combinations(candidates):
        lines += ["", "> " + warning]
    for c in candidates:
        lines += candidate_evidence(
            c, champion, results.get(c.candidate_id), run_link=run_link, max_changed=max_changed
        )
    if deferred:
        lines += ["", "## Also passed, deferred to the next cycle (not merged with the above)", ""]
        lines += [f"- {inline(c.title())} (golden {c.golden_score}): {inline(c.reason, 600)}" for c in deferred]
    return "\n".join(lines)
