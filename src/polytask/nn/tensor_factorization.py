"""Tensor-factorised per-task weights (DMTRL: Yang & Hospedales, ICLR 2017).

The weights of one layer for all T tasks form a tensor ``W [D1, D2, T]``; instead of learning W,
its factors are learned and W is rebuilt on every forward pass (task t uses ``W[:, :, t]``):

- ``tucker``: ``W = S x1 U1 x2 U2 x3 U3``, core ``S [K1, K2, K3]``, ``U1 [D1, K1]``, ``U2 [D2, K2]``,
  ``U3 [T, K3]``;
- ``tt`` (tensor train): ``W(i, j, t) = U1[i, :] U2[:, j, :] U3[:, t]``, cores ``[D1, K1]``,
  ``[K1, D2, K2]``, ``[K2, T]``;
- ``laf`` (last-axis flattening): ``W_(3)^T = U V`` with ``U [D1*D2, K]`` shared, ``V [K, T]``.

Factors are initialised by decomposing a randomly initialised (``nn.Linear``-like) weight tensor
with a truncated HOSVD / TT-SVD / SVD, as the reference code decomposes single-task weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

FACTORIZATIONS = ("tucker", "tt", "laf")


def _svd_factor(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``matrix ~ left @ right`` with ``left`` the top-``rank`` left singular vectors."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    r = min(rank, s.numel())
    left = u[:, :r]
    right = s[:r, None] * vh[:r]
    if r < rank:  # pad to the requested rank with zeros (extra capacity, starts unused)
        left = torch.cat([left, left.new_zeros(left.shape[0], rank - r)], 1)
        right = torch.cat([right, right.new_zeros(rank - r, right.shape[1])], 0)
    return left, right


def tucker_decompose(w: Tensor, ranks: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Truncated HOSVD of ``w [D1, D2, T]`` -> (core, U1, U2, U3)."""
    factors = []
    for mode, rank in enumerate(ranks):
        unfolded = w.movedim(mode, 0).reshape(w.shape[mode], -1)
        factors.append(_svd_factor(unfolded, rank)[0])
    core = torch.einsum("ijt,ia,jb,tc->abc", w, *factors)
    return (core, *factors)


def tt_decompose(w: Tensor, ranks: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """TT-SVD of ``w [D1, D2, T]`` -> cores ``[D1, K1]``, ``[K1, D2, K2]``, ``[K2, T]``."""
    d1, d2, t = w.shape
    k1, k2 = ranks
    g1, rest = _svd_factor(w.reshape(d1, d2 * t), k1)  # [D1, K1], [K1, D2*T]
    g2, g3 = _svd_factor(rest.reshape(k1 * d2, t), k2)  # [K1*D2, K2], [K2, T]
    return g1, g2.reshape(k1, d2, k2), g3


class FactorisedWeights(nn.Module):
    """Learnable factors that rebuild ``[T, D1, D2]`` per-task weights (see the module docstring)."""

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, *, factorization: str = "tucker",
                 ranks: Sequence[int] | None = None) -> None:
        super().__init__()
        if factorization not in FACTORIZATIONS:
            raise ValueError(f"factorization must be one of {', '.join(FACTORIZATIONS)}, not {factorization!r}")
        self.factorization = factorization
        bound = 1.0 / math.sqrt(in_dim)
        w = torch.empty(in_dim, out_dim, num_tasks).uniform_(-bound, bound)
        if factorization == "tucker":
            ranks = list(ranks or [in_dim, out_dim, num_tasks])
            if len(ranks) != 3:
                raise ValueError("tucker needs 3 ranks (K1, K2, K3)")
            self.factors = nn.ParameterList(tucker_decompose(w, ranks))
        elif factorization == "tt":
            ranks = list(ranks or [in_dim, num_tasks])
            if len(ranks) != 2:
                raise ValueError("tt needs 2 ranks (K1, K2)")
            self.factors = nn.ParameterList(tt_decompose(w, ranks))
        else:
            ranks = list(ranks or [num_tasks])
            if len(ranks) != 1:
                raise ValueError("laf needs 1 rank (K)")
            self.factors = nn.ParameterList(_svd_factor(w.reshape(in_dim * out_dim, num_tasks), ranks[0]))
        self.shape = (num_tasks, in_dim, out_dim)

    def forward(self) -> Tensor:
        f = list(self.factors)
        if self.factorization == "tucker":
            return torch.einsum("abc,ia,jb,tc->tij", *f)
        if self.factorization == "tt":
            return torch.einsum("ia,ajb,bt->tij", *f)
        t, d1, d2 = self.shape
        return (f[0] @ f[1]).reshape(d1, d2, t).permute(2, 0, 1)


class FactorisedColumnLayer(nn.Module):
    """A column layer (``[T, B, in]`` or ``[B, in]`` -> ``[T, B, out]``) whose per-task weights are
    factorised across tasks; biases stay per task."""

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, *, factorization: str = "tucker",
                 ranks: Sequence[int] | None = None, act: nn.Module | None = None) -> None:
        super().__init__()
        self.weights = FactorisedWeights(num_tasks, in_dim, out_dim, factorization=factorization, ranks=ranks)
        self.bias = nn.Parameter(torch.zeros(num_tasks, 1, out_dim))
        self.act = act if act is not None else nn.Identity()
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        w = self.weights()  # [T, in, out]
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(w.shape[0], -1, -1)
        return self.act(torch.baddbmm(self.bias, x, w))
