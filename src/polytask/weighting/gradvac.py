"""GradVac, gradient vaccine (Wang et al., "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021).

PCGrad only removes conflicts (it raises negative cosines to 0); GradVac raises the cosine of
every pair towards a *target* learned from the pair's history. For each task i, visiting the
others j in a random order, with ``phi = cos(g_i^pc, g_j)`` and the target ``phi_hat_ij``:

    if phi < phi_hat_ij:
        g_i^pc += ||g_i^pc|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
                  / (||g_j|| sqrt(1 - phi_hat^2)) * g_j
    phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi

Adding that multiple of ``g_j`` keeps ``g_i^pc``'s component orthogonal to ``g_j`` and sets the
cosine to exactly ``phi_hat_ij``. The targets start at 0 (so the first steps act like PCGrad) and
follow an exponential moving average of the observed cosines with ``beta`` (0.01). The update
is ``sum_i g_i^pc``. Every step adds a multiple of an *original* gradient, so ``g_i^pc = C_i G``
with coefficients computed from the Gram matrix alone (norms ``sqrt(C_i M C_i^T)``, inner products
``C_i M e_j``), like PCGrad.

Whole-vector variant: one cosine per pair over all shared parameters (the paper also applies it
per layer or per parameter block, with one target per block; not offered here). The targets are
kept for every ordered pair of tasks (a buffer, saved with the weighting's state) and updated only
for the pairs labelled in a step. ``seed`` fixes the random orders, as in PCGrad.

Parameter gradients only (as the paper, and as PCGrad here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.gradient import GradientWeighting

_MAX_TARGET = 1.0 - 1e-12  # keeps sqrt(1 - phi_hat^2) > 0


def gradvac_coefficients(gram: Tensor, targets: Tensor, orders: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """``(C [k, k], phi [k, k])``: ``g_i^pc = C_i G``, and ``phi[i, j]`` the cosine observed when
    task i visited task j (the value the EMA of the target takes in; NaN where either gradient
    is zero).

    ``targets[i, j]`` is ``phi_hat_ij``; ``orders[i]`` the order in which task i visits the others.
    """
    m = gram.detach().double().cpu()
    targets = targets.detach().double().cpu()
    k = m.shape[0]
    coef = torch.eye(k, dtype=torch.float64)
    phi = torch.full((k, k), float("nan"), dtype=torch.float64)
    norms = m.diagonal().clamp_min(0).sqrt()
    for i in range(k):
        for j in orders[i]:
            if j == i or not norms[j] > 0:
                continue
            row = coef[i]
            norm_i = max(float(row @ m @ row), 0.0) ** 0.5
            if not norm_i > 0:
                continue
            cos = float(row @ m[:, j]) / (norm_i * float(norms[j]))
            cos = max(-1.0, min(1.0, cos))
            phi[i, j] = cos
            target = min(float(targets[i, j]), _MAX_TARGET)
            if cos < target:
                root = (1.0 - target * target) ** 0.5
                coef[i, j] += norm_i * (target * (1.0 - cos * cos) ** 0.5 - cos * root) / (float(norms[j]) * root)
    return coef, phi


@WEIGHTINGS.register("gradvac")
class GradVac(GradientWeighting):
    """Raise each pair's gradient cosine to an EMA-tracked target, then sum (Wang et al., 2021).

    ``beta`` (0.01) is the target's EMA rate; ``seed`` fixes the random task orders. Whole-vector
    variant, parameter gradients only.
    """

    modes = ("parameter",)

    def __init__(self, tasks: Sequence[Task], *, beta: float = 0.01, seed: int = 0, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.beta = beta
        self.generator = torch.Generator().manual_seed(seed)
        k = len(self.task_names)
        self.register_buffer("targets", torch.zeros(k, k, dtype=torch.float64))

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        k = gram.shape[0]
        index = torch.tensor([self.task_names.index(n) for n in self.active_tasks])
        targets = self.targets.cpu()[index][:, index]
        orders = [torch.randperm(k, generator=self.generator).tolist() for _ in range(k)]
        coef, phi = gradvac_coefficients(gram, targets, orders)
        updated = torch.where(phi.isnan(), targets, (1.0 - self.beta) * targets + self.beta * phi)
        new = self.targets.cpu().clone()
        new[index[:, None], index[None, :]] = updated
        self.targets.copy_(new.to(self.targets.device))
        return coef.sum(0).to(device=grads.device, dtype=grads.dtype)

    def state(self) -> dict[str, dict[str, dict[str, float]]]:
        """The cosine targets, ``{"targets": {task_i: {task_j: phi_hat_ij}}}``."""
        t = self.targets.cpu().tolist()
        return {"targets": {a: {b: t[i][j] for j, b in enumerate(self.task_names) if j != i}
                            for i, a in enumerate(self.task_names)}}
