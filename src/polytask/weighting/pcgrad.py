"""PCGrad, projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020).

For each task i, in a random order over the other tasks j: if ``g_i^pc . g_j < 0``, remove the
conflicting component, ``g_i^pc -= (g_i^pc . g_j) / |g_j|^2 g_j`` (projecting against the
*original* g_j). The update is ``sum_i g_i^pc``. Every projection subtracts a multiple of an
original gradient, so ``g_i^pc = C_i G`` for a coefficient row ``C_i`` computed from the Gram
matrix alone, and the update is ``(sum_i C_i) G``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.gradient import GradientWeighting


def pcgrad_coefficients(gram: Tensor, orders: Sequence[Sequence[int]]) -> Tensor:
    """``C [k, k]`` with ``g_i^pc = C_i G``; ``orders[i]`` is the order in which task i visits the others."""
    k = gram.shape[0]
    gram = gram.double()
    coef = torch.eye(k, dtype=torch.float64, device=gram.device)
    for i in range(k):
        for j in orders[i]:
            if j == i:
                continue
            dot = coef[i] @ gram[:, j]  # g_i^pc . g_j
            if dot < 0 and gram[j, j] > 0:
                coef[i, j] -= dot / gram[j, j]
    return coef


@WEIGHTINGS.register("pcgrad")
class PCGrad(GradientWeighting):
    """Project each task gradient off the others it conflicts with, then sum (Yu et al., 2020).

    Parameter gradients only, as in the paper (per-example representation gradients would make
    the projections depend on how rows are split). ``seed`` fixes the random task orders, the
    same in every process of a distributed run.
    """

    modes = ("parameter",)

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        k = gram.shape[0]
        orders = [torch.randperm(k, generator=self.generator).tolist() for _ in range(k)]
        return pcgrad_coefficients(gram, orders).sum(0).to(grads.dtype)
