"""Dependency parsing by head selection (JMT: Hashimoto et al., EMNLP 2017, Sec. 2.4; after Zhang
et al., 2017).

Every token ``t`` scores every candidate head ``j`` with a bilinear form
``m(t, j) = h_t^T W_d h_j``; candidate 0 is the root, represented by a learned vector ``r``. A
softmax over the candidates gives ``p(j | h_t)``; the arg-max is the predicted head. Relation
labels decompose additively over the dependent and the head, ``a_t + c_j`` with ``a_t = U h_t + b``
and ``c_j = V h_j`` (``c_0 = V r``), so one ``[L, L + 1 + 3R]`` output per sentence holds the head
scores and both halves of every relation score (the ``dependency`` task kind's layout):

* ``[:L+1]`` head scores over ``j = 0`` (root), ``1..L``; a padding candidate and the token itself
  hold a large negative score;
* ``[L+1 : L+1+R]`` ``a_t`` (the dependent part of token ``t``'s relation logits);
* ``[L+1+R : L+1+2R]`` ``c_t`` (the head part of token ``t`` when it is someone's head);
* ``[L+1+2R :]`` ``c_0`` (the head part of the root).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def masked_value(dtype: torch.dtype) -> float:
    """The score a forbidden candidate gets: ``-1e9`` (half the lowest value in a narrower
    ``dtype`` such as float16), so its probability is 0 while a loss that reads it (a gold head
    the model may not pick) stays finite."""
    return max(torch.finfo(dtype).min / 2, -1e9)


def candidate_mask(mask: Tensor) -> Tensor:
    """``mask [B, L]`` (valid tokens) -> ``[B, L, L + 1]``: may token ``t`` take candidate ``j``
    as its head? The root (``j = 0``) always; a token ``j`` when it is valid and not ``t`` itself."""
    b, length = mask.shape
    cand = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # [B, L+1]
    positions = torch.arange(length, device=mask.device)
    itself = (positions.unsqueeze(1) + 1) == torch.arange(length + 1, device=mask.device).unsqueeze(0)  # [L, L+1]
    return cand.unsqueeze(1) & ~itself.unsqueeze(0)


def mask_scores(scores: Tensor, mask: Tensor) -> Tensor:
    """Head scores ``[B, L, L + 1]`` with forbidden candidates (see :func:`candidate_mask`) set to a
    large negative value."""
    return scores.masked_fill(~candidate_mask(mask), masked_value(scores.dtype))


def decode_heads(output: Tensor) -> Tensor:
    """The arg-max head of every token, ``[B, L]`` (0 = root), from an output ``[B, L, L + 1 + 3R]``
    (or head scores ``[B, L, L + 1]``)."""
    length = output.shape[1]
    return output[..., : length + 1].argmax(-1)


def relation_logits(output: Tensor, heads: Tensor, relations: int) -> Tensor:
    """``a_t + c_{head(t)}``: the relation logits ``[B, L, R]`` of each token for the given heads
    ``[B, L]`` (0 = root)."""
    length = output.shape[1]
    start = length + 1
    a = output[..., start : start + relations]
    c = output[..., start + relations : start + 2 * relations]
    c_root = output[:, :1, start + 2 * relations : start + 3 * relations]  # [B, 1, R]
    table = torch.cat([c_root, c], dim=1)  # [B, L+1, R]: row j = head part of candidate j
    return a + torch.gather(table, 1, heads.long().unsqueeze(-1).expand(-1, -1, relations))


class HeadSelection(nn.Module):
    """Bilinear head scores with a learned root, plus additive relation scores
    (Hashimoto et al., EMNLP 2017, Sec. 2.4).

    ``h [B, L, D]``, ``mask [B, L]`` -> ``[B, L, L + 1 + 3R]`` in the layout of the module
    docstring.

    Args:
        dim: width of the token states ``h_t``.
        relations: number of relation labels ``R`` (0: head scores only).
        zero_init: the paper's initialisation (Sec. 2.7): ``W_d``, ``r`` and the relation
            classifier's weights and bias start at zero. Otherwise ``W_d``, ``U`` and ``V`` are
            uniform in ``+-sqrt(6 / (rows + cols))`` and ``r`` in ``+-sqrt(3 / dim)``, so gradients
            reach the token states from the first step.
    """

    def __init__(self, dim: int, relations: int = 0, *, zero_init: bool = True) -> None:
        super().__init__()
        if dim < 1 or relations < 0:
            raise ValueError(f"HeadSelection: dim must be >= 1 and relations >= 0, got {dim} and {relations}")
        self.dim, self.relations = dim, relations
        self.weight = nn.Parameter(torch.empty(dim, dim))  # W_d
        self.root = nn.Parameter(torch.empty(dim))  # r
        self.dependent = nn.Linear(dim, relations) if relations else None  # U, b
        self.head = nn.Linear(dim, relations, bias=False) if relations else None  # V
        self.reset_parameters(zero_init)

    def reset_parameters(self, zero_init: bool = True) -> None:
        if zero_init:
            for p in self.parameters():
                nn.init.zeros_(p)
            return
        nn.init.uniform_(self.weight, -math.sqrt(3.0 / self.dim), math.sqrt(3.0 / self.dim))
        nn.init.uniform_(self.root, -math.sqrt(3.0 / self.dim), math.sqrt(3.0 / self.dim))
        for linear in (self.dependent, self.head):
            if linear is not None:
                bound = math.sqrt(6.0 / (self.dim + self.relations))
                nn.init.uniform_(linear.weight, -bound, bound)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)

    def scores(self, h: Tensor, mask: Tensor) -> Tensor:
        """``m(t, j) = h_t^T W_d h_j`` over ``[r; h_1..h_L]``, forbidden candidates masked: ``[B, L, L + 1]``."""
        b = h.shape[0]
        candidates = torch.cat([self.root.to(h.dtype).expand(b, 1, self.dim), h], dim=1)  # [B, L+1, D]
        return mask_scores((h @ self.weight.to(h.dtype)) @ candidates.transpose(1, 2), mask)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        parts = [self.scores(h, mask)]
        if self.dependent is not None and self.head is not None:
            b, length, _ = h.shape
            c_root = self.head(self.root.to(h.dtype)).expand(b, length, self.relations)
            parts += [self.dependent(h), self.head(h), c_root]
        return torch.cat(parts, dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, relations={self.relations}"
