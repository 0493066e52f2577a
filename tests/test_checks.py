"""`flywheel init` and `flywheel validate` (issue 15): a newcomer's mistakes are found before a
cycle, each with its file, line and fix; the starter kit itself passes and loads with the real
loaders. Network checks talk only to 127.0.0.1 (the simulator, or a port nobody listens on)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import outside_product
from conftest import write_jsonl
from flywheel.app.setup_commands import register
from flywheel.config import load_settings
from flywheel.evals.golden import load_golden
from flywheel.feedback.ingest import ingest_files
from flywheel.feedback.store import open_store
from flywheel.knowledge.source import load_documents
from flywheel.loop.checks import Check, Problem, Severity, preflight
from flywheel.loop.checks.golden_set import check_golden
from nonempty import every

STARTER_FILES = {
    "flywheel.toml",
    "prompt.txt",
    "golden.jsonl",
    "feedback.jsonl",
    "knowledge/pricing.md",
    "knowledge/uploads.md",
    "knowledge/account.md",
    "knowledge/sharing.md",
}


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """Only the two commands under test."""

    return app


def run(*args: str, expect: int) -> Any:
    """The command's result; with --json, its one JSON document."""
    result = CliRunner().invoke(_app(), list(args))
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout) if "--json" in args else result


def problems_of(*args: str, expect: int) -> list[Problem]:
    doc = run("validate", "--json", *args, expect=expect)
    assert set(doc) == {"ok", "problems"} and doc["ok"] is (expect == 0)
    return [Problem.model_validate(p) for p in doc["problems"]]


def only(problems: list[Problem], check: Check) -> list[Problem]:
    return [p for p in problems if p.check is check]


def test_init_writes_a_kit_that_validates_and_loads(sim_env) -> None:
    out = run("init", "--json", expect=0)
    assert set(out["written"]) == STARTER_FILES and out["overwritten"] == []
    assert "flywheel validate --prompt prompt.txt" in out["next"] and "flywheel cycle" in out["next"]

    # The simulator plays the kit's product: no errors, and the model fits its golden set.
    problems = problems_of("--prompt", "prompt.txt", expect=0)
    assert not [p for p in problems if p.severity is Severity.ERROR], problems
    assert [(p.check, p.message.split(" (")[0]) for p in problems] == [(Check.KNOWLEDGE, "the knowledge source")], (
        problems
    )  # only: `kb sync` not run yet

    # The real loaders take every file.
    settings = load_settings()
    assert len(load_golden(settings.golden)) == 12 and len(load_golden(settings.golden).categories) >= 5
    assert settings.knowledge_source is not None and len(load_documents(settings.knowledge_source)) == 4
    assert settings.prompt_variables == {"product": "Nimbus Drive"}
    settings.ensure_home()
    with open_store(settings.resolved_store_url) as store:
        report = ingest_files(["feedback.jsonl"], store, settings.quarantine_dir, settings.ingest)
    assert (report.accepted, report.rejected) == (8, 0), report


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    run("init", str(kit), expect=0)
    (kit / "prompt.txt").write_text("mine")
    refused = run("init", str(kit), expect=2)
    assert "prompt.txt" in refused.stderr and "flywheel.toml" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and (kit / "prompt.txt").read_text() == "mine"
    forced = run("init", str(kit), "--force", "--json", expect=0)
    assert "prompt.txt" in forced["overwritten"] and (kit / "prompt.txt").read_text() != "mine"


