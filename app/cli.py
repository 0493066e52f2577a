"""The ``flywheel`` command line (SPEC.md): every command takes ``--json`` and then prints exactly
one JSON document on stdout; logs and progress go to stderr. Exit codes: 0 success, 2 bad input
or usage, 1 any other failure. Errors name the offending file, line or field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

import flywheel  # noqa: F401 - applies the offline switches first
from app.context import _settings, _who
from app.display import _byte_progress, print_candidates, print_clusters
from app.output import JsonFlag, emit, err, handles_errors
from flywheel.config import Settings
from flywheel.errors import UsageError

__all__ = ["app", "main", "print_clusters"]  # print_clusters: once defined here, still importable from here

if TYPE_CHECKING:
    from flywheel.schemas import IngestReport

app = typer.Typer(
    name="flywheel",
    help="Closed-loop improvement for LLM products: feedback in, evaluated and approved fixes out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(help="The OpenAI-compatible simulator and its demo world.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


# ---------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def ingest(
    files: Annotated[list[str], typer.Argument(help="Feedback JSONL files (- for stdin).")],
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 2 when any line was rejected (after storing the good ones).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Validate, scrub and store feedback events; bad lines are quarantined, duplicates counted.

    Each line is one JSON object (README, "Feedback events"). Required: event_id (string, the idempotency key), ts (ISO 8601 string with a timezone), signal (thumbs_up, thumbs_down, rating, correction, edit, accept, dismiss, copy, outcome, expert_review), query, output.

    Optional: user_id, session_id, consent (JSON true or false; absent means false), prompt_version, model, index_version (numbers or strings, kept as strings), arm (production or canary), confidence (0..1), reason, comment, correction, final_text, value (a JSON number), context_ids, metadata.

    A text field longer than ingest.max_field_chars rejects its line.
    """
    from flywheel.feedback.ingest import ingest_files, total_bytes
    from flywheel.feedback.store import open_store

    settings = _settings()
    settings.ensure_home()
    total = total_bytes(files)
    with open_store(settings.resolved_store_url) as store, _byte_progress(total) as progress:
        task = progress.add_task("ingesting", total=total)
        report = ingest_files(
            files, store, settings.quarantine_dir, settings.ingest, lambda n: progress.advance(task, n)
        )
    report.prefect_events = _emit_feedback_events(settings, report.negative)
    failed = strict and report.rejected > 0
    if as_json:
        emit(report.public() | (_strict_error(report) if failed else {}))
    else:
        _print_ingest(report)
    if failed:
        err.print(f"[bold red]error:[/] {_strict_error(report)['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


def _strict_error(report: IngestReport) -> dict[str, Any]:
    lines = "line was" if report.rejected == 1 else "lines were"
    return {"error": f"--strict: {report.rejected} {lines} rejected (the others were stored)", "exit_code": 2}


def _print_ingest(report: IngestReport) -> None:
    err.print(
        f"accepted {report.accepted}, duplicates {report.duplicates}, rejected {report.rejected}"
        + (f", PII scrubbed in {report.scrubbed}" if report.scrubbed else ""),
        highlight=False,
    )
    for e in report.errors[:20]:
        err.print(f"  {e.file}:{e.line}: {e.error}", highlight=False)
    if report.rejected > 20:
        err.print(f"  ... and {report.rejected - 20} more", highlight=False)
    for q in report.quarantine:
        err.print(f"rejected lines kept in {q}", highlight=False)


def _emit_feedback_events(settings: Settings, negatives: int) -> int:
    """Tell Prefect (when a server is configured) how much new negative feedback arrived."""
    from flows.events import emit_negative_feedback

    try:
        return emit_negative_feedback(settings, negatives)
    except Exception as exc:  # the feedback is stored either way; only the trigger misses it
        err.print(f"[yellow]warning:[/] feedback stored, but no Prefect event was sent: {exc}", highlight=False)
        return 0


def run_triage(settings: Settings, progress: Callable[[int], None] | None = None) -> list[Any]:
    from loop.triage_step import triage_step

    return triage_step(settings, progress)


@app.command()
@handles_errors
def triage(as_json: JsonFlag = False) -> None:
    """Group negative feedback into failure clusters by root cause and route each to a fix."""
    settings = _settings()
    clusters = run_triage(settings)
    if as_json:
        emit({"clusters": [c.model_dump(mode="json") for c in clusters]})
    else:
        print_clusters(clusters)


@app.command("config")
@handles_errors
def show_config(as_json: JsonFlag = False) -> None:
    """Show the effective configuration (secrets masked) and where it came from."""
    settings = _settings()
    doc = settings.model_dump(mode="json")
    doc["openai_api_key"] = "***" if settings.openai_api_key else None
    doc["config_file"] = str(settings.config_file) if settings.config_file else None
    doc["resolved"] = {"store_url": settings.resolved_store_url, "mlflow_tracking_uri": settings.resolved_tracking_uri}
    if as_json:
        emit(doc)
    else:
        Console().print_json(json.dumps(doc))


@app.command()
@handles_errors
def cycle(
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Promote on the policy alone.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run one improvement cycle (the Prefect flow `improvement-cycle`); never waits for a person."""
    settings = _settings()
    from flows.cycle import run_flow

    report = run_flow(auto_approve=auto_approve)
    if as_json:
        emit(report.public())
    else:
        err.print(f"cycle {report.cycle_id}: champion golden score {report.champion_score}", highlight=False)
        print_candidates(report.candidates, f"candidates of {report.cycle_id}")


@app.command()
@handles_errors
def pending(as_json: JsonFlag = False) -> None:
    """Candidates waiting for approval, with their scores and MLflow run ids."""
    from loop.promotion import pending as waiting

    cands = waiting(_settings())
    if as_json:
        emit({"pending": [c.public() for c in cands]})
    else:
        print_candidates(cands, f"{len(cands)} candidates waiting for approval")


@app.command()
@handles_errors
def approve(
    candidate_id: Annotated[str, typer.Argument(help="The candidate to promote.")],
    by: Annotated[str | None, typer.Option("--by", help="Who approves (default: $FLYWHEEL_USER or your login).")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why, for the record.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a pending candidate: it is promoted, and who/when/note go on its MLflow run."""
    from loop.promotion import approve as do_approve

    settings = _settings()
    cand = do_approve(settings, candidate_id, by=_who(by), note=note)
    _resume_waiting_flow(settings)
    if as_json:
        emit(cand.public())
    else:
        what = {"prompt": "prompt v", "rag": "index v", "finetune": "model v"}[cand.kind] + str(cand.version)
        err.print(f"{cand.candidate_id} promoted ({what}) by {cand.decided_by}", highlight=False)


def _resume_waiting_flow(settings: Settings) -> None:
    """A cycle paused for approval in the Prefect UI goes on once all its candidates are decided."""
    from flows.approval import resume_if_decided

    try:
        resumed = resume_if_decided(settings)
    except Exception as exc:  # the decision stands; the paused run times out or is resumed in the UI
        err.print(f"[yellow]warning:[/] could not resume the flow run waiting for approval: {exc}", highlight=False)
        return
    for run_id in resumed:
        err.print(f"resumed the flow run {run_id} that was waiting for approval", highlight=False)


@app.command()
@handles_errors
def reject(
    candidate_id: Annotated[str, typer.Argument(help="The candidate to reject.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    by: Annotated[str | None, typer.Option("--by", help="Who rejects.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Reject a pending candidate, with a reason that is recorded on its MLflow run."""
    from loop.promotion import reject as do_reject

    settings = _settings()
    cand = do_reject(settings, candidate_id, by=_who(by), reason=reason)
    _resume_waiting_flow(settings)
    if as_json:
        emit(cand.public())
    else:
        err.print(f"{cand.candidate_id} rejected by {cand.decided_by}", highlight=False)


@app.command()
@handles_errors
def rollback(
    kind: Annotated[str, typer.Argument(help="prompt, rag or model.")],
    by: Annotated[str | None, typer.Option("--by", help="Who rolls back.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Restore the previous champion of a kind; the rollback itself is recorded."""
    from loop.promotion import rollback as do_rollback

    out = do_rollback(_settings(), kind, by=_who(by), note=note)
    if as_json:
        emit(out)
    else:
        err.print(f"{kind}: v{out['from_version']} -> v{out['to_version']}", highlight=False)


@app.command()
@handles_errors
def status(as_json: JsonFlag = False) -> None:
    """Champions, pending approvals, negative-feedback rate, events since the last cycle, loop velocity."""
    from loop.promotion import status as get_status

    doc = get_status(_settings())
    if as_json:
        emit(doc)
    else:
        Console().print_json(json.dumps(doc, default=str))


@app.command()
@handles_errors
def review(
    until: Annotated[str | None, typer.Option("--until", help="End of the reviewed week, ISO 8601 (default: now).")] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=31, help="Days reviewed.")] = 7,
    weeks: Annotated[int, typer.Option("--weeks", min=2, max=52, help="Weeks of trend.")] = 6,
    as_json: JsonFlag = False,
) -> None:
    """The weekly feedback review: worst-rated outputs of the week by cluster, and the negative rate's trend."""
    from datetime import datetime, timezone

    from loop.review import review_markdown, weekly_review

    end = None
    if until:
        try:
            end = datetime.fromisoformat(until)
        except ValueError:
            raise UsageError(f"--until {until!r} is not an ISO 8601 date or time") from None
        end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    doc = weekly_review(_settings(), until=end, days=days, weeks=weeks)
    if as_json:
        emit(doc.model_dump(mode="json"))
    else:
        Console().print(review_markdown(doc), markup=False, highlight=False)


dataset_app = typer.Typer(help="Fine-tune datasets from consented feedback (Hugging Face datasets).",
                          no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
@handles_errors
def dataset_build(
    min_examples: Annotated[int | None, typer.Option("--min-examples", help="Usable examples needed (default: "
                                                     "triage.finetune_min_examples, 1000).")] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Start a fine-tuning job on the configured endpoint.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Curate usable feedback into a versioned dataset (SFT, preference pairs, OpenAI JSONL), once
    enough examples survive curation; optionally start a fine-tuning job with it."""
    from loop import finetuning
    from flywheel.llm import make_client

    settings = _settings()
    if submit:
        make_client(settings, purpose="`flywheel dataset build --submit`")  # fail fast, before the work
    doc = finetuning.build_dataset(settings, min_examples=min_examples)
    if submit and doc["built"]:
        record = finetuning.start_job(settings, make_client(settings, purpose="fine-tuning"), doc,
                                      cluster_ids=[], cycle_id=None)
        doc["job_id"], doc["job_status"] = record["job_id"], record["status"]
    elif submit:
        doc["job_id"] = None
    if as_json:
        emit(doc)
        return
    excluded = ", ".join(f"{k} {v}" for k, v in doc["excluded"].items())
    if not doc["built"]:
        err.print(f"not built: {doc['examples']} usable examples after curation, {doc['min_examples']} needed "
                  f"(excluded: {excluded})", highlight=False)
        return
    err.print(f"dataset {doc['version']}{' (unchanged, reused)' if doc.get('reused') else ''}: {doc['examples']} "
              f"examples (train {doc['train']}, validation {doc['validation']}), {doc['preference_pairs']} "
              f"preference pairs; excluded: {excluded}\n  {doc['path']}\n  {doc['jsonl']}", highlight=False)
    if doc.get("job_id"):
        err.print(f"fine-tuning job {doc['job_id']} ({doc['job_status']})", highlight=False)


kb_app = typer.Typer(help="The versioned knowledge index behind retrieval (Chroma).", no_args_is_help=True)
app.add_typer(kb_app, name="kb")


@contextmanager
def _index(settings: Settings) -> Iterator[Any]:
    from flywheel.knowledge.index import open_index
    from flywheel.state import open_state

    with open_state(settings.ensure_home()) as state:
        yield open_index(settings, state)


@kb_app.command("sync")
@handles_errors
def kb_sync(
    source: Annotated[Path | None, typer.Option("--source", help="Directory of .md/.txt or a JSONL file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a new index version from the knowledge source, embedding only chunks whose content changed."""
    settings = _settings()
    path = source or settings.knowledge_source
    if path is None:
        raise UsageError("no knowledge source: pass --source or set FLYWHEEL_KNOWLEDGE_SOURCE / knowledge_source")
    with _index(settings) as index:
        report = index.sync(path)
    if as_json:
        emit(report.public())
    else:
        err.print(f"index version {report.version}{' (active)' if report.activated else ''}: "
                  f"{report.added} added, {report.updated} updated, {report.deleted} deleted, "
                  f"{report.unchanged} unchanged; {report.embedded} embedded", highlight=False)


@kb_app.command("status")
@handles_errors
def kb_status(as_json: JsonFlag = False) -> None:
    """The active index version, every retained version, and what the active one holds."""
    with _index(_settings()) as index:
        doc = index.status()
    if as_json:
        emit(doc)
    else:
        Console().print_json(json.dumps(doc, default=str))


@kb_app.command("rebuild")
@handles_errors
def kb_rebuild(as_json: JsonFlag = False) -> None:
    """Restore the Chroma store from the state store (after it was lost or corrupted)."""
    with _index(_settings()) as index:
        doc = index.rebuild()
    if as_json:
        emit(doc)
    else:
        err.print(f"restored {doc['restored']} of {doc['records']} records ({doc['embedded']} embedded)")


prompt_app = typer.Typer(help="The champion prompt in the MLflow prompt registry.", no_args_is_help=True)
app.add_typer(prompt_app, name="prompt")


@prompt_app.command("set")
@handles_errors
def prompt_set(
    file: Annotated[Path, typer.Argument(help="Text file with the prompt template.")],
    message: Annotated[str | None, typer.Option("--message", help="Commit message for the new version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register FILE as a new prompt version and point `production` at it."""
    from loop.promotion import set_prompt

    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    out = set_prompt(_settings(), file.read_text(encoding="utf-8").strip(), message=message, by=_who(None))
    if as_json:
        emit(out)
    else:
        err.print(f"prompt {out['name']} v{out['version']} is now production", highlight=False)


@prompt_app.command("show")
@handles_errors
def prompt_show(
    version: Annotated[str | None, typer.Option("--version", help="A version (default: production).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the production prompt (or version N)."""
    from flywheel.champion import prompt_version, require_production_prompt

    settings = _settings()
    ref = prompt_version(settings, version) if version else require_production_prompt(settings)
    doc = {"name": ref.name, "version": ref.version, "template": ref.template, "aliases": list(ref.aliases)}
    if as_json:
        emit(doc)
    else:
        print(ref.template)


# ---------------------------------------------------------------------------------------------
@sim_app.command("world")
@handles_errors
def sim_world(
    directory: Annotated[Path, typer.Argument(help="Directory to write the demo world into.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same world.")] = 7,
    events: Annotated[int, typer.Option(help="Feedback events to generate (plus a loud user's 200).")] = 4000,
    as_json: JsonFlag = False,
) -> None:
    """Write the simulator's demo world: feedback, golden set, knowledge and its updates, flywheel.toml."""
    from sim.world import write_world

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    summary = write_world(directory, seed=seed, n_events=events)
    if as_json:
        emit(summary)
    else:
        for key, value in summary.items():
            err.print(f"{key}: {value}", highlight=False)


@sim_app.command("serve")
@handles_errors
def sim_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 0,
    latency: Annotated[float, typer.Option(help="Seconds to wait before every answer.")] = 0.0,
    fail_status: Annotated[int | None, typer.Option(help="Answer every request with this HTTP status.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Keep uploaded files and fine-tuning jobs in this "
                                              "directory (default: in memory).")] = None,
    finetune_seconds: Annotated[float, typer.Option(help="How long a fine-tuning job runs.")] = 1.0,
    reword: Annotated[bool, typer.Option("--reword/--no-reword", help="The product model rewords every answer "
                                         "(seeded; same right and wrong answers), as a sampled model does.")] = True,
    seed: Annotated[int, typer.Option(help="Seed for rewording and wild drafting: the same seed, the same "
                                      "answers.")] = 0,
    drafting: Annotated[str, typer.Option(help="How the drafting model answers: 'clean' JSON, or 'wild': "
                                          "fenced, in prose, truncated, refused or without the prompt's "
                                          "{{variables}}, as real models do.")] = "clean",
    reject_json_schema: Annotated[bool, typer.Option("--reject-json-schema", help="Answer 400 to response_format "
                                                     "json_schema, as some vLLM and Ollama versions do.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Serve the OpenAI-compatible simulator until interrupted; the base URL is the first line printed."""
    from sim.finetune import FineTuneOptions
    from sim.server import SimOptions, Simulator
    from sim.variation import DRAFTING_MODES

    if drafting not in DRAFTING_MODES:
        raise UsageError(f"--drafting must be one of {', '.join(DRAFTING_MODES)}, not {drafting!r}")
    sim = Simulator(host, port, SimOptions(latency=latency, fail_status=fail_status, data_dir=data,
                                           finetune=FineTuneOptions(train_seconds=finetune_seconds),
                                           reword=reword, seed=seed, drafting=drafting,
                                           reject_json_schema=reject_json_schema))
    if as_json:
        emit({"base_url": sim.base_url})
    else:
        print(sim.base_url, flush=True)
    err.print(f"simulator listening; export OPENAI_BASE_URL={sim.base_url} (Ctrl-C to stop)", highlight=False)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def demo(
    home: Annotated[Path | None, typer.Option(help="State directory to use (default: a fresh temporary one).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the loop on the simulator's world in a fresh FLYWHEEL_HOME, no API key needed."""
    from app.demo import run_demo

    result = run_demo(home, console=err)
    if as_json:
        emit(result)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
