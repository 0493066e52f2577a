"""all-MiniLM-L6-v2's forward pass as the model's own package describes it (``modules.json``: the
transformer, mean pooling over the attention mask, L2 normalisation), run with ``transformers`` and
``tokenizers`` directly.

sentence-transformers computes exactly this (a test holds the two to the same vectors), but importing
it pulls in scikit-learn and more: ~1.2 s of CPU in every process that embeds (each CLI command,
each flow run, each test process), for nothing these three steps need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256  # the package's sentence_bert_config.json: max_seq_length


class MiniLM:
    """The tokenizer and the transformer of the model in ``path``, loaded from disk (never a network)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer
        from transformers import BertModel

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.model: Any = BertModel.from_pretrained(str(path), local_files_only=True).eval()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit vectors (float32), one row per text; batches of similar length (padding costs compute),
        each vector independent of its batch (the mask keeps padding out of the mean)."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            mask = torch.tensor([e.attention_mask for e in encoded])
            hidden = self.model(
                input_ids=torch.tensor([e.ids for e in encoded]),
                attention_mask=mask,
                token_type_ids=torch.tensor([e.type_ids for e in encoded]),
            ).last_hidden_state.float()  # pooled in float32, also when the model ran in bfloat16
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[rows] = unit.numpy()
        return out
