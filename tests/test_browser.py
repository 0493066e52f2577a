"""The operator's loop end to end, in a real browser.

A real `prefect server` on 127.0.0.1, Flywheel's deployments from `prefect.yaml` and a process
worker, all as the README tells an operator. `flywheel ingest` sends its negative-feedback events
to the server; the `on-feedback` trigger starts a cycle; the cycle runs on the worker against the
simulator and pauses for approval. Headless Chromium (Debian's, driven by Playwright) opens the flow
run, reads the evidence in the form, switches on the prompt candidate, leaves the index candidate
off, and submits. Then: the prompt is in production, the index candidate is rejected with the note,
the run completed, and its report and candidate table are artifacts of the run.

The screenshots land in tests/output/browser/ (the form as filled, and the run after approval),
next to the server's and worker's logs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from nonempty import every
from operator_stack import CHROMIUM, CHROMIUM_ARGS, PrefectStack, ensure_chromium, prefect_stack

pytestmark = pytest.mark.slow

OUTPUT = Path(__file__).resolve().parent / "output" / "browser"
HOOKS = Path(__file__).resolve().parent / "hooks"
# How often the worker's runs renew a concurrency lease (Prefect's own: 225 s), and how long the test
# keeps the cycle paused before anyone answers; FLYWHEEL_BROWSER_LEASE_RENEWAL_S=225
# FLYWHEEL_BROWSER_PAUSE_S=600 replays an operator's real wait past Prefect's own first renewal.
LEASE_RENEWAL_S = float(os.environ.get("FLYWHEEL_BROWSER_LEASE_RENEWAL_S", "5"))
LEASE_WAIT_S = float(os.environ.get("FLYWHEEL_BROWSER_PAUSE_S", "20"))


@pytest.fixture(scope="module")
def chromium() -> str:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    why = ensure_chromium(OUTPUT / "apt.log")
    if why:
        pytest.skip(f"no browser for the UI test: {why}")
    return str(CHROMIUM)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[PrefectStack]:
    with prefect_stack(tmp_path, OUTPUT) as running:
        yield running


_T0 = [time.monotonic()]


def _phase(what: str) -> None:
    """Where the test's time goes (shown with -s, and in a failure's captured output)."""
    print(f"[browser +{time.monotonic() - _T0[0]:5.1f} s] {what}", flush=True)


def _wait_for(what: str, check, stack: PrefectStack, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout:.0f} s\n{stack.diagnostics()}")


def _prepare(cli, world: Path, world_vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The world's prompt in production and its knowledge indexed; the source then corrected."""
    from conftest import seed_world_vectors
    from flywheel.config import load_settings

    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(world / "golden.jsonl"))
    monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "0")
    monkeypatch.setenv("FLYWHEEL_USER", "tester")
    seed_world_vectors(world_vectors, load_settings())
    cli("prompt", "set", str(world / "prompt.txt"), "--json")
    knowledge = shutil.copytree(world / "knowledge", Path("knowledge").resolve())
    monkeypatch.setenv("FLYWHEEL_KNOWLEDGE_SOURCE", str(knowledge))
    cli("kb", "sync", "--json")
    for doc in (world / "knowledge_updates").iterdir():
        shutil.copy(doc, knowledge / doc.name)


def _open_form(page):  # type: ignore[no-untyped-def]
    """The paused run's Resume dialog."""
    from playwright.sync_api import expect

    expect(page.get_by_text("Paused").first).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Resume Flow Run")).to_be_visible(timeout=30_000)
    return dialog


def _fill_form(dialog, approve: str, leave: str, approver: str = "ui-operator") -> None:  # type: ignore[no-untyped-def]
    """Approve one candidate (by its title in the form), leave the other, sign and explain."""
    from playwright.sync_api import expect

    def row(label: str):  # type: ignore[no-untyped-def]
        return dialog.locator(".schema-form-property").filter(has_text=label)

    switch = row(f"Approve {approve}").get_by_role("switch")
    if not switch.is_checked():
        switch.click()
    row("Approver").locator("textarea, input").first.fill(approver)
    row("Note").locator("textarea, input").first.fill("prompt checked in the browser; index needs the docs team")
    expect(row(f"Approve {approve}").get_by_role("switch")).to_be_checked()
    expect(row(f"Approve {leave}").get_by_role("switch")).not_to_be_checked()


def _description_room(dialog) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """How much of the form's description shows at once: the height of the box it scrolls in
    (``visible``) against its whole height (``content``); equal when nothing is hidden."""
    return dict(
        dialog.get_by_text("candidates passed the policy").first.evaluate("""el => {
        const dialog = el.closest('[role=dialog]');
        for (let n = el.parentElement; n && n !== dialog; n = n.parentElement) {
            const style = getComputedStyle(n);
            if (/(auto|scroll|hidden)/.test(style.overflowY) && n.scrollHeight > n.clientHeight + 1)
                return {visible: n.clientHeight, content: n.scrollHeight};
        }
        const h = el.parentElement.getBoundingClientRect().height;
        return {visible: h, content: h};
    }""")
    )


