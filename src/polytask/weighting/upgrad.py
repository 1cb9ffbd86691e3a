"""UPGrad, unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for
Multi-Objective Optimization", 2024).

Each task gradient ``g_i`` is projected onto the dual cone of the task gradients,
``C = {v : G v >= 0}`` (the directions that conflict with no task), and the update is the mean of
the projections, ``d = (1/k) sum_i pi_C(g_i)``; it therefore has a non-negative inner product with
every task gradient, and it is the mean gradient when no two gradients conflict (every ``g_i`` is
then in ``C`` already: ``G g_i = M e_i >= 0``).

Projection from the Gram matrix ``M = G G^T``. ``pi_C(g)`` minimises ``1/2 ||v - g||^2`` subject to
``G v >= 0``. With multipliers ``lambda >= 0`` the Lagrangian ``1/2 ||v - g||^2 - lambda^T G v`` is
stationary at ``v = g + G^T lambda``; substituting gives the dual ``max_{lambda >= 0}
-1/2 lambda^T M lambda - lambda^T G g``, and for ``g = g_i = G^T e_i`` (``G g_i = M e_i``):

    pi_C(g_i) = g_i + G^T lambda_i,    lambda_i = argmin_{lambda >= 0} 1/2 lambda^T M lambda + lambda^T M e_i.

So ``d = (1/k) sum_i G^T (e_i + lambda_i) = alpha^T G`` with ``alpha = (1 + sum_i lambda_i) / k``
(``1`` the all-ones vector, the sum of the ``lambda_i`` element-wise).

Each of the k non-negative quadratic programs is solved exactly (up to rounding) in float64 by the
Lawson-Hanson active-set method written on the Gram matrix (it is the non-negative least-squares
problem ``min_{lambda >= 0} ||G^T lambda + g_i||``): finite, and on the final support it solves
the equality conditions ``M_SS lambda_S = -(M e_i)_S`` directly. A task with a zero gradient
imposes no constraint (its ``lambda_j`` stays 0). When the gradients are linearly dependent (``M`` singular) the
multipliers are not unique; a ridge ``1e-12 max_t M_tt`` on ``M`` inside the solver picks one
(the projections themselves are unique).

Modes: ``parameter`` (default, the paper's Jacobian of the parameters) and ``representation``
(the same aggregation of the representation gradients; the non-conflict guarantee then holds for
those gradients, as MGDA-UB's).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.weighting.gradient import GradientWeighting


def nonneg_qp(m: np.ndarray, q: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """``argmin_{x >= 0} 1/2 x^T m x + q^T x`` for a PSD ``m`` (Lawson-Hanson active set in Gram
    form: the least-squares problem ``min ||A x - b||`` with ``A^T A = m``, ``A^T b = -q``)."""
    k = m.shape[0]
    x = np.zeros(k)
    free = np.zeros(k, dtype=bool)  # the passive set P (x_j may be > 0)
    scale = max(float(np.abs(np.diag(m)).max()), 1e-300)
    tol = 1e-12 * scale

    ridged = m + 1e-12 * scale * np.eye(k)  # unique solution for a singular m (dependent gradients)

    def solve(idx: np.ndarray) -> np.ndarray:
        s = np.zeros(k)
        s[idx] = np.linalg.lstsq(ridged[np.ix_(idx, idx)], -q[idx], rcond=None)[0]
        return s

    for _ in range(max_iter):
        w = -(ridged @ x + q)  # minus the gradient: a bound x_j = 0 should be released where w_j > 0
        candidates = np.where(~free & (np.diag(m) > tol), w, -np.inf)
        j = int(np.argmax(candidates))
        if not candidates[j] > tol:
            break
        free[j] = True
        for _ in range(max_iter):
            idx = np.nonzero(free)[0]
            s = solve(idx)
            if (s[idx] > 0).all():
                break
            bad = idx[s[idx] <= 0]
            step = float(np.min(x[bad] / (x[bad] - s[bad])))
            x = x + step * (s - x)
            free &= x > tol * 1e-3
            x[~free] = 0.0
        x = s if free.any() else np.zeros(k)
        x[~free] = 0.0
    return x


def upgrad_multipliers(gram: Tensor) -> Tensor:
    """``[k, k]``: column i is ``lambda_i`` of the projection of ``g_i`` (float64, CPU)."""
    m = gram.detach().double().cpu().numpy()
    return torch.from_numpy(np.stack([nonneg_qp(m, m[:, i]) for i in range(m.shape[0])], axis=1))


def upgrad_weights(gram: Tensor) -> Tensor:
    """``alpha = (1 + sum_i lambda_i) / k`` (float64, CPU)."""
    k = gram.shape[0]
    return (1.0 + upgrad_multipliers(gram).sum(1)) / k


@WEIGHTINGS.register("upgrad")
class UPGrad(GradientWeighting):
    """Mean of the task gradients each projected onto the cone of non-conflicting directions
    (Quinton & Rey, 2024). Modes ``parameter`` (default) and ``representation``."""

    modes = ("parameter", "representation")

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        return upgrad_weights(gram).to(device=grads.device, dtype=grads.dtype)
