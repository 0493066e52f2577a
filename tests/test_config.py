"""Settings: defaults, a TOML file, environment precedence, clear errors, no secret shown."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.errors import UsageError


def test_defaults_follow_spec(flywheel_home: Path) -> None:
    s = load_settings()
    assert s.home == flywheel_home
    assert s.golden == Path("evals/golden/default.jsonl")
    assert s.prompt_name == "assistant-system"
    assert s.knowledge_source is None and s.openai_base_url is None
    assert s.resolved_tracking_uri == f"sqlite:///{flywheel_home.resolve()}/mlflow.db"
    assert s.triage.per_user_cap == 5


def test_toml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "conf" / "fw.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        'golden = "g.jsonl"\ntarget_model = "from-toml"\n[triage]\nper_user_cap = 3\ncluster_threshold = 0.8\n'
    )
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(cfg))
    s = load_settings()
    assert s.golden == cfg.parent / "g.jsonl"  # relative to the file
    assert (s.target_model, s.triage.per_user_cap, s.triage.cluster_threshold) == ("from-toml", 3, 0.8)
    monkeypatch.setenv("FLYWHEEL_TARGET_MODEL", "from-env")
    monkeypatch.setenv("FLYWHEEL_TRIAGE__PER_USER_CAP", "7")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    s = load_settings()
    assert (s.target_model, s.triage.per_user_cap, s.triage.cluster_threshold) == ("from-env", 7, 0.8)
    assert s.openai_base_url == "http://127.0.0.1:9/v1"


def test_flywheel_toml_in_the_working_directory_is_read() -> None:
    Path("flywheel.toml").write_text('prompt_name = "support"\n')
    assert load_settings().prompt_name == "support"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[triage]\nper_user_cap = 0\n", "triage.per_user_cap"),
        ("typo_key = 1\n", "typo_key"),
        ("golden = [\n", "TOML"),
        ('[policy]\nauto_approve = "yes"\n', "policy.auto_approve: must be true, false or \"canary\", not 'yes'"),
        (
            '[policy]\nauto_approve = "canary"\n[watch]\ncanary_percent = 0\n',
            "watch.canary_percent: policy.auto_approve",
        ),
    ],
)
def test_bad_config_is_a_usage_error_naming_the_field(text: str, needle: str, cli) -> None:
    Path("flywheel.toml").write_text(text)
    with pytest.raises(UsageError, match=needle):
        load_settings()
    out = cli("config", "--json", expect=2)
    assert needle in out["error"] and "\n" not in out["error"]
    assert "Traceback" not in cli("cycle", expect=2).stderr  # one line, exit 2, on every command


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ('auto_approve = "canary"', None, "canary"),
        ("auto_approve = true", None, True),
        ("auto_approve = false", None, False),
        (None, "canary", "canary"),
        (None, "true", True),
        (None, "False", False),
        ("auto_approve = true", "canary", "canary"),
    ],
)
def test_auto_approve_is_true_false_or_canary(
    toml: str | None, env: str | None, expected: object, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.config_sections import ApprovalMode

    if toml:
        Path("flywheel.toml").write_text(f"[policy]\n{toml}\n")
    if env:
        monkeypatch.setenv("FLYWHEEL_POLICY__AUTO_APPROVE", env)
    policy = load_settings().policy
    assert policy.auto_approve == expected and type(policy.auto_approve) is type(expected)
    assert (
        policy.mode
        is {"canary": ApprovalMode.canary, True: ApprovalMode.production, False: ApprovalMode.person}[expected]
    )  # type: ignore[index]
    assert cli("config", "--json")["policy"]["auto_approve"] == expected


def test_config_command_never_shows_the_api_key(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value-123456")
    out = cli("config", "--json")
    assert out["openai_api_key"] == "***"
    assert "sk-very-secret" not in cli.last.stdout + cli.last.stderr


def test_a_flow_parameter_never_sets_a_secret(flywheel_home) -> None:
    from flywheel.config import load_settings_for_flow

    settings = load_settings_for_flow({"openai_api_key": "sk-from-the-ui", "judge_model": "judge-x"})
    assert settings.judge_model == "judge-x"  # the other overrides apply
    assert settings.openai_api_key is None  # only the environment sets it (cleared for every test)


def test_overrides_win_over_the_environment_and_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A command's option or a flow run's parameter (``load_settings(**overrides)``) beats FLYWHEEL_*
    and flywheel.toml; what it leaves alone still comes from them (pydantic-settings would otherwise
    let the environment beat init arguments, which is how the file arrives)."""
    from flywheel.config import load_settings

    Path("flywheel.toml").write_text('judge_model = "from-file"\n[triage]\nper_user_cap = 3\n')
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("FLYWHEEL_TRIAGE__PER_USER_CAP", "4")
    settings = load_settings(home=str(tmp_path / "option-home"), triage={"per_user_cap": 7})
    assert settings.home == tmp_path / "option-home" and settings.triage.per_user_cap == 7
    assert settings.judge_model == "from-file"
    assert load_settings().home == tmp_path / "env-home" and load_settings().triage.per_user_cap == 4


