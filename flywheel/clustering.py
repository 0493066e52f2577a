"""Grouping texts that mean the same thing, from their embeddings.

Two passes, so that it scales to 100k+ distinct texts without an n x n matrix:

1. **Leader pass** (single scan, blocks of rows): each vector joins the most similar existing
   centroid when the cosine similarity reaches ``assign_threshold``, otherwise starts a new one.
   Vectors are visited heaviest first, so frequent phrasings seed the clusters.
2. **Merge pass**: average-linkage agglomerative clustering of the centroids (scipy), merging
   those closer than ``merge_threshold``; this joins paraphrases the leader pass split.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

BLOCK = 2048
MAX_MERGE_CENTROIDS = 6000  # average linkage is O(k^2) memory; beyond this the leader pass stands


def leader_pass(vectors: np.ndarray, weights: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels, centroid_sums)``; ``vectors`` must be L2-normalised rows."""
    n, dim = vectors.shape
    order = np.argsort(-weights, kind="stable")
    labels = np.full(n, -1, dtype=np.int64)
    sums = np.zeros((max(16, n // 8 + 1), dim), dtype=np.float64)
    k = 0
    for start in range(0, n, BLOCK):
        idx = order[start : start + BLOCK]
        block = vectors[idx]
        if k:
            centroids = sums[:k] / np.linalg.norm(sums[:k], axis=1, keepdims=True)
            sims = block @ centroids.T.astype(np.float32)
            best = sims.argmax(axis=1)
            ok = sims[np.arange(len(idx)), best] >= threshold
        else:
            best = np.zeros(len(idx), dtype=np.int64)
            ok = np.zeros(len(idx), dtype=bool)
        labels[idx[ok]] = best[ok]
        np.add.at(sums, best[ok], block[ok] * weights[idx[ok], None])
        # Rows that matched nothing: a sequential leader scan among themselves.
        new_first = k
        for row in np.flatnonzero(~ok):
            v = block[row]
            if k > new_first:
                fresh = sums[new_first:k]
                s = (fresh @ v) / np.linalg.norm(fresh, axis=1)
                j = int(s.argmax())
                if s[j] >= threshold:
                    labels[idx[row]] = new_first + j
                    sums[new_first + j] += v * weights[idx[row]]
                    continue
            if k == len(sums):
                sums = np.vstack([sums, np.zeros_like(sums)])
            sums[k] = v * weights[idx[row]]
            labels[idx[row]] = k
            k += 1
    return labels, sums[:k]


def merge_centroids(centroid_sums: np.ndarray, threshold: float) -> np.ndarray:
    """Map each centroid to a merged group (average linkage on cosine distance)."""
    k = len(centroid_sums)
    if k <= 1 or k > MAX_MERGE_CENTROIDS:
        return np.arange(k)
    unit = centroid_sums / np.linalg.norm(centroid_sums, axis=1, keepdims=True)
    tree = linkage(unit, method="average", metric="cosine")
    groups: np.ndarray = fcluster(tree, t=1.0 - threshold, criterion="distance") - 1
    return groups


def cluster(
    vectors: np.ndarray, weights: np.ndarray | None = None, *, assign_threshold: float, merge_threshold: float
) -> np.ndarray:
    """Cluster labels (0..m-1) for L2-normalised ``vectors``; ``weights`` are occurrence counts."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    w = np.ones(n, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    labels, sums = leader_pass(np.asarray(vectors, dtype=np.float32), w, assign_threshold)
    groups = merge_centroids(sums, merge_threshold)
    _, dense = np.unique(groups[labels], return_inverse=True)
    return dense.astype(np.int64)