def _still_paused(stack: PrefectStack, run_id: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stack.flow_run(run_id)["state"]["type"] != "PAUSED":
            return False
        time.sleep(1)
    return True


def test_an_operator_approves_a_feedback_triggered_cycle_in_the_prefect_ui(
    chromium: str, stack: PrefectStack, cli, world: Path, world_vectors: Path, sim_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from playwright.sync_api import expect, sync_playwright

    from flywheel.config import load_settings
    from flywheel.flows.approval import waiting_runs
    from flywheel.state import open_state
    from operator_stack import BIN

    _T0[0] = time.monotonic()
    _prepare(cli, world, world_vectors, monkeypatch)
    _phase("prepared")
    # Prefect renews a run's concurrency lease every 225 s; here every few seconds, so the wait below
    # spans several renewals (the hook is tests/hooks/sitecustomize.py, loaded by the worker's runs).
    stack.deploy(
        FLYWHEEL_APPROVAL__POLL_INTERVAL="1",
        FLYWHEEL_TEST_LEASE_RENEWAL_SECONDS=str(LEASE_RENEWAL_S),
        PYTHONPATH=os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH", "")) if p),
    )

    _phase("deployed")
    # Feedback arrives: ingest tells the server, whose trigger starts the on-feedback deployment.
    ingest = subprocess.run(
        [str(BIN / "flywheel"), "ingest", str(world / "feedback.jsonl"), "--json"],
        env=stack.environ(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["prefect_events"] == 10  # events.max_per_ingest: one ingest, one cycle
    runs = _wait_for("the on-feedback trigger started no cycle", lambda: stack.flow_runs("on-feedback"), stack, 120)
    assert len(runs) == 1, f"one ingest started {len(runs)} cycles"
    run_id = runs[0]["id"]
    _phase("ingested; the trigger started a cycle")

    settings = load_settings()
    paused = _wait_for(
        "the cycle did not pause for approval",
        lambda: (run := stack.flow_run(run_id))["state"]["type"] == "PAUSED" and run,
        stack,
        400,
    )
    assert paused["state"]["name"] == "Paused"
    paused_at = time.monotonic()
    _phase("paused")
    # The wait survives Prefect's lease renewals: still paused (not Crashed) after several of them.
    assert _still_paused(stack, run_id, seconds=LEASE_WAIT_S), (
        f"the cycle paused for approval did not survive {LEASE_WAIT_S:g} s of lease renewals every "
        f"{LEASE_RENEWAL_S:g} s: {stack.flow_run(run_id)['state']}\n{stack.diagnostics()}"
    )
    waits = waiting_runs(settings)
    assert list(waits) == [run_id]
    with open_state(settings) as state:
        cands = {c.kind: c for c in (state.candidate(cid) for cid in waits[run_id]["candidate_ids"]) if c}
    assert set(cands) == {"prompt", "rag"}
    prompt, rag = cands["prompt"], cands["rag"]

    _phase("survived the lease renewals")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # a laptop's screen
        page.goto(f"{stack.url}/runs/flow-run/{run_id}")
        dialog = _open_form(page)
        # The form's description: both candidates by kind, version and fixes, their scores against the
        # champion with the CI, the warning that approving both serves an untested combination.
        expect(dialog.get_by_text("2 candidates passed the policy")).to_be_visible()
        for cand in (prompt, rag):
            expect(dialog.get_by_text(cand.title()).first).to_be_visible()
            expect(
                dialog.get_by_text(f"golden {cand.golden_score} vs champion {cand.champion_score}").first
            ).to_be_attached()
        text = dialog.inner_text()
        assert "95% CI" in text and "never evaluated together" in text
        room = _description_room(dialog)
        dialog.screenshot(path=str(OUTPUT / "approval-form-1400x900.png"))
        print(
            f"\napproval form at 1400x900: description {room['visible']:.0f} px shown of {room['content']:.0f} px; "
            f"screenshot {OUTPUT / 'approval-form-1400x900.png'}"
        )
        assert room["visible"] >= min(room["content"], 240), f"the evidence is squeezed at 1400x900: {room}"

        # The full evidence, one click away: per category n and intervals, the answers that changed.
        link = dialog.get_by_role("link", name="flywheel-approval-evidence")
        href = link.get_attribute("href")
        assert href and href.startswith(stack.url), href
        evidence_page = browser.new_page(viewport={"width": 1400, "height": 900})
        evidence_page.goto(href)
        try:
            expect(evidence_page.get_by_text("Answers that changed").first).to_be_attached(timeout=30_000)
            expect(evidence_page.get_by_text("Wilson 95%").first).to_be_visible()
            expect(evidence_page.get_by_text(prompt.title()).first).to_be_visible()
        finally:
            evidence_page.screenshot(path=str(OUTPUT / "approval-evidence-1400x900.png"))
        print(f"evidence artifact at 1400x900: {OUTPUT / 'approval-evidence-1400x900.png'}")
        evidence_page.close()

        # Nobody decides without a name: submitted unsigned, the run stays paused.
        _fill_form(dialog, approve=prompt.short_title(), leave=rag.short_title(), approver="")
        dialog.get_by_role("button", name="Submit").click()
        assert _still_paused(stack, run_id, seconds=5), "an unsigned form resumed the run"
        if not dialog.is_visible():
            dialog = _open_form(page)
        _fill_form(dialog, approve=prompt.short_title(), leave=rag.short_title())
        dialog.screenshot(path=str(OUTPUT / "approval-form.png"))
        page.screenshot(path=str(OUTPUT / "approval-page.png"), full_page=True)
        waited = time.monotonic() - paused_at
        dialog.get_by_role("button", name="Submit").click()
        if _still_paused(stack, run_id) and "database is locked" in (OUTPUT / "prefect-server.log").read_text():
            # Prefect's SQLite server can refuse a write under load (SQLITE_BUSY when a deferred
            # transaction upgrades to a write). The resume is one transaction, so nothing of it was
            # kept: the operator submits again, as the UI's error toast invites.
            page.reload()
            dialog = _open_form(page)
            _fill_form(dialog, approve=prompt.short_title(), leave=rag.short_title())
            dialog.get_by_role("button", name="Submit").click()
        print(f"the cycle stayed paused {waited:.0f} s (lease renewals every {LEASE_RENEWAL_S:g} s) until approved")

        done = _wait_for(
            "the run did not finish after the form was submitted",
            lambda: (run := stack.flow_run(run_id))["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED"} and run,
            stack,
            120,
        )
        assert done["state"]["type"] == "COMPLETED", done["state"]
        _phase("completed")
        page.reload()
        expect(page.get_by_text("Completed").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(OUTPUT / "after-approval.png"), full_page=True)
        page.get_by_text("Artifacts", exact=True).first.click()  # the operator's view of the cycle's report
        try:
            expect(page.get_by_text("flywheel-cycle-report").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("flywheel-cycle-candidates").first).to_be_visible()
            expect(page.get_by_text("flywheel-cycle-chart").first).to_be_visible()
        finally:  # what the operator saw, also when the expectation fails
            page.screenshot(path=str(OUTPUT / "artifacts.png"), full_page=True)
        page.get_by_text("flywheel-cycle-chart").first.click()  # the chart, drawn by the Prefect UI
        chart = page.locator("img[alt^='golden score per cycle']").first
        try:
            expect(chart).to_be_visible(timeout=30_000)
            assert chart.evaluate("img => img.complete && img.naturalWidth") >= 600  # decoded, not a broken icon
        finally:
            page.screenshot(path=str(OUTPUT / "chart.png"), full_page=True)
        browser.close()
    _phase("artifacts seen")

    # Deployed, the schedules are off; the operator switches two on as the README says, and the
    # server's scheduler (its loop runs every 5 s here, every minute by default) queues the nightly
    # cycle at 02:00 UTC and the review on Monday 09:00 UTC.
    named = {
        "nightly": "improvement-cycle/nightly",
        "weekly-review": "weekly-feedback-review/weekly-review",
        "watch": "watch/watch",
    }
    assert {name: [s["active"] for s in stack.schedules(full)] for name, full in named.items()} == {
        "nightly": [False],
        "weekly-review": [False],
        "watch": [False],
    }
    for name in ("nightly", "weekly-review"):
        stack.resume_schedules(named[name])
    assert [s["active"] for s in stack.schedules(named["nightly"])] == [True]
    for deployment, weekday, hour in (("nightly", None, 2), ("weekly-review", 0, 9)):
        queued = _wait_for(f"no scheduled run of {deployment}", lambda d=deployment: stack.flow_runs(d), stack, 120)
        starts = [datetime.fromisoformat(r["expected_start_time"]) for r in queued]
        assert every(r["state"]["type"] == "SCHEDULED" for r in queued)
        assert {(s.hour, s.minute) for s in starts} == {(hour, 0)} and len(starts) >= 1
        assert weekday is None or {s.weekday() for s in starts} == {weekday}

    _phase("schedules queued")
    with open_state(settings) as state:
        promoted, rejected = state.candidate(prompt.candidate_id), state.candidate(rag.candidate_id)
    assert promoted is not None and rejected is not None
    assert (promoted.decision, promoted.decided_by) == ("promoted", "ui-operator")
    assert rejected.decision == "rejected" and "index needs the docs team" in rejected.reason
    status = cli("status", "--json")
    assert status["champions"]["prompt"] == prompt.version
    artifacts: dict[str, dict] = {}
    for artifact in stack.artifacts(run_id):  # newest first: the latest version of each key
        artifacts.setdefault(artifact.get("key") or "", artifact)
    assert {"flywheel-cycle-report", "flywheel-cycle-candidates", "flywheel-cycle-chart"} <= set(artifacts)
    assert prompt.candidate_id in artifacts["flywheel-cycle-report"]["data"]
    assert "promoted" in artifacts["flywheel-cycle-report"]["data"]  # the report republished after the decision
