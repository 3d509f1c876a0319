"""Text as model conditioning: token states of captions, encoded once, and the null (empty) context.

The backbone's cross-attention reads `context` (B, L, 384) with `context_mask` (B, L) bool, True = keep. The
null condition of classifier-free guidance is an all-False mask: attention then sees the image tokens only.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .encoder import load_text_encoder

Tensor = torch.Tensor
CONTEXT_LENGTH = 32  # tokens per caption, [CLS] and [SEP] included; the shapes captions use about 20


def encode_prompts(prompts: Sequence[str], length: int = CONTEXT_LENGTH) -> dict[str, Tensor]:
    """{"context": (B, length, 384), "context_mask": (B, length)} for a list of prompts, padded to `length`."""
    hidden, mask = load_text_encoder().encode(list(prompts), max_length=length, pad_to_max_length=True)
    return {"context": hidden, "context_mask": mask}


def null_context(n: int, length: int = CONTEXT_LENGTH, dim: int = 384) -> dict[str, Tensor]:
    """The unconditional branch: n empty contexts (all positions masked)."""
    return {"context": torch.zeros(n, length, dim), "context_mask": torch.zeros(n, length, dtype=torch.bool)}


class CaptionContext:
    """Token states of a dataset's captions, encoded once per distinct caption; rows(idx) gathers a batch."""

    def __init__(self, captions: Sequence[str], length: int = CONTEXT_LENGTH):
        distinct = sorted(set(captions))
        where = {c: i for i, c in enumerate(distinct)}
        self.index = torch.tensor([where[c] for c in captions], dtype=torch.long)  # (N,) item -> distinct caption
        enc = encode_prompts(distinct, length)
        self.context, self.mask = enc["context"], enc["context_mask"]

    def rows(self, idx: Tensor, drop: Tensor | None = None) -> dict[str, Tensor]:
        """Context of items idx (B,); rows where drop (B,) is True get the null (all-masked) context."""
        j = self.index[idx]
        mask = self.mask[j]
        if drop is not None:
            mask = mask & ~drop[:, None]
        return {"context": self.context[j], "context_mask": mask}
