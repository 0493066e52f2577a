"""The demo's last act, live traffic: fixes verified (or undone) on what users say, not only on the
golden set.

`flywheel serve` runs in this process on 127.0.0.1 (keys made for the act) and the simulator's
traffic generator (:mod:`sim.traffic`) plays the users of the product against it. The true quality
of each variant comes from its golden score by the simulator's explicit mapping
(:func:`sim.quality.rate_for_golden`). Two scenes, each judged by `flywheel watch` alone:

1. the cycle's approved candidate runs as a canary for 20% of users; after the traffic, the watch
   (``watch.auto_promote`` on for the demo) compares the arms on the same period and promotes it,
   and the negative rate of everyone's traffic falls;
2. a teammate pastes the team's old prompt back by hand (`flywheel prompt set`): a promotion the
   golden set would have refused; after the traffic, the watch finds it significantly worse than
   the version it replaced and rolls it back (``watch.auto_rollback``, the default).

With ``via="otlp"`` (``flywheel demo --via otlp``) the users' feedback reaches the service as
OpenTelemetry GenAI spans on ``POST /v1/traces`` instead of events on ``POST /v1/feedback``: the same
traffic, through the path a product instrumented with OpenTelemetry takes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flywheel.candidates import Candidate
from flywheel.client import FlywheelClient
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.runtime import runtime_for
from flywheel.sim.quality import BEST_RATE, WORST_RATE, QualityMap, Variant, VariantQuality, rate_for_golden
from flywheel.sim.traffic import TrafficGenerator, TrafficOptions, TrafficReport, Via

if TYPE_CHECKING:
    from flywheel.champions import Canary

CANARY_PERCENT = 20.0
USERS = 2000
CANARY_REQUESTS = 3000  # about 600 canary events: a verdict at this quality gap, not a power study
FOLLOW_REQUESTS = 1000
BAD_REQUESTS = 1500
LIVE_OVERRIDES: dict[str, Any] = {"watch": {"auto_promote": True}, "serve": {"champion_ttl_seconds": 0.3}}


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _points(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def _served(client: FlywheelClient, want: Variant, seconds: float = 30.0) -> None:
    """Wait until the service serves ``want`` (its champion cache follows a move within its TTL)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = client.champion("demo-probe")
        if (got.prompt.version, got.index, got.model) == (want.prompt_version, want.index_version, want.model):
            return
        time.sleep(0.05)


def _traffic_line(console: Console, what: str, report: TrafficReport) -> None:
    arms = "; ".join(f"{arm} {r.events} events, negative {_pct(r.rate)}" for arm, r in report.by_arm.items())
    console.print(f"  traffic ({what}): {report.requests} requests from {report.users} users: {arms}", highlight=False)


def _watch_line(console: Console, row: Any, alpha: float) -> dict[str, Any]:
    c = row.comparison
    console.print(
        f"  flywheel watch: {row.kind} {row.version} vs {row.against}: {c.events} vs {c.baseline_events} events "
        f"({c.capped_events:g} vs {c.capped_baseline_events:g} after the per-user cap), negative rate "
        f"{_pct(c.negative_rate)} vs {_pct(c.baseline_rate)}, difference {_points(c.difference)} points, "
        f"{1 - alpha:.0%} CI [{_points(c.ci_low)}, {_points(c.ci_high)}] ({c.method}) -> {c.verdict}, "
        f"action: {row.action}",
        highlight=False,
    )
    console.print(f"    why: {row.why}", highlight=False)
    return row.model_dump(mode="json")


