"""``flywheel sim``, the OpenAI-compatible simulator and its world, and ``flywheel demo``, the loop
run on them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flywheel.app.output import JsonFlag, answer, emit, err, handles_errors
from flywheel.errors import UsageError

if TYPE_CHECKING:
    from flywheel.sim.traffic import TrafficReport

sim_app = typer.Typer(help="The OpenAI-compatible simulator and its demo world.", no_args_is_help=True)


@sim_app.command("world")
@handles_errors
def sim_world(
    directory: Annotated[Path, typer.Argument(help="Directory to write the demo world into.")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same world.")] = 7,
    events: Annotated[int, typer.Option(help="Feedback events to generate (plus a loud user's 200).")] = 4000,
    variant: Annotated[
        str,
        typer.Option(
            help="default (the demo's world), or a variant for benchmarks: identical "
            "(one mode over several clusters), no_reason (80% of negatives without a "
            "reason), multilingual (German, French, Spanish), flood (one user's 400 "
            "downvotes on right answers)."
        ),
    ] = "default",
    as_json: JsonFlag = False,
) -> None:
    """Write the simulator's demo world: feedback, golden set, knowledge and its updates, flywheel.toml."""
    from flywheel.sim.world import VARIANTS, write_world

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    if variant not in VARIANTS:
        raise UsageError(f"--variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    summary = write_world(directory, seed=seed, n_events=events, variant=variant)
    answer(as_json, summary, lambda: _print_world(summary))


def _print_world(summary: dict[str, Any]) -> None:
    for key, value in summary.items():
        err.print(f"{key}: {value}", highlight=False)


@sim_app.command("serve")
@handles_errors
def sim_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 0,
    latency: Annotated[float, typer.Option(help="Seconds to wait before every answer.")] = 0.0,
    fail_status: Annotated[int | None, typer.Option(help="Answer every request with this HTTP status.")] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Keep uploaded files and fine-tuning jobs in this directory (default: in memory)."),
    ] = None,
    finetune_seconds: Annotated[float, typer.Option(help="How long a fine-tuning job runs.")] = 1.0,
    reword: Annotated[
        bool,
        typer.Option(
            "--reword/--no-reword",
            help="The product model rewords every answer "
            "(seeded; same right and wrong answers), as a sampled model does.",
        ),
    ] = True,
    seed: Annotated[
        int, typer.Option(help="Seed for rewording and wild drafting: the same seed, the same answers.")
    ] = 0,
    drafting: Annotated[
        str,
        typer.Option(
            help="How the drafting model (and its diagnosis), the judge and the classifier "
            "answer: 'clean' JSON, or 'wild': fenced, in prose, truncated, refused, "
            "without the prompt's {{variables}}, on another scale or outside the "
            "list, as real models do."
        ),
    ] = "clean",
    reject_json_schema: Annotated[
        bool,
        typer.Option(
            "--reject-json-schema",
            help="Answer 400 to response_format json_schema, as some vLLM and Ollama versions do.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Serve the OpenAI-compatible simulator until interrupted; the base URL is the first line printed."""
    from flywheel.sim.finetune import FineTuneOptions
    from flywheel.sim.server import SimOptions, Simulator
    from flywheel.sim.variation import DRAFTING_MODES

    if drafting not in DRAFTING_MODES:
        raise UsageError(f"--drafting must be one of {', '.join(DRAFTING_MODES)}, not {drafting!r}")
    sim = Simulator(
        host,
        port,
        SimOptions(
            latency=latency,
            fail_status=fail_status,
            data_dir=data,
            finetune=FineTuneOptions(train_seconds=finetune_seconds),
            reword=reword,
            seed=seed,
            drafting=drafting,
            reject_json_schema=reject_json_schema,
        ),
    )
    answer(as_json, {"base_url": sim.base_url}, lambda: print(sim.base_url, flush=True))
    err.print(f"simulator listening; export OPENAI_BASE_URL={sim.base_url} (Ctrl-C to stop)", highlight=False)
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass


@sim_app.command("traffic")
@handles_errors
def sim_traffic(
    url: Annotated[str, typer.Option("--url", help="Base URL of `flywheel serve`.")],
    key: Annotated[
        str,
        typer.Option("--key", help="API key for GET /v1/champion (scope read; an admin key also sends the feedback)."),
    ],
    ingest_key: Annotated[
        str | None, typer.Option(help="API key for POST /v1/feedback or /v1/traces (scope ingest; default --key).")
    ] = None,
    users: Annotated[int, typer.Option(min=1, help="Distinct users (heavy-tailed activity).")] = 2000,
    requests: Annotated[int, typer.Option(min=0, help="Requests to play (one feedback event each).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed for users, queries and feedback.")] = 0,
    rate: Annotated[
        list[str] | None,
        typer.Option(
            "--rate",
            help="True negative rate of matching variants, "
            "KEY=VALUE[,KEY=VALUE]:RATE with keys prompt, index, model, "
            "e.g. --rate prompt=3:0.40 (repeatable; most specific wins).",
        ),
    ] = None,
    default_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="True negative rate of variants no --rate matches.")
    ] = 0.20,
    batch: Annotated[
        int, typer.Option(min=1, max=1000, help="Events per POST /v1/feedback (traces per POST /v1/traces).")
    ] = 250,
    via: Annotated[
        str,
        typer.Option(
            "--via",
            help="How the feedback reaches the service: feedback (POST /v1/feedback, SPEC's events) or otlp "
            "(POST /v1/traces, OpenTelemetry GenAI spans as OTLP JSON, as an instrumented product exports them).",
        ),
    ] = "feedback",
    consent_key: Annotated[
        str,
        typer.Option(
            help="With --via otlp: the span attribute saying the user consented (the service's "
            "[imports.otlp] consent_key)."
        ),
    ] = "user.consent",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Send even to a service whose prompt is not the "
            "simulator world's (its store then holds simulated feedback).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Play users of a live product against `flywheel serve`: ask /v1/champion what to serve each one,
    answer with the simulator's product model, send feedback whose negative rate is the served
    variant's true quality (--rate), dated now (as events, or as GenAI spans with --via otlp)."""
    from flywheel.client import ClientError
    from flywheel.errors import FlywheelError
    from flywheel.sim.quality import QualityMap
    from flywheel.sim.traffic import VIAS, TrafficGenerator, TrafficOptions, foreign_product

    if via not in VIAS:
        raise UsageError(f"--via must be one of {', '.join(VIAS)}, not {via!r}")
    if not consent_key.strip():
        raise UsageError("--consent-key must not be empty")
    quality = QualityMap.parse(rate or [], default_rate)
    options = TrafficOptions(
        users=users, requests=requests, seed=seed, batch=batch, via=via, consent_key=consent_key.strip()
    )
    try:
        with TrafficGenerator(url, read_key=key, ingest_key=ingest_key or key, quality=quality, options=options) as gen:
            if not force and (why := foreign_product(gen.reader)) is not None:
                raise UsageError(f"{url}: {why}")
            report = gen.run()
    except ClientError as exc:  # a wrong key or URL, or a service that stays unavailable
        raise FlywheelError(f"{url}: {exc}") from None
    answer(as_json, report.public(), lambda: _print_traffic(report))


def _print_traffic(report: TrafficReport) -> None:
    err.print(
        f"{report.requests} requests from {report.users} users: {report.accepted} events accepted, "
        f"{report.duplicates} duplicates, {report.rejected} rejected",
        highlight=False,
    )
    for v in report.by_variant:
        err.print(
            f"  {v.arm:10} prompt {v.prompt_version} index {v.index_version or '-'} model {v.model}: "
            f"{v.events} events, negative rate {v.rate} (true {v.true_rate})",
            highlight=False,
        )


@handles_errors
def demo(
    home: Annotated[Path | None, typer.Option(help="State directory to use (default: a fresh temporary one).")] = None,
    via: Annotated[
        str,
        typer.Option(
            "--via",
            help="How the live act's simulated users send feedback: feedback (POST /v1/feedback) or otlp "
            "(POST /v1/traces, OpenTelemetry GenAI spans).",
        ),
    ] = "feedback",
    as_json: JsonFlag = False,
) -> None:
    """Run the loop on the simulator's world in a fresh FLYWHEEL_HOME, no API key needed."""
    from flywheel.app.demo import run_demo
    from flywheel.sim.traffic import VIAS

    if via not in VIAS:
        raise UsageError(f"--via must be one of {', '.join(VIAS)}, not {via!r}")
    result = run_demo(home, console=err, via=via)
    if as_json:
        emit(result)
