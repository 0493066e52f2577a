"""What a golden score depends on besides the variant, as one typed fingerprint: the evaluation
cache's key.

A cached score is reused only when everything that produced it is the same: the variant (prompt
text, model, index version, pipeline; :attr:`evals.pipeline.Variant.key`) and this fingerprint:
the target and judge endpoints and models, the embedder and knowledge store used for retrieval,
the sampling parameters, the prompt variables, the user pipeline, the golden version and the
scorer setup. Pointing a product at another endpoint therefore never reuses the old endpoint's
scores. Built from Settings in one place (:meth:`EvalFingerprint.of`) and used by every reader
and writer of the cache, in-process and on Dask.

No secret is part of it: API keys are left out (they choose an account, not an answer), and a
URL's user info is dropped and its query string kept only as a hash.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from flywheel.config import Settings
from flywheel.evals.golden import GoldenSet
from flywheel.evals.pipeline import Variant
from flywheel.evals.scorers import JUDGE_SYSTEM


def endpoint_identity(url: str | None) -> str | None:
    """Where requests go, without secrets: scheme, host, port and path (user info dropped, a query
    string only as its hash), normalised so ``http://H/v1/`` and ``http://h/v1`` are one endpoint."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    query = f"?sha256={hashlib.sha256(parts.query.encode()).hexdigest()[:16]}" if parts.query else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}{query}"


class Endpoint(BaseModel):
    """An OpenAI-compatible endpoint and the model asked there."""

    model_config = ConfigDict(frozen=True)

    url: str | None
    model: str

    @classmethod
    def judge(cls, settings: Settings) -> Endpoint:
        """The judge (golden-set judge, screening and calibration all ask it on the one endpoint)."""
        return cls(url=endpoint_identity(settings.openai_base_url), model=settings.judge_model)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class Retrieval(BaseModel):
    """What the built-in pipeline's retrieval depends on besides the index version."""

    model_config = ConfigDict(frozen=True)

    embedder: Endpoint  # url None: the local model
    embedder_backend: str
    precision: str
    store: str | None  # the Chroma server, None: the persistent client under FLYWHEEL_HOME
    collection: str
    k: int


class Sampling(BaseModel):
    model_config = ConfigDict(frozen=True)

    temperature: float
    max_tokens: int | None


class EvalFingerprint(BaseModel):
    """Everything besides the variant that a golden score depends on (see the module doc)."""

    model_config = ConfigDict(frozen=True)

    target_url: str | None  # the target model is the variant's
    judge: Endpoint
    judge_instructions: str  # a hash of the judge's system prompt: changed instructions, new grades
    retrieval: Retrieval
    sampling: Sampling
    prompt_variables: dict[str, str]
    user_pipeline: str | None  # eval.pipeline; None: the built-in pipeline
    golden_version: str
    default_scorer: str

    @classmethod
    def of(cls, settings: Settings, golden: GoldenSet) -> EvalFingerprint:
        emb = settings.embedding
        embedder_url = endpoint_identity(emb.base_url or settings.openai_base_url) if emb.backend == "openai" else None
        return cls(
            target_url=endpoint_identity(settings.openai_base_url),
            judge=Endpoint.judge(settings),
            judge_instructions=hashlib.sha256(JUDGE_SYSTEM.encode()).hexdigest()[:16],
            retrieval=Retrieval(
                embedder=Endpoint(url=embedder_url, model=emb.model),
                embedder_backend=emb.backend,
                precision=emb.precision,
                store=endpoint_identity(settings.knowledge.chroma_url),
                collection=settings.knowledge.collection,
                k=settings.knowledge.retrieval_k,
            ),
            sampling=Sampling(temperature=settings.eval.temperature, max_tokens=settings.eval.max_tokens),
            prompt_variables=dict(settings.prompt_variables),
            user_pipeline=settings.eval.pipeline,
            golden_version=golden.version,
            default_scorer=settings.eval.default_scorer,
        )

    def key(self, variant: Variant) -> str:
        """The cache key of ``variant``'s result. Retrieval settings count only where the answer can
        depend on them: a variant with an index, or a user pipeline (which may retrieve on its own)."""
        retrieves = variant.index_version is not None or self.user_pipeline is not None
        doc = {
            "variant": variant.key,
            "fingerprint": self.model_dump(mode="json", exclude=None if retrieves else {"retrieval"}),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
