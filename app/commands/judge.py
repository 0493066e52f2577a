"""``flywheel judge``: how far the LLM judge agrees with expert reviews."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from flywheel.app.context import _runtime
from flywheel.app.output import JsonFlag, answer, err, handles_errors, human_console

if TYPE_CHECKING:
    from flywheel.evals.calibration import JudgeCalibration

judge_app = typer.Typer(help="The LLM judge: calibrate it against expert reviews.", no_args_is_help=True)


@judge_app.command("calibrate")
@handles_errors
def calibrate(as_json: JsonFlag = False) -> None:
    """Ask the judge about answers experts reviewed and compare: agreement, Cohen's kappa, confusion.

    Only consented expert reviews with a reference answer (a golden item, the expert's correction, or consented feedback on the same query) are asked, at most [judge] max_items, sampled deterministically. Below [judge] min_kappa (or with fewer than [judge] min_items items) the gate does not let judge-scored golden items alone pass a candidate.
    """  # noqa: E501 (--help text: Rich keeps line breaks, so a paragraph is one line it reflows)
    from flywheel.loop.calibration import calibrate as do_calibrate
    from flywheel.loop.golden.versions import current_golden

    rt = _runtime()
    result = do_calibrate(rt, current_golden(rt.settings))
    answer(as_json, result.public(), lambda: _print_calibration(result))


def _print_calibration(result: JudgeCalibration) -> None:
    out = human_console()
    agreement = "-" if result.agreement is None else f"{result.agreement:.0%}"
    kappa = "undefined" if result.kappa is None else f"{result.kappa:.3f}"
    out.print(
        f"judge {result.judge_model}: {result.items} items, agreement {agreement}, kappa {kappa}",
        highlight=False,
        soft_wrap=True,
    )
    if result.items:
        table = Table(title="confusion (rows: expert, columns: judge)")
        for col in ("", "judge pass", "judge fail"):
            table.add_column(col)
        for row, counts in result.confusion.items():
            table.add_row(row.replace("_", " "), str(counts.judge_pass), str(counts.judge_fail))
        out.print(table)
    elif not any(result.skipped.values()):
        err.print(
            "no expert review to calibrate on: send `expert_review` events (with consent) on answers the "
            "judge can grade, from your reviewers or a labelling tool",
            highlight=False,
            soft_wrap=True,
        )
    verdict = "trusted" if result.trusted else "NOT trusted alone by the gate"
    err.print(f"{verdict}: {result.why}", highlight=False, markup=False, soft_wrap=True)
    if (sc := result.screening) is not None:
        sc_agree = "-" if sc.agreement is None else f"{sc.agreement:.0%}"
        sc_kappa = "undefined" if sc.kappa is None else f"{sc.kappa:.3f}"
        out.print(
            f"screening judge (is the complaint resolved?): {sc.items} items, agreement {sc_agree}, kappa {sc_kappa}",
            highlight=False,
            soft_wrap=True,
        )
    skipped = {k: v for k, v in result.skipped.items() if v}
    if skipped or result.errors:
        err.print(
            "not asked: "
            + ", ".join(f"{k} {v}" for k, v in skipped.items())
            + (f"; judge errors {result.errors}" if result.errors else ""),
            highlight=False,
            soft_wrap=True,
        )