def run_live_act(
    settings: Settings, canary: Candidate, bad_prompt: str, console: Console, via: Via = "feedback"
) -> dict[str, Any]:
    """Canary ``canary`` (pending) at 20%, traffic, watch; then ``bad_prompt`` by hand, traffic, watch;
    the feedback sent ``via`` events or OTLP spans."""
    from flywheel.app.serve.background import BackgroundServer
    from flywheel.keys import open_keys

    started = time.monotonic()
    console.rule("live traffic: flywheel serve, simulated users, flywheel watch")
    arms, quality = _start_canary(settings, canary, console)
    keys = open_keys(settings)
    tag = str(int(time.time()))
    read, ingest = keys.create(f"demo-product-{tag}", "read"), keys.create(f"demo-events-{tag}", "ingest")
    with (
        BackgroundServer(settings) as server,
        FlywheelClient(server.url, read) as client,
        TrafficGenerator(
            server.url,
            read_key=read,
            ingest_key=ingest,
            quality=quality,
            options=TrafficOptions(
                users=USERS,
                requests=CANARY_REQUESTS,
                seed=1,
                via=via,
                consent_key=settings.imports.otlp.consent_key,
            ),
        ) as gen,
    ):
        route = "/v1/traces (OpenTelemetry GenAI spans)" if via == "otlp" else "/v1/feedback"
        console.print(
            f"flywheel serve at {server.url} (keys: read for /v1/champion, ingest for {route}); "
            f"{USERS} simulated users, a few far more active than most",
            highlight=False,
        )
        scene = _Scene(settings=settings, console=console, client=client, gen=gen, quality=quality, arms=arms)
        canary_doc = _canary_scene(scene, canary)
        bad_doc = _bad_promotion_scene(scene, bad_prompt)
    seconds = round(time.monotonic() - started, 1)
    console.print(f"live act: {seconds} s", highlight=False)
    return {
        "url": server.url,
        "seconds": seconds,
        "quality": [v.model_dump() for v in quality.variants],
        "canary": canary_doc,
        "bad_promotion": bad_doc,
    }


@dataclass
class _Arms:
    """What each arm serves once the canary runs, and the canary as the service sees it."""

    production: Variant
    candidate: Variant
    running: Canary


@dataclass
class _Scene:
    """What both scenes play on: the service's client, the users, the true quality, the arms."""

    settings: Settings
    console: Console
    client: FlywheelClient
    gen: TrafficGenerator
    quality: QualityMap
    arms: _Arms


def _start_canary(settings: Settings, canary: Candidate, console: Console) -> tuple[_Arms, QualityMap]:
    """Approve ``canary`` as a canary; what each arm serves, and each variant's true quality (from its
    golden score), said on the console."""
    from flywheel.arms import arm_for, assignment
    from flywheel.loop.canary import approve_canary

    approve_canary(
        settings,
        canary.candidate_id,
        percent=CANARY_PERCENT,
        by="demo-approver",
        note="approved as a canary in the demo",
    )
    with runtime_for(settings).borrow_state() as state:
        prod = assignment(settings, state, None)
        running = prod.canary
        assert running is not None
        probe = next(u for u in (f"probe-{i}" for i in range(100_000)) if arm_for(u, running.percent) == "canary")
        can = assignment(settings, state, probe)
    production = Variant(prompt_version=prod.prompt_version, index_version=prod.index_version, model=prod.model)
    candidate = Variant(prompt_version=can.prompt_version, index_version=can.index_version, model=can.model)
    assert canary.champion_score is not None and canary.golden_score is not None
    quality = QualityMap(
        variants=[
            VariantQuality(
                **production.model_dump(),
                negative_rate=rate_for_golden(canary.champion_score),
                note=f"production: golden {canary.champion_score}",
            ),
            VariantQuality(
                **candidate.model_dump(),
                negative_rate=rate_for_golden(canary.golden_score),
                note=f"{canary.candidate_id}: golden {canary.golden_score}",
            ),
        ]
    )
    console.print(
        f"{canary.candidate_id} ({canary.kind}) approved as a canary for {CANARY_PERCENT:g}% of users "
        f"(what `flywheel approve {canary.candidate_id} --canary {CANARY_PERCENT:g}` does)",
        highlight=False,
    )
    console.print(
        f"true quality (simulator): negative rate = {BEST_RATE:.0%} + {WORST_RATE - BEST_RATE:.0%} x "
        "(1 - golden score)",
        highlight=False,
    )
    for v in quality.variants:
        console.print(f"  {Variant(**v.model_dump()).label()}: {v.note} -> {_pct(v.negative_rate)}", highlight=False)
    return _Arms(production=production, candidate=candidate, running=running), quality


