"""The newcomer's path end to end, as docs/newcomer.md tells it: ``init``, edit the kit (with the
mistakes people make), ``validate`` finds each one at its line, ``prompt set`` refuses the broken
prompt in one line, and a cycle that produces nothing says, per cluster, why."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli
from nonempty import every


def _seed_mistakes() -> None:
    """A typo in the config, an undefined prompt variable, and three golden-set mistakes."""
    toml = Path("flywheel.toml").read_text()
    assert "\nmin_cluster_consented = 3" in toml
    Path("flywheel.toml").write_text(toml.replace("\nmin_cluster_consented = 3", "\nmin_cluster_consentd = 3"))
    Path("prompt.txt").write_text(Path("prompt.txt").read_text() + "Greet {{user_name}} by name.\n")
    lines = Path("golden.jsonl").read_text().splitlines()
    lines[3] = '{"id": "broken", "input": "How do I share?"'  # line 4: not JSON
    lines[5] = '{"id": "free-plan", "input": "Is there a free plan?", "expected": "no", "category": "factual"}'
    lines[6] = '{"id": "no-category", "input": "Hi", "expected": "Hello"}'  # line 7
    Path("golden.jsonl").write_text("\n".join(lines) + "\n")


def _line_of(path: str, needle: str) -> int:
    return next(n for n, line in enumerate(Path(path).read_text().splitlines(), 1) if needle in line)


def _problems(cli: Cli) -> list[tuple[str, str, str | None, int | None]]:
    out = cli("validate", "--prompt", "prompt.txt", "--offline", "--json", expect=1)
    assert out["ok"] is False
    return [(p["check"], p["severity"], p["file"], p["line"]) for p in out["problems"]]


def test_a_newcomer_sees_every_mistake_before_a_cycle_and_an_empty_cycle_explained(
    cli: Cli, sim_env, prefect_api: str
) -> None:
    cli("init", "--json")
    _seed_mistakes()

    # The config is read first: its typo is the one problem until fixed, at its line, with the right name.
    typo_line = _line_of("flywheel.toml", "min_cluster_consentd")
    out = cli("validate", "--prompt", "prompt.txt", "--offline", "--json", expect=1)
    (problem,) = out["problems"]
    assert (problem["check"], problem["file"], problem["line"]) == ("config", "flywheel.toml", typo_line)
    assert "min_cluster_consented" in problem["fix"]
    Path("flywheel.toml").write_text(Path("flywheel.toml").read_text().replace("consentd", "consented"))

    # Then each of the others, at its line; the too-short `contains` is a warning, the rest errors.
    problems = _problems(cli)
    assert ("prompt", "error", "prompt.txt", _line_of("prompt.txt", "{{user_name}}")) in problems
    assert ("golden", "error", "golden.jsonl", 4) in problems
    assert ("golden", "warning", "golden.jsonl", 6) in problems
    assert ("golden", "error", "golden.jsonl", 7) in problems
    assert ("golden", "error", "golden.jsonl", None) in problems  # 10 valid items, the policy wants 12

    # prompt set runs the same checks: one line naming the file and line, exit 2, nothing registered.
    result = cli("prompt", "set", "prompt.txt", expect=2)
    assert "prompt.txt:" in result.stderr and "{{user_name}}" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert cli("prompt", "show", "--json", expect=2)

    # Fixed as the messages say, validation passes (the index not synced yet is only a warning).
    Path("flywheel.toml").write_text(
        Path("flywheel.toml").read_text().replace("[prompt_variables]", '[prompt_variables]\nuser_name = "there"')
    )
    lines = Path("golden.jsonl").read_text().splitlines()
    lines[3] = '{"id": "share", "input": "How can I share a file?", "expected": "share", "category": "factual"}'
    lines[5] = lines[5].replace('"category": "factual"', '"category": "factual", "scorer": "word"')
    lines[6] = '{"id": "greeting", "input": "Hi", "expected": "help", "category": "tone"}'
    Path("golden.jsonl").write_text("\n".join(lines) + "\n")
    out = cli("validate", "--prompt", "prompt.txt", "--offline", "--json")
    assert out["ok"] is True and {p["severity"] for p in out["problems"]} <= {"warning"}, out["problems"]

    cli("prompt", "set", "prompt.txt", "--json")
    assert cli("ingest", "feedback.jsonl", "--json")["accepted"] == 8

    # The kit's eight events are too few to draft from: no candidate, and every cluster says why.
    doc = cli("cycle", "--json")
    assert doc["candidates"] == []
    outcomes = {o["cluster_id"]: o for o in doc["outcomes"]}
    assert len(outcomes) >= 3
    assert every(o["why"] for o in outcomes.values()), outcomes
    skipped = [o for o in outcomes.values() if o["status"] == "skipped"]
    assert skipped and any("improve.min_cluster_consented" in o["why"] for o in skipped)
    rag = [o for o in outcomes.values() if o["route"] == "rag"]
    assert every(o["status"] in ("skipped", "no_candidate") for o in rag)
    print(json.dumps([(o["cluster_id"], o["status"], o["why"]) for o in outcomes.values()], indent=1))
