"""CAGrad, conflict-averse gradient descent (Liu et al., "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021).

The update maximises the worst task's rate of improvement while staying near the average gradient
``g0 = (1/k) sum_t g_t``:

    max_d min_t <g_t, d>   s.t.   ||d - g0|| <= c ||g0||.

Its dual is a k-dimensional problem on the simplex, written with the Gram matrix ``M = G G^T``
only (``g_w = sum_t w_t g_t``, so ``<g_w, g0> = w^T M 1/k`` and ``||g_w||^2 = w^T M w``):

    w* = argmin_{w in simplex}  w^T M 1/k + c ||g0|| sqrt(w^T M w),    ||g0||^2 = 1^T M 1 / k^2,

and the primal solution is ``d = g0 + (c ||g0|| / ||g_w*||) g_w*``, a linear combination of the
task gradients with ``alpha = 1/k + (c ||g0|| / ||g_w*||) w*``. ``rescale`` divides it by ``1 + c^2``
(1, the default), by ``1 + c`` (2) or not at all (0). ``c = 0`` is exactly gradient descent on the
mean loss (``alpha = 1/k``).

The dual is convex (a linear term plus a norm of a linear map); it is solved here by a log-barrier
interior-point method (Newton steps on the simplex), in float64 on the Gram matrix normalised by
its mean diagonal (which leaves ``alpha`` unchanged), with a tiny smoothing ``1e-12`` under the
square root for the degenerate case where the minimiser puts ``g_w`` at the origin. The centred
points certify ``F(w) - F(w*) <= k mu``, driven below 1e-11. Defaults: ``c = 0.4`` (nash-mtl's;
LibMTL uses 0.5), ``rescale = 1``.

Modes: ``parameter`` (default; the paper and both reference implementations, where the ball
bounds the parameter update's distance from the average gradient) and ``representation`` (the
same problem on the whole-batch Gram matrix of the representation gradients, in the spirit of
MGDA-UB: cheaper, but the ball and the worst-task guarantee then hold for the representation
gradients, not the parameters'; LibMTL refuses this combination, so it is not the paper's
method).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.gradient import GradientWeighting

_SMOOTH = 1e-12


def cagrad_dual(gram: np.ndarray, c: float, tol: float = 1e-11) -> np.ndarray:
    """``w*`` minimising ``F(w) = w^T M 1/k + c ||g0|| sqrt(w^T M w)`` over the simplex.

    Log-barrier interior point: Newton's method (equality-constrained, with a fraction-to-the-
    boundary rule and Armijo backtracking) on ``F(w) - mu sum_t log w_t`` for ``mu = 1, 0.1, ...``
    down to ``k mu < tol``, each centring warm-started from the last; the centred points satisfy
    ``F(w) - F(w*) <= k mu``. ``M`` should be scaled to unit mean diagonal.
    """
    m = np.asarray(gram, dtype=np.float64)
    k = m.shape[0]
    b = m.mean(axis=1)
    r = c * np.sqrt(max(m.sum(), 0.0)) / k
    
    def barrier(w: np.ndarray, mu: float) -> float:
        return float(w @ b + r * np.sqrt(max(w @ m @ w, 0.0) + _SMOOTH) - mu * np.log(w).sum())

    w = np.full(k, 1.0 / k)
    mu = 1.0
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, k] = kkt[k, :k] = 1.0
    while True:
        for _ in range(100):
            mw = m @ w
            s = np.sqrt(max(w @ mw, 0.0) + _SMOOTH)
            g = b + r * mw / s - mu / w
            kkt[:k, :k] = r * (m / s - np.outer(mw, mw) / s**3) + np.diag(mu / w**2)
            try:
                dw = np.linalg.solve(kkt, np.concatenate([-g, [0.0]]))[:k]
            except np.linalg.LinAlgError:
                dw = np.linalg.lstsq(kkt, np.concatenate([-g, [0.0]]), rcond=None)[0][:k]
            dw -= dw.mean()  # keep sum(w) = 1 exactly
            decrement = -(g @ dw)
            if decrement <= 1e-13 * max(1.0, abs(float(w @ b))) or not np.isfinite(decrement):
                break
            neg = dw < 0
            step = min(1.0, 0.99 * float(np.min(-w[neg] / dw[neg]))) if neg.any() else 1.0
            f0 = barrier(w, mu)
            while step > 1e-16 and barrier(w + step * dw, mu) > f0 - 0.25 * step * decrement:
                step *= 0.5
            if step <= 1e-16:
                break
            w = w + step * dw
        if k * mu < tol:
            break
        mu *= 0.1
    w = np.maximum(w, 0.0)
    return w / w.sum()


def cagrad_weights(gram: Tensor, c: float = 0.4, rescale: int = 1) -> Tensor:
    """``alpha [k]`` (float64, CPU) with the CAGrad update ``d = alpha^T G``."""
    k = gram.shape[0]
    if c == 0:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    m = gram.detach().double().cpu().numpy()
    scale = float(np.mean(np.diag(m)))
    if not scale > 0:  # every gradient is zero
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    m = m / scale  # alpha is invariant to the Gram matrix's scale
    w = cagrad_dual(m, c)
    g0_norm = np.sqrt(max(m.sum(), 0.0)) / k
    gw_norm = np.sqrt(max(w @ m @ w, 0.0) + _SMOOTH)
    alpha = np.full(k, 1.0 / k) + (c * g0_norm / gw_norm) * w
    if rescale == 1:
        alpha = alpha / (1.0 + c * c)
    elif rescale == 2:
        alpha = alpha / (1.0 + c)
    return torch.from_numpy(alpha)


@WEIGHTINGS.register("cagrad")
class CAGrad(GradientWeighting):
    """Conflict-averse gradient descent: the best worst-task improvement within a ball around
    the mean gradient (Liu et al., 2021).

    ``c`` (0.4) is the ball's radius relative to the mean gradient's norm (``c = 0`` is the mean
    gradient); ``rescale`` divides the update by ``1 + c^2`` (1, default), ``1 + c`` (2) or nothing
    (0). Modes ``parameter`` (default, as the paper) and ``representation``.
    """

    modes = ("parameter", "representation")

    def __init__(self, tasks: Sequence[Task], *, c: float = 0.4, rescale: Literal[0, 1, 2] = 1,
                 mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        if c < 0:
            raise ConfigError(f"weighting.c: CAGrad needs c >= 0, not {c}")
        self.c = c
        self.rescale = rescale

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        return cagrad_weights(gram, self.c, self.rescale).to(device=grads.device, dtype=grads.dtype)