def _canary_scene(scene: _Scene, canary: Candidate) -> dict[str, Any]:
    """Scene 1: traffic on both arms, the watch's verdict on the canary, traffic after it; its document."""
    from flywheel.loop.watch import run_watch

    console, gen = scene.console, scene.gen
    console.print("scene 1: the canary", style="bold", highlight=False)
    during = gen.run()
    _traffic_line(console, f"canary at {CANARY_PERCENT:g}%", during)
    rt = runtime_for(scene.settings)
    canary_row = next(r for r in run_watch(scene.settings, rt.state, rt.feedback).watches if r.scope == "canary")
    canary_doc = _watch_line(console, canary_row, scene.settings.watch.alpha)
    if canary_row.action == "promoted":
        _served(scene.client, scene.arms.candidate)
    after = gen.run(FOLLOW_REQUESTS, seed=2)
    _traffic_line(console, "after the watch's decision", after)
    before_rate = during.by_arm["production"].rate
    after_rate = after.by_arm["production"].rate
    console.print(
        f"  negative rate of production traffic: {_pct(before_rate)} -> {_pct(after_rate)}",
        style="bold",
        highlight=False,
    )
    return {
        "candidate_id": canary.candidate_id,
        "kind": str(canary.kind),
        "version": scene.arms.running.version,
        "percent": CANARY_PERCENT,
        "traffic": during.public(),
        "watch": canary_doc,
        "verdict": canary_doc["verdict"],
        "action": canary_doc["action"],
        "negative_rate_before": before_rate,
        "negative_rate_after": after_rate,
        "traffic_after": after.public(),
    }


def _bad_promotion_scene(scene: _Scene, bad_prompt: str) -> dict[str, Any]:
    """Scene 2: ``bad_prompt`` promoted by hand, traffic, the watch's verdict on it (a rollback), traffic
    after it; its document."""
    from flywheel.evals.pipeline import Variant as EvalVariant
    from flywheel.loop.evaluate import evaluate_step
    from flywheel.loop.promotion import set_prompt
    from flywheel.loop.watch import run_watch

    settings, console, gen, candidate = scene.settings, scene.console, scene.gen, scene.arms.candidate
    console.print("scene 2: a bad promotion by hand", style="bold", highlight=False)
    moved = set_prompt(settings, bad_prompt, message="pasted the old prompt back (a hand edit)", by="a-teammate")
    bad = Variant(prompt_version=moved["version"], index_version=candidate.index_version, model=candidate.model)
    (measured,) = evaluate_step(
        runtime_for(settings),
        [
            EvalVariant(
                label="hand edit",
                prompt_template=bad_prompt,
                prompt_version=bad.prompt_version,
                model=bad.model or "",
                index_version=bad.index_version,
                pipeline="builtin",
            )
        ],
    )
    if measured.mean is None:
        raise FlywheelError("the hand-edited prompt's evaluation scored no golden item (the endpoint failed)")
    bad_rate = rate_for_golden(measured.mean)
    scene.quality.variants.append(
        VariantQuality(**bad.model_dump(), negative_rate=bad_rate, note=f"hand edit: golden {measured.mean:.3f}")
    )
    console.print(
        f"  a teammate pastes the team's old prompt back (`flywheel prompt set`): prompt v{bad.prompt_version} "
        f"is production, no cycle, no gate; its golden score would have been {measured.mean:.3f} -> "
        f"true negative rate {_pct(bad_rate)}",
        highlight=False,
    )
    _served(scene.client, bad)
    hand = gen.run(BAD_REQUESTS, seed=3)
    _traffic_line(console, "after the hand edit", hand)
    rt = runtime_for(settings)
    bad_row = next(
        r
        for r in run_watch(settings, rt.state, rt.feedback).watches
        if r.scope == "promotion" and r.version == bad.prompt_version
    )
    bad_doc = _watch_line(console, bad_row, settings.watch.alpha)
    if bad_row.action == "rolled_back":
        _served(scene.client, candidate)
    back = gen.run(FOLLOW_REQUESTS // 2, seed=4)
    _traffic_line(console, "after the rollback", back)
    return {
        "version": bad.prompt_version,
        "against": bad_row.against,
        "golden_score": measured.mean,
        "true_rate": bad_rate,
        "traffic": hand.public(),
        "watch": bad_doc,
        "verdict": bad_doc["verdict"],
        "action": bad_doc["action"],
        "negative_rate": hand.by_arm["production"].rate,
        "negative_rate_after_rollback": back.by_arm["production"].rate,
    }
