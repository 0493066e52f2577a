"""``flywheel dataset``: fine-tune datasets."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flywheel.app.context import _settings
from flywheel.app.output import JsonFlag, answer, err, handles_errors

dataset_app = typer.Typer(
    help="Fine-tune datasets from consented feedback (Hugging Face datasets).", no_args_is_help=True
)


@dataset_app.command("build")
@handles_errors
def dataset_build(
    min_examples: Annotated[
        int | None,
        typer.Option("--min-examples", help="Usable examples needed (default: triage.finetune_min_examples, 1000)."),
    ] = None,
    submit: Annotated[
        bool, typer.Option("--submit", help="Start a fine-tuning job on the configured endpoint.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Curate usable feedback into a versioned dataset (SFT, preference pairs, OpenAI JSONL), once
    enough examples survive curation; optionally start a fine-tuning job with it."""
    from flywheel.improvers import finetuning
    from flywheel.llm import make_client

    settings = _settings()
    if submit:
        make_client(settings, purpose="`flywheel dataset build --submit`")  # fail fast, before the work
    doc = finetuning.build_dataset(settings, min_examples=min_examples)
    if submit and doc["built"]:
        record = finetuning.start_job(
            settings, make_client(settings, purpose="fine-tuning"), doc, cluster_ids=[], cycle_id=None
        )
        doc["job_id"], doc["job_status"] = record["job_id"], record["status"]
    elif submit:
        doc["job_id"] = None
    answer(as_json, doc, lambda: _print_dataset(doc))


def _print_dataset(doc: dict[str, Any]) -> None:
    excluded = ", ".join(f"{k} {v}" for k, v in doc["excluded"].items())
    if not doc["built"]:
        err.print(
            f"not built: {doc['examples']} usable examples after curation, {doc['min_examples']} needed "
            f"(excluded: {excluded})",
            highlight=False,
        )
        return
    err.print(
        f"dataset {doc['version']}{' (unchanged, reused)' if doc.get('reused') else ''}: {doc['examples']} "
        f"examples (train {doc['train']}, validation {doc['validation']}), {doc['preference_pairs']} "
        f"preference pairs; excluded: {excluded}\n  {doc['path']}\n  {doc['jsonl']}",
        highlight=False,
    )
    if doc.get("job_id"):
        err.print(f"fine-tuning job {doc['job_id']} ({doc['job_status']})", highlight=False)
