"""What a reviewer reads in the Prefect form: each pending proposal, its expected answer and where
it came from (event ids, cluster, model), as Markdown the form renders above the switches."""

from __future__ import annotations

from collections.abc import Sequence

from flywheel.proposals import GoldenProposal


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def proposals_markdown(proposals: Sequence[GoldenProposal], *, timeout_s: int | None = None) -> str:
    lines = [
        f"# {len(proposals)} golden-set proposals to review",
        "",
        (
            "Switch on each proposal to accept: accepted items make a new golden version (the previous one "
            "is kept under FLYWHEEL_HOME), logged to MLflow with the reviewer's name. What stays off stays "
            "pending (`flywheel golden reject ID --reason TEXT` rejects it)."
        ),
        "",
        "| proposal | category | scorer | input | expected | source |",
        "|---|---|---|---|---|---|",
    ]
    for p in proposals:
        source = str(p.source.kind)
        if p.source.cluster_id:
            source += f", cluster `{p.source.cluster_id}`"
        if p.source.event_ids:
            source += ", events " + ", ".join(f"`{e}`" for e in p.source.event_ids[:5])
        if p.source.model:
            source += f", model `{p.source.model}`"
        lines.append(
            f"| `{p.proposal_id}` | {_cell(p.category, 40)} | {p.scorer} | {_cell(p.input)} | "
            f"{_cell(p.expected)} | {source} |"
        )
    if timeout_s:
        lines += ["", f"The form waits {timeout_s} s; then nothing is accepted and the proposals stay pending."]
    return "\n".join(lines)
