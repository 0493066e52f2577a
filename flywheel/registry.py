"""The MLflow registries: prompt versions and their aliases, fine-tuned model versions and theirs.

Only access lives here; what production serves, and how it moves with a record of who and when,
is ``flywheel.champions``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.config import Settings
from flywheel.errors import UsageError
from flywheel.mlflow_db import seed_tracking_db
from flywheel.sqlite_util import wal_for_foreign_engine

PRODUCTION = "production"
CANARY = "canary"  # the alias of a candidate served to a share of users (the watch issue moves it)


_pointed: tuple[str, str, str] | None = None  # (tracking URI, experiment name, its id) this process set last


def use_mlflow(settings: Settings) -> Any:
    """Point MLflow at Flywheel's tracking store and experiment; returns an MlflowClient.

    Called before every registry and tracking access: once this process has pointed MLflow at the
    same store and experiment (and nothing pointed it elsewhere since), only the client is made.
    The full set-up reads the experiment twice by name; it was two thirds of every champion read
    of the service, which repeats one every few seconds."""
    global _pointed
    os.environ.setdefault("MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION", "true")
    import mlflow

    uri = settings.resolved_tracking_uri
    if (
        _pointed is not None
        and _pointed[:2] == (uri, settings.experiment)
        and os.environ.get("MLFLOW_EXPERIMENT_ID") == _pointed[2]
        and mlflow.get_tracking_uri() == uri
        and mlflow.get_registry_uri() == uri
    ):
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # table-creation chatter on every new store
    settings.ensure_home()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        seed_tracking_db(db, settings.home.resolve() / "mlartifacts")
        wal_for_foreign_engine(db)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name(settings.experiment) is None:
        # With the default SQLite store, artifacts belong under FLYWHEEL_HOME too (MLflow would put
        # them in ./mlruns of whatever directory the first run happened in). A server decides itself.
        local = settings.mlflow_tracking_uri is None or uri.startswith("sqlite:")
        location = (settings.home.resolve() / "mlartifacts").as_uri() if local else None
        try:
            client.create_experiment(settings.experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel task
            pass
    experiment = mlflow.set_experiment(settings.experiment)
    _pointed = (uri, settings.experiment, experiment.experiment_id)
    return client


@dataclass(frozen=True)
class PromptRef:
    name: str
    version: str
    template: str
    aliases: tuple[str, ...] = ()


def _ref(pv: Any) -> PromptRef:
    return PromptRef(pv.name, str(pv.version), pv.template, tuple(getattr(pv, "aliases", None) or ()))


def production_prompt(settings: Settings) -> PromptRef | None:
    return prompt_at(settings, PRODUCTION)


def prompt_at(settings: Settings, alias: str) -> PromptRef | None:
    """The prompt version ``alias`` points at; None when the prompt or the alias does not exist."""
    import mlflow

    use_mlflow(settings)
    pv = mlflow.genai.load_prompt(f"prompts:/{settings.prompt_name}@{alias}", allow_missing=True, cache_ttl_seconds=0)
    return _ref(pv) if pv is not None else None


def require_production_prompt(settings: Settings) -> PromptRef:
    ref = production_prompt(settings)
    if ref is None:
        raise UsageError(
            f"no production prompt named {settings.prompt_name!r} in the MLflow registry at "
            f"{settings.resolved_tracking_uri}; bring yours in with `flywheel prompt set FILE`"
        )
    return ref


def prompt_version(settings: Settings, version: str) -> PromptRef:
    import mlflow

    use_mlflow(settings)
    try:
        return _ref(mlflow.genai.load_prompt(settings.prompt_name, version=int(version), cache_ttl_seconds=0))
    except Exception as exc:  # mlflow raises its own exception types for a missing version
        raise UsageError(f"prompt {settings.prompt_name!r} has no version {version}: {exc}") from exc


def register_prompt(settings: Settings, template: str, message: str, tags: dict[str, str]) -> PromptRef:
    """A new version of the prompt, ``tags`` (its provenance) on that version only.

    MLflow's ``register_prompt(tags=...)`` also writes its tags onto the prompt itself, creating it
    with them and overwriting them with each later version's: the prompt page's header then showed
    the latest draft's cycle and clusters as if they described the prompt. So the version is
    registered without tags (MLflow still links the prompt to the experiment) and tagged after, in
    the order given: a caller that finds versions again by a tag should give that tag last, so a
    crash in between leaves an untagged version rather than one found with half its provenance."""
    import mlflow

    use_mlflow(settings)
    pv = mlflow.genai.register_prompt(name=settings.prompt_name, template=template, commit_message=message)
    for key, value in tags.items():
        mlflow.genai.set_prompt_version_tag(settings.prompt_name, pv.version, key, str(value))
    return _ref(pv)


def move_prompt_alias(settings: Settings, version: str) -> None:
    import mlflow

    use_mlflow(settings)
    mlflow.genai.set_prompt_alias(settings.prompt_name, alias=PRODUCTION, version=int(version))


# The model registry: fine-tuned models are versions of one registered model; alias `production`
# is the champion. No alias means the base model (``target_model``) is in production.
@dataclass(frozen=True)
class ModelRef:
    version: str | None  # registry version; None for the base model
    provider_model: str  # the name the endpoint serves it under


def production_model(settings: Settings) -> ModelRef:
    """The model in production: the registry alias, or the configured base model."""
    from mlflow.exceptions import MlflowException

    client = use_mlflow(settings)
    try:
        mv = client.get_model_version_by_alias(settings.finetune.registered_model, PRODUCTION)
    except MlflowException:
        return ModelRef(None, settings.target_model)
    return ModelRef(str(mv.version), (mv.tags or {}).get("flywheel.provider_model") or settings.target_model)


def model_at(settings: Settings, alias: str) -> ModelRef | None:
    """The fine-tuned model version ``alias`` points at; None when there is none."""
    from mlflow.exceptions import MlflowException

    client = use_mlflow(settings)
    try:
        mv = client.get_model_version_by_alias(settings.finetune.registered_model, alias)
    except MlflowException:
        return None
    return ModelRef(str(mv.version), (mv.tags or {}).get("flywheel.provider_model") or settings.target_model)


def register_model_version(settings: Settings, provider_model: str, run_id: str, tags: dict[str, str]) -> str:
    """Register a fine-tuned model once (found again by its job id when a flow is resumed)."""
    from mlflow.exceptions import MlflowException

    client = use_mlflow(settings)
    name = settings.finetune.registered_model
    try:
        client.create_registered_model(
            name, description="Fine-tuned models from Flywheel; alias `production` is the model the product uses."
        )
    except MlflowException:
        pass  # exists
    job = tags.get("flywheel.job_id")
    for mv in client.search_model_versions(f"name = '{name}'"):
        if job and (mv.tags or {}).get("flywheel.job_id") == job:
            return str(mv.version)
    mv = client.create_model_version(
        name,
        source=f"runs:/{run_id}/model",
        run_id=run_id,
        tags={"flywheel.provider_model": provider_model, **tags},
        description=f"{provider_model} (fine-tune job {job})",
    )
    return str(mv.version)


def move_model_alias(settings: Settings, version: str | None) -> None:
    """Point `production` at a model version; None restores the base model."""
    from mlflow.exceptions import MlflowException

    client = use_mlflow(settings)
    name = settings.finetune.registered_model
    if version is None:
        try:
            client.delete_registered_model_alias(name, PRODUCTION)
        except MlflowException:
            pass
        return
    client.set_registered_model_alias(name, PRODUCTION, version)


def point_alias(settings: Settings, registry: str, alias: str, version: str | None) -> None:
    """Point ``alias`` of the prompt (``registry="prompt"``) or the registered model (``"model"``) at
    ``version``; None deletes the alias (a canary that ended). Deleting a missing alias is no error,
    so ending a canary twice (a rerun after a crash) is harmless."""
    from mlflow.exceptions import MlflowException

    client = use_mlflow(settings)
    if registry == "prompt":
        import mlflow

        if version is not None:
            mlflow.genai.set_prompt_alias(settings.prompt_name, alias=alias, version=int(version))
            return
        try:
            mlflow.genai.delete_prompt_alias(settings.prompt_name, alias=alias)
        except MlflowException:
            pass
        return
    name = settings.finetune.registered_model
    if version is not None:
        client.set_registered_model_alias(name, alias, version)
        return
    try:
        client.delete_registered_model_alias(name, alias)
    except MlflowException:
        pass