def test_config_says_where_each_value_came_from(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("flywheel.toml").write_text(
        'target_model = "from-file"\n[triage]\nper_user_cap = 3\n[prompt_variables]\nproduct = "Pantry Pal"\n'
    )
    monkeypatch.setenv("FLYWHEEL_TRIAGE__PER_USER_CAP", "7")
    monkeypatch.setenv("FLYWHEEL_JUDGE_MODEL", "judge-env")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-shown-987654")
    sources = cli("config", "--json")["sources"]
    assert sources["target_model"] == "file flywheel.toml"
    assert sources["triage.per_user_cap"] == "env FLYWHEEL_TRIAGE__PER_USER_CAP"  # the environment wins
    assert sources["judge_model"] == "env FLYWHEEL_JUDGE_MODEL"
    assert sources["openai_api_key"] == "env OPENAI_API_KEY"
    assert sources["prompt_variables"] == "file flywheel.toml"
    assert sources["triage.cluster_threshold"] == "default"
    table = cli("config").stdout
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") >= 3}
    assert "env FLYWHEEL_TRIAGE__PER_USER_CAP" in rows["triage.per_user_cap"] and " 7 " in rows["triage.per_user_cap"]
    assert "triage.cluster_threshold" not in rows  # defaults only with --all
    assert "sk-never-shown" not in table
    assert "triage.cluster_threshold" in cli("config", "--all").stdout


STORE_URL = "postgresql://flywheel:hunter2-pw@db.internal:5432/feedback"


def test_config_masks_the_store_password_in_text_and_json(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_STORE_URL", STORE_URL)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://ml:tracking-pw@db.internal/mlflow")
    monkeypatch.setenv("FLYWHEEL_KNOWLEDGE__CHROMA_URL", "http://chroma:chroma-pw@chroma.internal:8000")
    doc = cli("config", "--json")
    assert doc["store_url"] == doc["resolved"]["store_url"] == "postgresql://flywheel:***@db.internal:5432/feedback"
    assert doc["resolved"]["mlflow_tracking_uri"] == "postgresql://ml:***@db.internal/mlflow"
    assert doc["knowledge"]["chroma_url"] == "http://chroma:***@chroma.internal:8000"
    for out in (cli.last.stdout, cli("config").stdout, cli("config", "--all").stdout):
        assert "hunter2" not in out and "tracking-pw" not in out and "chroma-pw" not in out
        assert "flywheel:***@db.internal" in out


def test_an_error_quoting_a_store_url_shows_no_password() -> None:
    import typer
    from typer.testing import CliRunner

    from flywheel.app.output import handles_errors
    from flywheel.errors import FlywheelError

    @handles_errors
    def fails(as_json: bool = False) -> None:
        raise FlywheelError(f"cannot reach {STORE_URL} (password=hunter2-pw)")

    command = typer.Typer()
    command.command()(fails)
    for args in ([], ["--as-json"]):
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 1
        assert "hunter2" not in result.stdout + result.stderr
        assert "postgresql://flywheel:***@db.internal:5432/feedback" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql+psycopg://u:a:b@c@h:5432/db?sslmode=require",
            "postgresql+psycopg://u:***@h:5432/db?sslmode=require",
        ),
        ("postgresql://u@h/db", "postgresql://u@h/db"),  # no password: nothing to hide
        ("sqlite:////tmp/feedback.sqlite", "sqlite:////tmp/feedback.sqlite"),
        ("host=h dbname=x password=s3cret user=u", "host=h dbname=x password=*** user=u"),
        ("https://api.example.com/v1?api_key=abc123&x=1", "https://api.example.com/v1?api_key=***&x=1"),
        (
            "see http://127.0.0.1:8700/docs and postgresql://a:b@h/d.",
            "see http://127.0.0.1:8700/docs and postgresql://a:***@h/d.",
        ),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    from flywheel.masking import mask_secrets

    assert mask_secrets(text) == masked


@pytest.fixture
def unmasked_logging() -> Iterator[None]:
    """The process as a library user has it: the standard record factory (restored afterwards)."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(previous)


def _start_cli(cli, settings) -> None:
    cli("config")


def _start_service(cli, settings) -> None:
    from flywheel.app.serve.main import create_app

    create_app(settings, warm_up=False).state.service.close()


def _start_flows(cli, settings) -> None:
    import flywheel.flows

    importlib.reload(flywheel.flows)  # what a worker's flow run executes when it imports its entrypoint


@pytest.mark.parametrize("start", [_start_cli, _start_service, _start_flows], ids=["cli", "serve", "flows"])
def test_a_library_log_line_quoting_a_password_is_masked_once_a_face_starts(
    start, cli, settings, caplog, unmasked_logging
) -> None:
    """Flywheel masks what it writes itself; SQLAlchemy, MLflow, httpx or Prefect may log a URL too."""
    library = logging.getLogger("sqlalchemy.pool")
    library.warning("connecting to %s", STORE_URL)
    assert "hunter2" in caplog.text  # importing flywheel alone changes no global logging
    caplog.clear()

    start(cli, settings)
    library.warning("connecting to %s", STORE_URL)
    try:
        raise RuntimeError(f"cannot reach {STORE_URL}")
    except RuntimeError:
        library.exception("gave up")
    assert "hunter2" not in caplog.text, caplog.text
    assert caplog.text.count("postgresql://flywheel:***@db.internal:5432/feedback") == 2  # the message, the traceback
    library.warning("pool size %d", 5)
    assert caplog.records[-1].args == (5,)  # a clean record keeps its arguments for structured handlers
