"""MGDA-UB, the min-norm point of the task gradients' convex hull (Sener & Koltun, "Multi-Task
Learning as Multi-Objective Optimization", NeurIPS 2018).

The multiple-gradient descent algorithm picks the convex combination of the task gradients with
the smallest norm,

    alpha* = argmin_{alpha in simplex} || sum_t alpha_t g_t ||^2 = argmin alpha^T M alpha,   M = G G^T,

a common descent direction of every task (or zero at a Pareto-stationary point). Everything is a
function of the Gram matrix ``M``:

* two tasks: closed form on the segment, ``gamma = (M22 - M12) / (M11 + M22 - 2 M12)`` clipped to
  [0, 1] (``alpha = (gamma, 1 - gamma)``; ``alpha = (1, 0)`` when ``M12 >= M11`` since ``g1`` itself
  is then the closest point, ``(0, 1)`` when ``M12 >= M22``);
* more tasks: Frank-Wolfe started from the best pair (the pair whose segment has the smallest
  min-norm point): at each step move towards the vertex ``e_t`` with the smallest ``(M alpha)_t``
  (the linear minimiser of the gradient ``2 M alpha``) by the exact line search on the segment
  ``[alpha, e_t]`` (the two-task closed form again), at most 250 iterations, stopping once the
  step changes ``alpha`` by less than 1e-5 in L1 norm or the duality gap vanishes.

MGDA-UB ("upper bound") solves the problem with the gradients of the shared *representation*
instead of the shared parameters (one row block per example, whole-batch Gram matrix), which
costs one backward per task through the heads only; by the chain rule the resulting weights'
update of the shared parameters is ``sum_t alpha_t grad_theta L_t``. That is the paper's default
and this module's default mode; ``mode="parameter"`` is plain MGDA on the parameter gradients.

Gradient normalisation before solving (``normalize``), as in the authors' code: ``none``
(default), ``l2`` (``g_t / ||g_t||``), ``loss`` (``g_t / L_t``) or ``loss+`` (``g_t / (L_t ||g_t||)``).
As in the authors' code (and nash-mtl's), the weights found for the normalised gradients are
applied to the *original* gradients (LibMTL in parameter mode instead combines the normalised
ones, i.e. scales ``alpha_t`` by ``1/n_t``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.gradient import GradientWeighting

MGDANormalization = Literal["none", "l2", "loss", "loss+"]


def _segment(m11: float, m12: float, m22: float) -> tuple[float, float]:
    """Min-norm point of the segment ``gamma v1 + (1 - gamma) v2`` from its inner products:
    ``(gamma, squared norm)``."""
    if m12 >= m11:
        return 1.0, m11
    if m12 >= m22:
        return 0.0, m22
    gamma = (m22 - m12) / (m11 + m22 - 2.0 * m12)
    return gamma, gamma * gamma * m11 + 2.0 * gamma * (1.0 - gamma) * m12 + (1.0 - gamma) ** 2 * m22


def min_norm_weights(gram: Tensor, max_iter: int = 250, tol: float = 1e-5) -> Tensor:
    """``alpha`` in the simplex minimising ``alpha^T gram alpha`` (float64, on the CPU).

    Closed form for two tasks; Frank-Wolfe from the best pair otherwise (see the module text).
    """
    m = gram.detach().double().cpu()
    k = m.shape[0]
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    # best pair
    best, alpha = float("inf"), None
    for i in range(k):
        for j in range(i + 1, k):
            gamma, cost = _segment(float(m[i, i]), float(m[i, j]), float(m[j, j]))
            if cost < best:
                best = cost
                alpha = torch.zeros(k, dtype=torch.float64)
                alpha[i], alpha[j] = gamma, 1.0 - gamma
    if k == 2:
        return alpha
    for _ in range(max_iter):
        m_alpha = m @ alpha
        t = int(torch.argmin(m_alpha))
        v1v1 = float(alpha @ m_alpha)
        v1v2 = float(m_alpha[t])
        if v1v1 - v1v2 <= 1e-15 * max(v1v1, 1e-300):  # Frank-Wolfe gap: alpha is optimal
            break
        gamma, _ = _segment(v1v1, v1v2, float(m[t, t]))
        new = gamma * alpha
        new[t] += 1.0 - gamma
        change = float((new - alpha).abs().sum())
        alpha = new
        if change < tol:
            break
    return alpha


def gradient_normalizers(gram: Tensor, losses: Tensor, normalize: str) -> Tensor:
    """The factor ``n_t`` each gradient is divided by before solving (1 where it would be 0)."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    if normalize == "none":
        n = torch.ones_like(norms)
    elif normalize == "l2":
        n = norms
    elif normalize == "loss":
        n = losses.to(norms)
    elif normalize == "loss+":
        n = losses.to(norms) * norms
    else:
        raise ValueError(f"unknown MGDA normalisation {normalize!r}")
    return torch.where(n > 0, n, torch.ones_like(n))


@WEIGHTINGS.register("mgda")
class MGDA(GradientWeighting):
    """Min-norm convex combination of the task gradients (MGDA-UB; Sener & Koltun, 2018).

    Modes: ``representation`` (default: MGDA-UB, the paper's choice, gradients of the shared
    representation) and ``parameter`` (plain MGDA on the shared parameters). ``normalize``:
    ``none`` (default), ``l2``, ``loss`` or ``loss+`` scaling of the gradients before solving.
    Frank-Wolfe for three or more tasks: ``max_iter`` 250, ``tol`` 1e-5.
    """

    modes = ("representation", "parameter")

    def __init__(self, tasks: Sequence[Task], *, normalize: MGDANormalization = "none", max_iter: int = 250,
                 tol: float = 1e-5, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.normalize = normalize
        self.max_iter = max_iter
        self.tol = tol

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        n = gradient_normalizers(gram.double(), losses.double(), self.normalize)
        alpha = min_norm_weights(gram.double() / (n[:, None] * n[None, :]), self.max_iter, self.tol)
        return alpha.to(device=grads.device, dtype=grads.dtype)
