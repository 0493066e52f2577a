"""Settings: environment variables over an optional TOML file over defaults.

Nothing is read at import time: callers build a :class:`Settings` with :func:`load_settings`
and pass it down, so tests and flows can hold several side by side.

Precedence (highest first): environment variables, the TOML file named by ``FLYWHEEL_CONFIG``
(or ``./flywheel.toml`` when present), the defaults below (the sections' in
:mod:`flywheel.config_sections`). Nested sections are TOML tables
(``[triage]``) or environment variables with a double underscore
(``FLYWHEEL_TRIAGE__PER_USER_CAP=3``). Relative paths in the TOML file are relative to that file.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flywheel.config_sections import (
    ApprovalSettings,
    AskSettings,
    DeadlineSettings,
    EmbeddingSettings,
    EvalSettings,
    EventSettings,
    FinetuneSettings,
    GoldenLifecycleSettings,
    ImportSettings,
    ImproveSettings,
    IngestSettings,
    JudgeSettings,
    KnowledgeSettings,
    PolicySettings,
    RunnerSettings,
    ServeSettings,
    TriageSettings,
    WatchSettings,
)
from flywheel.errors import UsageError

DEFAULT_CONFIG_FILE = "flywheel.toml"
# The golden set shipped with the package: read-only (in a checkout it is tracked, installed it sits in
# site-packages). With no golden file configured, `golden accept` writes HOME_GOLDEN instead.
DEFAULT_GOLDEN = Path("evals/golden/default.jsonl")
BUNDLED_GOLDEN = Path(__file__).resolve().parents[1] / "evals" / "golden" / "default.jsonl"
HOME_GOLDEN = Path("golden") / "golden.jsonl"
# Top-level settings that hold paths: resolved against the TOML file's directory.
_PATH_KEYS = ("home", "golden", "knowledge_source")


# Set while load_settings validates the merged overrides: that build takes no environment source.
_OVERRIDING: ContextVar[bool] = ContextVar("flywheel_settings_overriding", default=False)


class Settings(BaseSettings):
    """Everything Flywheel can be told. Names follow SPEC.md's environment table."""

    model_config = SettingsConfigDict(
        env_prefix="FLYWHEEL_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    home: Path = Field(Path(".flywheel"), description="State directory (FLYWHEEL_HOME).")
    golden: Path = Field(
        DEFAULT_GOLDEN,
        description="Golden set JSONL (FLYWHEEL_GOLDEN). Unset: the bundled set, "
        "read-only; `golden accept` then starts $FLYWHEEL_HOME/golden/golden.jsonl from it.",
    )
    knowledge_source: Path | None = Field(
        None, description="Knowledge source for the RAG index: a directory or a JSONL file (FLYWHEEL_KNOWLEDGE_SOURCE)."
    )
    prompt_name: str = Field("assistant-system", description="Prompt name in the MLflow prompt registry.")
    experiment: str = Field("flywheel", description="MLflow experiment name.")
    store_url: str | None = Field(
        None, description="Feedback store URL; default sqlite:///$FLYWHEEL_HOME/feedback.sqlite."
    )
    state_url: str | None = Field(
        None,
        description="State store URL (cycles, candidates, approvals, pointers, evaluation cache, index "
        "versions); default: store_url when that is PostgreSQL (one database, separate tables), else "
        "sqlite:///$FLYWHEEL_HOME/state.sqlite.",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="MLflow backend; default sqlite:///$FLYWHEEL_HOME/mlflow.db.",
    )
    mlflow_ui_url: str | None = Field(
        None,
        description="Where operators open the MLflow UI (e.g. http://127.0.0.1:5000): Prefect reports link the "
        "cycle's chart and runs there. Unset: reports link the artifact files under FLYWHEEL_HOME.",
    )
    prefect_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PREFECT_API_URL", "prefect_api_url"),
        description="A Prefect server; unset means Prefect's ephemeral local API.",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url"),
        description="OpenAI-compatible endpoint for the product model, drafting, judging and fine-tuning.",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key"),
        description="API key for that endpoint (never logged).",
    )
    target_model: str = Field("gpt-4o-mini", description="The product model (FLYWHEEL_TARGET_MODEL).")
    draft_model: str = Field("gpt-4o", description="The model that drafts prompt revisions (FLYWHEEL_DRAFT_MODEL).")
    judge_model: str = Field("gpt-4o", description="The LLM judge (FLYWHEEL_JUDGE_MODEL).")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds before one LLM request times out.")
    llm_max_retries: int = Field(4, ge=0, description="Retries (with exponential backoff) on 429, 5xx and timeouts.")
    llm_task_retries: int = Field(
        2, ge=0, description="Prefect retries of a whole LLM-calling task (improver, evaluation) after the SDK's own."
    )
    llm_task_retry_delay: float = Field(5.0, ge=0, description="Seconds between those task retries.")
    llm_max_total_seconds: float = Field(
        60.0,
        gt=0,
        description="Give an endpoint up after this many seconds without one usable answer (counted "
        "from when the first failed request was sent, so a request that hangs counts): every further request "
        "fails at once, so a dead endpoint ends a cycle in about this time, never promoting.",
    )

    ingest: IngestSettings = Field(default_factory=IngestSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    improve: ImproveSettings = Field(default_factory=ImproveSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    golden_set: GoldenLifecycleSettings = Field(default_factory=GoldenLifecycleSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    ask: AskSettings = Field(default_factory=AskSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    prompt_variables: dict[str, str] = Field(
        default_factory=dict, description="Values for {{variables}} in the prompt template."
    )

    config_file: Path | None = Field(None, exclude=True, description="The TOML file these settings came from, if any.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must override it. Overrides (a command's
        # option, a flow run's parameters) arrive as init kwargs too, merged over what the environment
        # and the file gave, and must win: that build reads no environment (load_settings).
        return (init_settings,) if _OVERRIDING.get() else (env_settings, init_settings)

    # Derived locations --------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        return self.home / "feedback.sqlite"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def embedding_cache_path(self) -> Path:
        return self.home / "embeddings.sqlite"

    @property
    def state_path(self) -> Path:
        return self.home / "state.sqlite"

    @property
    def golden_is_bundled(self) -> bool:
        """True when no golden file of the team's is configured: the default, or the package's own file."""
        if self.golden == DEFAULT_GOLDEN:
            return True
        return self.golden.is_file() and self.golden.resolve() == BUNDLED_GOLDEN

    @property
    def golden_home_file(self) -> Path:
        """Where accepted items go when the golden set is the bundled one (never into the package)."""
        return self.home / HOME_GOLDEN

    @property
    def golden_file(self) -> Path:
        """The golden set every stage reads: the configured file; with none configured, the copy under
        FLYWHEEL_HOME once `golden accept` has made one, else the bundled default."""
        if self.golden_is_bundled and self.golden_home_file.is_file():
            return self.golden_home_file
        return self.golden

    @property
    def golden_target(self) -> Path:
        """The file `golden accept` writes: the configured one, or the copy under FLYWHEEL_HOME."""
        return self.golden_home_file if self.golden_is_bundled else self.golden

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.store_path}"

    @property
    def resolved_state_url(self) -> str:
        """Where the state store is. On several hosts it must be shared like the feedback store, so a
        PostgreSQL store URL serves both (the state store's tables and revision table are its own);
        a SQLite feedback store leaves the state in its own file under the home, as before."""
        if self.state_url:
            return self.state_url
        if self.store_url and self.store_url.split("://", 1)[0].lower().startswith("postgres"):
            return self.store_url
        return f"sqlite:///{self.state_path}"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home.resolve()}/mlflow.db"

    def ensure_home(self) -> Path:
        """Create the state directory (private to the user: it holds feedback text)."""
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.home


def config_file_path(environ: dict[str, str] | None = None) -> Path | None:
    """The TOML file to read: ``FLYWHEEL_CONFIG``, else ``./flywheel.toml`` when it exists."""
    env = os.environ if environ is None else environ
    named = env.get("FLYWHEEL_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise UsageError(f"FLYWHEEL_CONFIG names {path}, which is not a file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    base = path.resolve().parent
    for key in _PATH_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            data[key] = str(base / value)
    return data


def _describe(exc: ValidationError, origin: str) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{field}: {err['msg']}")
    return f"invalid configuration ({origin}): " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and the optional TOML file; ``overrides`` win over both."""
    path = config_file_path()
    data: dict[str, Any] = _read_toml(path) if path else {}
    origin = f"{path} and the environment" if path else "the environment"
    try:
        settings = Settings(**data, config_file=path)
    except ValidationError as exc:
        raise UsageError(_describe(exc, origin)) from exc
    if overrides:
        merged = _deep_merge(settings.model_dump(exclude={"config_file"}), overrides)
        token = _OVERRIDING.set(True)  # `merged` already holds the environment's values: overrides win
        try:
            settings = Settings.model_validate({**merged, "config_file": path})
        except ValidationError as exc:
            raise UsageError(_describe(exc, "overrides")) from exc
        finally:
            _OVERRIDING.reset(token)
        origin += ", overridden by the command or the flow run"
    _check_together(settings, origin)
    return settings


def _check_together(settings: Settings, origin: str) -> None:
    """Settings that are each valid but contradict each other."""
    share = settings.watch.canary_percent
    if settings.policy.auto_approve == "canary" and not 0 < share < 100:
        raise UsageError(
            f'invalid configuration ({origin}): watch.canary_percent: policy.auto_approve = "canary" '
            f"needs a share of users between 0 and 100 (exclusive), not {share:g}: a canary "
            "would serve nobody (0) or leave no production arm to compare it with (100)"
        )


# Secrets never travel as flow parameters (Prefect stores and shows them); only the environment sets them.
NEVER_A_PARAMETER = frozenset({"openai_api_key"})


def load_settings_for_flow(config: dict[str, Any]) -> Settings:
    """Settings for a flow run: a flow's ``config`` parameter overrides, any secret in it ignored."""
    return load_settings(**{k: v for k, v in config.items() if k not in NEVER_A_PARAMETER})


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
