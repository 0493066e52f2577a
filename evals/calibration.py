"""How far the LLM judge agrees with people: agreement, Cohen's kappa and the confusion matrix of
its pass/fail verdicts against experts' on the same answers.

Agreement alone flatters a judge when one verdict dominates (if experts fail 90% of answers, a
judge that always says "fail" agrees 90% of the time); kappa discounts the agreement two raters
would reach by chance with their own base rates: ``(p_o - p_e) / (1 - p_e)``.

Kappa is reported as undefined (``None``, with the reason) when the experts' verdicts are all one
class: then no judge, perfect or useless, can show agreement beyond chance (scikit-learn's
``cohen_kappa_score`` returns 0 there, or NaN when the judge is one-class too; both would read as a
verdict on the judge). A judge that gives one verdict to everything while experts are split has
kappa 0, which is what it is worth. Otherwise the figures are scikit-learn's (a test holds them to
it), computed here because importing scikit-learn costs about a second of CPU in each cycle's process.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

PASS = 0.5  # a judge score, or an expert's value, from here up is a pass


class Confusion(BaseModel):
    """Counts of one expert verdict (a row) against the judge's."""

    judge_pass: int = 0
    judge_fail: int = 0


class Agreement(BaseModel):
    """SPEC's ``{"items", "agreement", "kappa", "confusion"}``, with why kappa may be missing."""

    items: int
    agreement: float | None = Field(None, description="Share of items where judge and expert agree.")
    kappa: float | None = Field(None, description="Cohen's kappa; None when undefined (see kappa_note).")
    kappa_note: str | None = Field(None, description="Why kappa is undefined, when it is.")
    confusion: dict[str, Confusion] = Field(
        default_factory=lambda: {"expert_pass": Confusion(), "expert_fail": Confusion()},
        description="Rows: the expert's verdict; columns: the judge's.",
    )


def agreement(expert: Sequence[bool], judge: Sequence[bool]) -> Agreement:
    """Agreement, kappa and confusion of paired pass/fail verdicts (True is a pass)."""
    if len(expert) != len(judge):
        raise ValueError("expert and judge verdicts must be paired")
    n = len(expert)
    if n == 0:
        return Agreement(items=0, kappa_note="no item to compare: no consented expert review with a reference answer")
    pairs = [(bool(e), bool(j)) for e, j in zip(expert, judge, strict=True)]
    tp, fn = pairs.count((True, True)), pairs.count((True, False))
    fp, tn = pairs.count((False, True)), pairs.count((False, False))
    confusion = {
        "expert_pass": Confusion(judge_pass=tp, judge_fail=fn),
        "expert_fail": Confusion(judge_pass=fp, judge_fail=tn),
    }
    observed = round((tp + tn) / n, 4)
    if len(set(expert)) == 1:
        side = "pass" if expert[0] else "fail"
        return Agreement(
            items=n,
            agreement=observed,
            confusion=confusion,
            kappa_note=f"undefined: every expert verdict is '{side}', so agreement beyond chance cannot "
            "be measured; it needs expert reviews that pass and fail answers",
        )
    # chance agreement from each rater's own base rates; below 1 whenever the experts are split
    chance = ((tp + fn) * (tp + fp) + (fp + tn) * (fn + tn)) / (n * n)
    kappa = ((tp + tn) / n - chance) / (1 - chance)
    return Agreement(items=n, agreement=observed, kappa=round(kappa, 4), confusion=confusion)


class JudgeCalibration(Agreement):
    """A calibration of one judge model, and whether the gate may trust it alone."""

    judge_model: str
    min_kappa: float
    min_items: int
    trusted: bool = Field(description="Kappa defined, at least min_kappa, on at least min_items items.")
    why: str = Field(description="One sentence: the figures that make the judge trusted or not.")
    references: dict[str, int] = Field(
        default_factory=dict, description="Where the items' reference answers came from."
    )
    skipped: dict[str, int] = Field(default_factory=dict, description="Expert reviews not asked, by reason.")
    errors: int = Field(0, description="Items the judge could not answer (left out of every figure).")
    cached: bool = False
    screening: JudgeCalibration | None = Field(
        None,
        description="The screening (resolution) judge against expert reviews of other answers to the same "
        "queries: reported, never enforced (screening does not gate a promotion).",
    )

    def public(self) -> dict[str, object]:
        """SPEC's keys first, then the rest."""
        doc = self.model_dump(mode="json")
        spec = ("items", "agreement", "kappa", "confusion")
        return {k: doc[k] for k in spec} | {k: v for k, v in doc.items() if k not in spec}


def assess(
    figures: Agreement, *, judge_model: str, min_kappa: float, min_items: int, **extra: object
) -> JudgeCalibration:
    """Whether the figures vouch for the judge: enough items, kappa defined and high enough."""
    if figures.items < min_items:
        trusted, why = (
            False,
            (f"too few items to know: {figures.items} calibration items, judge.min_items is {min_items}"),
        )
    elif figures.kappa is None:
        trusted, why = False, f"kappa {figures.kappa_note}"
    elif figures.kappa < min_kappa:
        trusted, why = (
            False,
            (f"kappa {figures.kappa:.2f} is below judge.min_kappa {min_kappa:.2f} ({figures.items} items)"),
        )
    else:
        trusted, why = True, f"kappa {figures.kappa:.2f} on {figures.items} items (judge.min_kappa {min_kappa:.2f})"
    return JudgeCalibration(
        **figures.model_dump(),
        judge_model=judge_model,
        min_kappa=min_kappa,
        min_items=min_items,
        trusted=trusted,
        why=why,
        **extra,
    )  # type: ignore[arg-type]