def test_every_golden_mistake_is_named_with_its_line() -> None:
    run("init", expect=0)
    good = Path("golden.jsonl").read_text().splitlines()
    Path("golden.jsonl").write_text(
        "\n".join(
            [
                *good[:3],
                '{"id": "broken", "input": "x", "expected": "y", "category": "factual"',  # 4: not JSON
                '{"id": "s", "input": "x", "expected": "y", "category": "factual", "scorer": "fuzzy"}',  # 5
                '{"id": "m", "input": "x", "category": "factual"}',  # 6: no expected
                '{"id": "reset-password", "input": "x", "expected": "y", "category": "factual"}',  # 7: duplicate id
                '{"id": "r", "input": "x", "expected": "(unclosed", "category": "tone", "scorer": "regex"}',  # 8
                '{"id": "j", "input": "x", "expected": "{not json", "category": "format", "scorer": "json"}',  # 9
                '{"id": "w", "input": "Is it free?", "expected": "no", "category": "Off-Topic"}',  # 10: two warnings
                *good[3:],
            ]
        )
        + "\n"
    )
    found = {(p.line, p.severity): p for p in only(problems_of("--offline", expect=1), Check.GOLDEN)}
    assert every(p.file == "golden.jsonl" and p.fix for p in found.values())
    assert "not valid JSON" in found[4, Severity.ERROR].message
    assert "scorer" in found[5, Severity.ERROR].message and "exact, contains" in found[5, Severity.ERROR].fix
    assert "expected: Field required" in found[6, Severity.ERROR].message
    assert "duplicate id 'reset-password' (first on line 1)" in found[7, Severity.ERROR].message
    assert "not a valid regular expression" in found[8, Severity.ERROR].message
    assert "not JSON" in found[9, Severity.ERROR].message
    warned = [p.message for p in only(problems_of("--offline", expect=1), Check.GOLDEN) if p.line == 10]
    assert any("'no' also matches inside longer words" in m for m in warned)
    assert any("did you mean 'off_topic'" in m for m in warned)
    assert len(found) == 7  # nothing else: the valid lines around them pass


def test_a_golden_set_smaller_than_the_policy_wants_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    run("init", expect=0)
    monkeypatch.setenv("FLYWHEEL_POLICY__MIN_GOLDEN_SIZE", "30")
    (small,) = only(problems_of("--offline", expect=1), Check.GOLDEN)
    assert "12 valid items but [policy] min_golden_size is 30" in small.message and "add 18 items" in small.fix


def test_the_shipped_golden_set_has_no_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(Path(__file__).parent.parent / "evals/golden/default.jsonl"))
    assert check_golden(load_settings()).problems == []


def test_an_undefined_prompt_variable_is_named_with_its_line_and_section() -> None:
    run("init", expect=0)
    Path("mine.txt").write_text("You are the assistant of {{product}}.\nGreet {{user_name}} by name.\n")
    result = run("validate", "--offline", "--prompt", "mine.txt", expect=1)
    assert "[prompt_variables]" in result.stdout and "mine.txt:2" in result.stdout  # printed, not eaten as markup
    (missing,) = [p for p in problems_of("--offline", "--prompt", "mine.txt", expect=1) if p.check is Check.PROMPT]
    assert (missing.file, missing.line, missing.severity) == ("mine.txt", 2, Severity.ERROR)
    assert "{{user_name}}" in missing.message and 'user_name = "..."' in missing.fix


def test_preflight_stops_a_cycle_without_a_prompt_and_a_prompt_set_with_a_missing_variable(settings) -> None:
    (no_prompt,) = preflight(settings, network=False, checks={Check.PROMPT})
    assert no_prompt.severity is Severity.ERROR and "flywheel prompt set" in no_prompt.fix
    (missing,) = preflight(settings, "Hello {{name}}", network=False, prompt_origin="p.txt", checks={Check.PROMPT})
    assert (missing.file, missing.line) == ("p.txt", 1) and "[prompt_variables]" in missing.message


def test_config_mistakes_are_located_in_the_toml() -> None:
    run("init", expect=0)
    text = Path("flywheel.toml").read_text()
    Path("flywheel.toml").write_text(text.replace("min_golden_size = 12", "min_golden_sise = 12"))
    (typo,) = problems_of("--offline", expect=1)
    line = next(n for n, t in enumerate(Path("flywheel.toml").read_text().splitlines(), 1) if "sise" in t)
    assert (typo.check, typo.file, typo.line) == (Check.CONFIG, "flywheel.toml", line)
    assert "policy.min_golden_sise: unknown setting" in typo.message and "`min_golden_size`" in typo.fix
    Path("flywheel.toml").write_text('golden = "unterminated\n')
    (broken,) = problems_of("--offline", expect=1)
    assert (broken.file, broken.line) == ("flywheel.toml", 1) and "not valid TOML" in broken.message


def test_a_missing_knowledge_source_is_an_error() -> None:
    run("init", expect=0)
    text = Path("flywheel.toml").read_text()
    Path("flywheel.toml").write_text(text.replace('knowledge_source = "knowledge"', 'knowledge_source = "docs"'))
    (missing,) = only(problems_of("--offline", "--prompt", "prompt.txt", expect=1), Check.KNOWLEDGE)
    assert (missing.severity, missing.file) == (Severity.ERROR, "docs") and "does not exist" in missing.message


