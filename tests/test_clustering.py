"""The clustering algorithm on constructed unit vectors (no embeddings involved)."""

from __future__ import annotations

import numpy as np

from flywheel.clustering import cluster


def _blobs(rng: np.random.Generator, centres: int, per: int, noise: float, dim: int = 64):
    c = rng.normal(size=(centres, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = np.repeat(c, per, axis=0) + rng.normal(scale=noise, size=(centres * per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(centres), per)


def test_separated_groups_are_recovered_exactly() -> None:
    x, truth = _blobs(np.random.default_rng(0), centres=12, per=40, noise=0.06)
    labels = cluster(x, assign_threshold=0.7, merge_threshold=0.5)
    assert len(set(labels)) == 12
    for k in range(12):
        assert len(set(labels[truth == k])) == 1


def test_merge_pass_joins_what_the_leader_pass_split() -> None:
    x, _ = _blobs(np.random.default_rng(1), centres=3, per=60, noise=0.06)
    strict = cluster(x, assign_threshold=0.95, merge_threshold=1.0)
    merged = cluster(x, assign_threshold=0.95, merge_threshold=0.5)
    assert len(set(strict)) > 3
    assert len(set(merged)) == 3


def test_more_rows_than_one_block_and_empty_input() -> None:
    x, _ = _blobs(np.random.default_rng(2), centres=5, per=1000, noise=0.05)
    labels = cluster(x, assign_threshold=0.7, merge_threshold=0.5)
    assert len(set(labels)) == 5
    assert cluster(np.zeros((0, 8), dtype=np.float32), assign_threshold=0.7, merge_threshold=0.5).shape == (0,)
