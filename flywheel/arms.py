"""Which arm a user gets, and what that arm serves: the one answer the live service's
``GET /v1/champion`` gives (and anything else that plays or serves users, e.g. a traffic generator).

- :func:`arm_for` is the split alone: a user id's SHA-256 gives a bucket in 0..9999 (its first eight
  bytes, modulo 10,000), and buckets below ``percent * 100`` are the canary arm. The same id always
  lands in the same bucket, on any machine and in any process (no salt, no Python ``hash``); whole
  percents are the familiar "bucket 0..99 below P" (bucket // 100). A missing user id is production:
  an anonymous request cannot be kept in one arm, so it never sees a canary.
- :func:`assignment` reads the champions and the running canary (:mod:`flywheel.champions`) and
  answers with the arm and the prompt version, index version and model it serves. Kinds the canary
  does not change are production's in both arms, so the arms differ in exactly one change.

The product reports the arm back with each feedback event (``arm``), and ``flywheel watch``
compares the arms' negative-feedback rates.
"""

from __future__ import annotations

import hashlib

from flywheel_client.models import Arm
from pydantic import BaseModel, Field

from flywheel.candidates import ChampionKind
from flywheel.champions import BASE, Canary, champion, running_canary
from flywheel.config import Settings
from flywheel.state import StateStore

BUCKETS = 10_000


def bucket_of(user_id: str) -> int:
    """The user's stable bucket, 0..9999."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8")).digest()[:8], "big") % BUCKETS


def arm_for(user_id: str | None, percent: float) -> Arm:
    """``canary`` for ``percent`` % of user ids (in steps of 0.01 %), else ``production``."""
    if not user_id or percent <= 0:
        return "production"
    return "canary" if bucket_of(user_id) < round(percent * BUCKETS / 100) else "production"


class Assignment(BaseModel):
    """What to serve one user: the arm and the versions of every kind in it."""

    arm: Arm
    prompt_version: str | None = Field(description="Prompt registry version (None before any `prompt set`).")
    index_version: str | None = Field(description="Knowledge index version (None: no retrieval).")
    model_version: str = Field(description="Model registry version, or `base` for the configured base model.")
    model: str = Field(description="The model name to call on the endpoint.")
    canary: Canary | None = Field(None, description="The running canary, whichever arm the user is in.")


def assignment(settings: Settings, state: StateStore, user_id: str | None) -> Assignment:
    """Which arm ``user_id`` gets and what that arm serves, read now from the champions."""
    canary = running_canary(settings, state)
    arm = arm_for(user_id, canary.percent) if canary else "production"
    versions = {kind: champion(settings, state, kind).current() for kind in ChampionKind}
    if arm == "canary" and canary is not None:
        versions[canary.kind] = canary.version
    model_version = versions[ChampionKind.model] or BASE
    return Assignment(
        arm=arm,
        prompt_version=versions[ChampionKind.prompt],
        index_version=versions[ChampionKind.rag],
        model_version=model_version,
        model=model_name(settings, model_version),
        canary=canary,
    )


def model_name(settings: Settings, version: str) -> str:
    """The endpoint's name for a model registry version (``base``: the configured target model)."""
    if version == BASE:
        return settings.target_model
    from flywheel.registry import use_mlflow

    mv = use_mlflow(settings).get_model_version(settings.finetune.registered_model, version)
    return (mv.tags or {}).get("flywheel.provider_model") or settings.target_model
