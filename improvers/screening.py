"""Screening a drafted prompt on its cluster's own failing examples: is the user's complaint resolved?

A sampled model rewords every answer, so "the fresh answer differs from the logged one" says
nothing (the champion itself would screen perfect and no draft could beat it). A judge model reads
the query, the logged answer, the user's feedback and the fresh answer, and says whether the
complaint is resolved, with a rationale. The champion's fresh answers get the same judgement: its
resolved share is the baseline a draft must reach. When the user gave the better answer, the
similarity of the fresh answer to it is kept as a second signal (a tie-breaker), never the only one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from flywheel.replies import ReplyProblem, json_object

RESOLUTION_SYSTEM = (
    "You judge whether a user's complaint about a support assistant's answer is resolved by a new answer to "
    "the same question. Read the user's question, the answer they complained about, their feedback (and the "
    "better answer, when they gave one), then the new answer. The complaint is resolved when the new answer no "
    "longer has the problem the user pointed at and is a good answer to the question; different wording alone "
    'resolves nothing. Reply with a JSON object {"resolved": true|false, "rationale": "one sentence"}.'
)
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"resolved": {"type": "boolean"}, "rationale": {"type": "string"}},
    "required": ["resolved", "rationale"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class FailingExample:
    """One consented, scrubbed negative event, as the drafting and judge models see it."""

    query: str
    output: str
    signal: str
    reason: str | None = None
    comment: str | None = None
    better: str | None = None  # the user's correction or edited text, when given
    value: float | None = None  # a rating's stars, an outcome's 0 (shown to the diagnosis)
    # The cluster's diagnosed root cause, for an event without a reason: the complaint the drafting
    # model and the judge read in place of the reason the user did not give.
    diagnosed: str | None = None

    def feedback_text(self) -> str:
        said = f"reason: {self.reason}" if self.reason else ("no reason given" if self.diagnosed else "")
        if self.diagnosed:
            said += f"; diagnosed: {self.diagnosed}"
        return self.signal + (f" ({said})" if said else "") + (f' "{self.comment}"' if self.comment else "")


class Verdict(BaseModel):
    resolved: bool
    rationale: str = ""


def resolution_messages(example: FailingExample, fresh: str) -> list[dict[str, str]]:
    better = f"\n<better_answer>\n{example.better}\n</better_answer>" if example.better else ""
    user = (
        f"<query>\n{example.query}\n</query>\n<logged_answer>\n{example.output}\n</logged_answer>\n"
        f"<feedback>\n{example.feedback_text()}\n</feedback>{better}\n<fresh_answer>\n{fresh}\n</fresh_answer>"
    )
    return [{"role": "system", "content": RESOLUTION_SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(reply: str) -> Verdict:
    """The judge's verdict; a reply that cannot be read counts as not resolved, and says why."""
    try:
        doc = json_object(reply)
    except ReplyProblem as exc:
        return Verdict(resolved=False, rationale=f"unreadable verdict: {exc}")
    resolved = doc.get("resolved")
    if isinstance(resolved, str):
        resolved = resolved.strip().lower() in ("true", "yes")
    if not isinstance(resolved, bool):
        return Verdict(resolved=False, rationale=f"verdict without a boolean 'resolved': {str(doc)[:160]}")
    return Verdict(resolved=resolved, rationale=str(doc.get("rationale", ""))[:500])


class Screening(BaseModel):
    """A prompt's answers on a cluster's failing examples, judged."""

    resolved: list[bool]
    rationales: list[str] = Field(default_factory=list)
    similarity: float | None = Field(None, description="Mean similarity to the users' better answers, when given.")

    @property
    def share(self) -> float:
        return round(sum(self.resolved) / len(self.resolved), 4) if self.resolved else 0.0

    def rank(self) -> tuple[float, float]:
        """Resolution first; similarity to the users' corrections only breaks ties."""
        return self.share, self.similarity or 0.0


JudgeFn = Callable[[Sequence[FailingExample], Sequence[str]], list[Verdict]]


def screen(outputs: Sequence[str], examples: Sequence[FailingExample], judge: JudgeFn) -> Screening:
    verdicts = judge(examples, outputs)
    corrected = [(out, e.better) for out, e in zip(outputs, examples, strict=True) if e.better]
    similarity = (
        round(sum(fuzz.ratio(out, better) for out, better in corrected) / (100.0 * len(corrected)), 4)
        if corrected
        else None
    )
    return Screening(
        resolved=[v.resolved for v in verdicts], rationales=[v.rationale for v in verdicts], similarity=similarity
    )