def test_an_unreachable_endpoint_is_a_problem_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    run("init", expect=0)
    (down,) = only(problems_of("--prompt", "prompt.txt", expect=1), Check.ENDPOINT)
    assert down.severity is Severity.ERROR and f"127.0.0.1:{port}" in down.message
    assert "flywheel sim serve" in down.fix and "Traceback" not in down.message
    assert only(problems_of("--prompt", "prompt.txt", expect=1), Check.MODEL_FIT) == []  # not asked when down


def test_a_model_that_answers_about_something_else_is_warned_about(
    sim_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator knows only its cloud-storage product: asked a cooking product's golden set, it
    answers "I'm not sure ... Nimbus Drive" to most items, and nothing scores."""
    golden = write_jsonl(tmp_path / "golden.jsonl", outside_product.golden_items())
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(golden))
    Path("prompt.txt").write_text(outside_product.CHAMPION)
    fit = only(problems_of("--prompt", "prompt.txt", expect=0), Check.MODEL_FIT)
    messages = " | ".join(p.message for p in fit)
    assert every(p.severity is Severity.WARNING for p in fit) and len(fit) == 2, messages
    assert "nearly the same answer to" in messages and "Nimbus Drive" in messages
    assert "seems to answer about something else" in messages


def test_answers_that_score_zero_are_warned_about_even_when_they_differ(
    sim_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("init", expect=0)
    rows = [json.loads(line) for line in Path("golden.jsonl").read_text().splitlines()]
    rows = [{**row, "expected": f"zebra-{n}", "scorer": "contains"} for n, row in enumerate(rows)]
    write_jsonl(Path("golden.jsonl"), rows)
    fit = only(problems_of("--prompt", "prompt.txt", expect=0), Check.MODEL_FIT)
    assert [p.message.split(":")[0] for p in fit] == ["12 golden items scored 0.00 on average"], fit
    assert fit[0].file == "golden.jsonl" and fit[0].line == 1


def test_prompt_set_and_cycle_stop_on_the_checks_before_any_prefect_work(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A usage mistake is one line naming its file and line (exit 2), found before a flow starts:
    it was a failed flow after two retries and 165 lines of tracebacks."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You help {{user_name}} with their recipes.\nBe brief.\n")
    out = cli("prompt", "set", str(prompt), "--json", expect=2)
    assert f"{prompt}:1" in out["error"] and "[prompt_variables]" in out["error"] and "user_name" in out["error"]
    assert "\n" not in out["error"]

    prompt.write_text("You help with recipes. Be brief.\n")
    cli("prompt", "set", str(prompt), "--json")
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"id": "g1", "input": "q?", "expected": "a", "category": "factual"}\n{"id": "g2", "input": \n')
    monkeypatch.setenv("FLYWHEEL_GOLDEN", str(golden))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a flow run would fail on this, not exit 2
    out = cli("cycle", "--json", expect=2)
    assert f"{golden}:2" in out["error"] and "\n" not in out["error"]


def test_a_cycle_on_the_starter_kit_says_why_nothing_came_of_it_and_where_to_look(
    cli, sim_env, prefect_api: str
) -> None:
    """The newcomer's first cycle: no candidate, and the output says why per cluster (instead of an
    empty table), each warning on one line, and an `mlflow ui` command that runs as printed."""
    import os
    import shlex

    cli("init", "--json")
    cli("prompt", "set", "prompt.txt", "--json")
    cli("ingest", "feedback.jsonl", "--json")
    result = cli("cycle")
    assert "improve.min_cluster_consented" in result.stdout and "flywheel kb sync" in result.stdout
    assert "delta [95% CI]" not in result.stdout  # no empty candidates table
    err = result.stderr.splitlines()
    assert any(
        line.startswith("no candidates in cyc-") and line.endswith("what stopped each cluster") for line in err
    ), result.stderr
    (warning,) = [line for line in err if line.startswith("warning: knowledge:")]
    assert warning.endswith("(fix: run `flywheel kb sync`)")  # one line, not wrapped at 80 columns
    (ui,) = [line.split(": ", 1)[1] for line in err if line.startswith("runs, scores and prompt versions")]
    exe, *rest = shlex.split(ui)
    assert os.access(exe, os.X_OK) and rest == [
        "ui",
        "--backend-store-uri",
        load_settings().resolved_tracking_uri,
        "--workers",
        "1",
    ]
