"""Near-duplicate detection with MinHash over character 5-grams and LSH banding, in numpy.

Why hand-written: a fine-tune dataset is built from up to hundreds of thousands of examples on
two cores, and a per-shingle Python MinHash (datasketch's ``update``) costs seconds per ten
thousand texts. Here shingles are hashed with a vectorised polynomial rolling hash, a batch of
texts is signed with one matrix operation and ``np.minimum.reduceat``, and candidate pairs come
from LSH bands (16 bands of 8 rows: pairs above ~0.7 Jaccard are found with high probability),
then are confirmed on the estimated Jaccard similarity. Hashes are seeded constants, so the same
texts give the same signatures in every process (Python's ``hash`` is salted per process).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

SHINGLE = 5
PERMUTATIONS = 128
BANDS = 16
ROWS = PERMUTATIONS // BANDS
# One-permutation hashing: each shingle's hash is scrambled once (multiply-shift by an odd 64-bit
# constant); its top 7 bits pick one of 128 bins and the minimum of the low 25 bits per bin is the
# signature. Empty bins (short texts) borrow from the next non-empty bin with an offset per step
# (rotation densification), so two texts are compared bin by bin as with 128 permutations.
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(32)
_BIN_BITS = 7
_VALUE_BITS = 25
_VALUE_MASK = np.uint64((1 << _VALUE_BITS) - 1)
_BASE = np.uint64(1_000_003)
_MASK32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint32(np.iinfo(np.uint32).max)


def normalise(text: str) -> str:
    """Case and whitespace do not make two examples different."""
    return " ".join(text.lower().split())


def shingle_hashes(text: str) -> np.ndarray:
    """Distinct 32-bit hashes of the text's character 5-grams (the whole text if shorter)."""
    data = np.frombuffer(normalise(text).encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    if data.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if data.size < SHINGLE:
        data = np.concatenate([data, np.zeros(SHINGLE - data.size, dtype=np.uint64)])
    n = data.size - SHINGLE + 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(SHINGLE):
        h = (h * _BASE + data[j : j + n]) & _MASK32
    return np.unique(h)


def signatures(texts: Sequence[str], batch: int = 2000) -> np.ndarray:
    """MinHash signatures (one-permutation hashing, densified), one row of ``PERMUTATIONS`` per text."""
    out = np.full((len(texts), PERMUTATIONS), _EMPTY, dtype=np.uint32)
    for start in range(0, len(texts), batch):
        parts = [shingle_hashes(t) for t in texts[start : start + batch]]
        sizes = np.array([p.size for p in parts], dtype=np.int64)
        if not sizes.any():
            continue
        flat = np.concatenate(parts)
        owner = np.repeat(np.arange(len(parts), dtype=np.uint64), sizes)
        mixed = (flat * _MIX) >> _SHIFT  # 32 well-mixed bits
        key = owner * np.uint64(PERMUTATIONS) + (mixed >> np.uint64(_VALUE_BITS))
        packed = np.sort((key << np.uint64(_VALUE_BITS)) | (mixed & _VALUE_MASK))
        keys = packed >> np.uint64(_VALUE_BITS)
        first = np.concatenate([[True], keys[1:] != keys[:-1]])
        block = out[start : start + len(parts)].reshape(-1)
        block[keys[first].astype(np.int64)] = (packed[first] & _VALUE_MASK).astype(np.uint32)
        _densify(out[start : start + len(parts)])
    return out


def _densify(rows: np.ndarray) -> None:
    """Fill empty bins from the next non-empty bin to the right (cyclically), offset by the distance."""
    original = rows.copy()
    has_any = (original != _EMPTY).any(axis=1)
    for step in range(1, PERMUTATIONS):
        empty = (rows == _EMPTY) & has_any[:, None]
        if not empty.any():
            return
        donor = np.roll(original, -step, axis=1)
        fill = empty & (donor != _EMPTY)
        shifted = donor[fill].astype(np.uint64) + np.uint64(step << _VALUE_BITS)
        rows[fill] = np.minimum(shifted, np.uint64(_EMPTY) - np.uint64(1)).astype(np.uint32)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / PERMUTATIONS


def _band_keys(sig: np.ndarray) -> list[bytes]:
    return [bytes([i]) + sig[i * ROWS : (i + 1) * ROWS].tobytes() for i in range(BANDS)]


class NearDuplicateIndex:
    """Signatures of kept texts, bucketed by band; ask whether a new one is too close to any."""

    def __init__(self, threshold: float, max_checks: int = 64) -> None:
        self.threshold = threshold
        self.max_checks = max_checks  # candidates confirmed per query: big template families stay linear
        self._buckets: dict[bytes, list[int]] = {}
        self._sigs: list[np.ndarray] = []

    def match(self, sig: np.ndarray) -> int | None:
        """The index of a kept signature at least ``threshold`` similar, or None."""
        checked: set[int] = set()
        for key in _band_keys(sig):
            for idx in self._buckets.get(key, ()):
                if idx in checked:
                    continue
                checked.add(idx)
                if similarity(sig, self._sigs[idx]) >= self.threshold:
                    return idx
                if len(checked) >= self.max_checks:
                    return None
        return None

    def add(self, sig: np.ndarray) -> int:
        idx = len(self._sigs)
        self._sigs.append(sig)
        for key in _band_keys(sig):
            self._buckets.setdefault(key, []).append(idx)
        return idx

    def extend(self, sigs: Iterable[np.ndarray]) -> None:
        for sig in sigs:
            self.add(sig)
