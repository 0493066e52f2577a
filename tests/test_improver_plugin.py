"""A fourth kind of fix installed as a plugin (issue 28): the package ``tests/plugins/fewshot_improver``
and its distribution metadata (``fewshot_improver-0.1.0.dist-info``, entry point
``flywheel.improvers: fewshot``) go on ``sys.path``, as ``pip install`` would leave them; nothing
else changes. The improver then goes through a real cycle on the simulator, the gate, approval as a
canary, the watch (which promotes it on live traffic) and a rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import seed_world_vectors, write_jsonl
from flywheel import plugins
from flywheel.config import load_settings
from flywheel.registry import CANARY, PRODUCTION, prompt_at, use_mlflow
from flywheel.state import open_state
from tests.watch_helpers import ingest, rated_events

PLUGINS = Path(__file__).parent / "plugins"
CORRECTION = "I apologize for the frustration. Sign out of the desktop app, sign back in, and sync will restart."


@pytest.fixture
def fewshot_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugin's directory on sys.path: importlib.metadata finds its dist-info and entry point."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    plugins.refresh()
    yield
    monkeypatch.undo()
    plugins.refresh()


def test_the_registry_finds_the_built_ins_and_an_installed_plugin_by_entry_point(fewshot_installed: None) -> None:
    from flywheel.improvers.registry import improver, improvers

    assert [i.name for i in improvers()] == ["prompt", "rag", "finetune", "fewshot"]
    assert improver("fewshot").slot == "prompt" and improver("finetune").slot == "model"
    from importlib.metadata import distribution

    assert distribution("fewshot-improver").entry_points.select(group=plugins.GROUP)["fewshot"].value == (
        "fewshot_improver:IMPROVER"
    )


def test_an_unknown_kind_is_refused_by_name() -> None:
    from flywheel.candidates import Candidate
    from flywheel.errors import UsageError

    with pytest.raises(UsageError, match="no improver provides the kind 'fewshot'"):
        Candidate(
            candidate_id="x", cycle_id="c", kind="fewshot", cluster_ids=[], payload={"template": "t", "shots": []}
        )


KIND_SPECIFIC = {"CandidateKind", "PromptPayload", "RagPayload", "FinetunePayload"}
# (improvers.screening_step, the judge of "is the complaint resolved", is shared: diagnosis uses it too)
BUILT_IN_MODULES = ("prompt", "rag", "finetune", "dataset", "merge", "screening_notes")


def test_the_cycle_and_the_faces_reach_improvers_only_through_the_registry() -> None:
    """loop/, flows/ and app/ import no built-in improver's module and no kind's payload class: a
    fourth kind needs no change there (slots, what production serves, are the champions')."""
    import ast

    root = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted(p for layer in ("loop", "flows", "app") for p in (root / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {a.name for a in node.names}
                if node.module.startswith("flywheel.improvers.") and node.module.split(".")[2].startswith(
                    BUILT_IN_MODULES
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {node.module}")
                if names & KIND_SPECIFIC:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {', '.join(sorted(names & KIND_SPECIFIC))}")
    assert not found, "\n".join(found)
    assert len(list((root / "loop").rglob("*.py"))) > 20  # the walk saw the layers


def _golden(world: Path, tmp_path: Path) -> Path:
    """Every tone item of the world (the few-shot fix) and enough others for the policy's minimum."""
    rows = [json.loads(line) for line in (world / "golden.jsonl").read_text().splitlines()]
    tone = [r for r in rows if r["category"] == "tone"]
    return write_jsonl(tmp_path / "golden.jsonl", tone + [r for r in rows if r["category"] != "tone"][: 40 - len(tone)])


def _complaints(world: Path) -> list[dict]:
    """Upset users' sync questions answered curtly, each corrected with an apology."""
    rows = [
        json.loads(line)
        for line in (world / "feedback.jsonl").read_text().splitlines()
        if '"reason": "tone"' in line and '"consent": true' in line
    ]
    return [{**r, "signal": "correction", "correction": CORRECTION, "comment": None} for r in rows[:30]]


@pytest.mark.slow
def test_a_plugin_improver_goes_through_cycle_gate_canary_watch_and_rollback(
    cli,
    fewshot_installed: None,
    world: Path,
    world_vectors: Path,
    sim_env,
    prefect_api: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(_golden(world, tmp_path)))
    monkeypatch.setenv("FLYWHEEL_LLM_TASK_RETRIES", "0")
    # The built-in prompt improver would draft for the same cluster and, screened per cluster, win the
    # prompt slot: it needs more consented events than there are, so the plugin's candidate is alone.
    monkeypatch.setenv("FLYWHEEL_IMPROVE__MIN_CLUSTER_CONSENTED", "1000")
    monkeypatch.setenv("FLYWHEEL_WATCH__AUTO_PROMOTE", "true")
    settings = load_settings()
    seed_world_vectors(world_vectors, settings)
    start = cli("prompt", "set", str(world / "prompt.txt"), "--json")["version"]
    cli("ingest", str(write_jsonl(tmp_path / "fb.jsonl", _complaints(world))), "--json")

    # cycle and gate: the plugin proposes, the golden set shows the fix, the gate lets it wait.
    out = cli("cycle", "--json")
    (cand,) = [c for c in out["candidates"] if c["kind"] == "fewshot"]
    assert cand["decision"] == "pending_approval", cand["reason"]
    assert cand["delta"] > 0 and cand["per_category"]["tone"] > out["champion_score"]
    tags = use_mlflow(settings).get_run(cand["mlflow_run_id"]).data.tags
    assert tags["flywheel.kind"] == "fewshot"
    with open_state(settings) as state:
        stored = state.candidate(cand["candidate_id"])
    assert type(stored.payload).__name__ == "FewShotPayload" and stored.payload.shots
    assert prompt_at(settings, PRODUCTION).version == start
    assert [p["candidate_id"] for p in cli("pending", "--json")["pending"]] == [cand["candidate_id"]]

    # approve as a canary: the prompt slot's canary alias serves it to 20% of users.
    approved = cli("approve", cand["candidate_id"], "--canary", "20", "--json")
    assert approved["decision"] == "canary"
    canary_version = prompt_at(settings, CANARY).version
    assert canary_version == stored.version and CORRECTION in prompt_at(settings, CANARY).template
    champion = cli("status", "--json")["canary"]
    assert (champion["kind"], champion["version"], champion["candidate_id"]) == (
        "prompt",
        canary_version,
        cand["candidate_id"],
    )

    # watch: on live traffic the canary's users complain less; the watch promotes it.
    ingest(
        settings,
        rated_events(1, 2500, 0.30, prefix="p", arm="production", prompt_version=start)
        + rated_events(2, 2500, 0.15, prefix="c", arm="canary", prompt_version=canary_version),
    )
    (row,) = cli("watch", "--json")["watches"]
    assert (row["kind"], row["verdict"], row["action"]) == ("prompt", "better", "promoted")
    assert prompt_at(settings, PRODUCTION).version == canary_version and prompt_at(settings, CANARY) is None
    with open_state(settings) as state:
        assert state.candidate(cand["candidate_id"]).decision == "promoted"

    # rollback: production returns to the prompt it replaced, and the fix is recorded as undone.
    back = cli("rollback", "prompt", "--json")
    assert (back["from_version"], back["to_version"]) == (canary_version, start)
    assert prompt_at(settings, PRODUCTION).version == start
    with open_state(settings) as state:
        undone = state.candidate(cand["candidate_id"])
        history = [a["outcome"] for a in state.cluster_history(cand["cluster_ids"][0])]
    assert undone.payload.rolled_back_at is not None and history[-1] == "rolled_back"


def test_a_plugin_that_does_not_load_is_left_out_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A third party's broken improver must not stop every command: the others still work."""
    info = tmp_path / "broken_improver-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-improver\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{plugins.GROUP}]\nbroken = broken_improver:IMPROVER\nwrong = json:dumps\n"
    )
    (tmp_path / "broken_improver.py").write_text("raise RuntimeError('needs a GPU')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh()
    try:
        with caplog.at_level("WARNING", logger="flywheel.plugins"):
            assert plugins.names() == ["prompt", "rag", "finetune"]
        said = [r.getMessage() for r in caplog.records]
        assert any(
            "broken = broken_improver:IMPROVER left out: it does not load (RuntimeError: needs a GPU)" in m
            for m in said
        ), said
        assert any("wrong = json:dumps left out: it is not an improver" in m for m in said), said
    finally:
        monkeypatch.undo()
        plugins.refresh()
