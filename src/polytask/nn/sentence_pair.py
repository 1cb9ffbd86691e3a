"""Sentence vectors and sentence-pair features.

JMT (Hashimoto et al., EMNLP 2017, Sec. 2.5) builds a sentence vector as the element-wise maximum
of a layer's token states over the sentence, and compares two sentences ``a`` and ``b`` by
``[|a - b|; a * b]`` (relatedness, symmetric) or ``[a - b; a * b]`` (entailment, where the order
of premise and hypothesis matters).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

PairMode = Literal["abs", "signed"]
PAIR_MODES: tuple[str, ...] = ("abs", "signed")


def masked_max(tokens: Tensor, mask: Tensor) -> Tensor:
    """Element-wise max over the valid tokens: ``[B, L, D]``, ``mask [B, L]`` -> ``[B, D]``; a
    row without tokens gets the zero vector (and no gradient)."""
    b, _, d = tokens.shape
    if tokens.shape[1] == 0:
        return tokens.new_zeros(b, d)
    filled = tokens.masked_fill(~mask.unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(1)
    return torch.where(mask.any(1, keepdim=True), filled, torch.zeros_like(filled))


def pair_features(a: Tensor, b: Tensor, mode: PairMode = "abs") -> Tensor:
    """``[|a - b|; a * b]`` (``abs``) or ``[a - b; a * b]`` (``signed``): ``[..., D]`` -> ``[..., 2D]``."""
    if mode not in PAIR_MODES:
        raise ValueError(f"pair features must be one of {', '.join(PAIR_MODES)}; got {mode!r}")
    diff = a - b
    return torch.cat([diff.abs() if mode == "abs" else diff, a * b], dim=-1)
