"""Nash-MTL, multi-task learning as a bargaining game (Navon et al., "Multi-Task Learning as a
Bargaining Game", ICML 2022).

The tasks bargain over the update ``d`` inside a ball, each with utility ``g_t^T d``; the Nash
bargaining solution is ``d = sum_t alpha_t g_t`` with ``alpha > 0`` solving

    G G^T alpha = 1 / alpha        (element-wise reciprocal; M = G G^T the Gram matrix).

With orthogonal gradients ``alpha_t = 1 / ||g_t||``. The paper solves it by a sequence of convex
programs (cvxpy/ECOS). Here: the equation is the stationarity condition of the strictly convex

    f(a) = 1/2 a^T M a - sum_t log a_t       (grad f = M a - 1/a,  Hessian M + diag(1/a^2) > 0),

so it is solved by Newton's method on ``f`` (damped: the step is halved until ``a`` stays positive
and ``f`` decreases), warm-started from the previous step's solution, to a relative residual
``||M a - 1/a|| / ||1/a|| < 1e-10``.

Normalisation: as in the reference code, ``M`` is divided by its Frobenius norm ``s`` first. If
``a~`` solves ``(M/s) a~ = 1/a~`` then ``a~ / sqrt(s)`` solves ``M a = 1/a``, so the normalisation
only rescales the weights (and the update) by ``sqrt(s)``: the exact solution has
``||alpha^T G||^2 = alpha^T M alpha = k`` whatever the gradients' size, the reference's update
``a~^T G`` has ``||a~^T G||^2 = k s`` and so shrinks with the gradients. :func:`nash_mtl_weights`
returns the exact solution of the equation it is given; the method feeds it ``M / s``, i.e. it
uses the reference's scale, then clips the update's norm to ``max_norm`` (1.0) as the reference
clips the shared parameters' gradient.

Singular ``M``: when a nonnegative combination of the gradients vanishes (e.g. ``g_1 = -g_2``, or a
zero gradient) the equation has no solution (``f`` is unbounded below). A task whose gradient is
exactly zero has no say in the bargain and gets weight 0 (its row is left out of the solve); to
the rest a ridge ``1e-8 diag(M)`` is added (relative to each task's own squared norm, so it changes
the equation by a relative ``1e-8 (a_t ||g_t||)^2``, ``~1e-8`` in regular cases whatever the
tasks' scales): the solution then exists, and where the gradients cancel it gives large but finite
weights to the cancelling directions (whose combination is then ~0).

``update_every`` (1) recomputes ``alpha`` every that many calls and reuses it in between
(Nash-MTL-T of the paper): the in-between steps take a single gradient of ``sum_t alpha_t L_t``
instead of one per task.

Parameter gradients only: the paper reports that feature-level (representation) gradients hurt
Nash-MTL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext
from polytask.weighting.gradient import GradientWeighting, task_gradients

RIDGE = 1e-8


def nash_mtl_weights(gram: Tensor, init: Tensor | None = None, *, ridge: float = RIDGE, tol: float = 1e-10,
                     max_iter: int = 100) -> Tensor:
    """``alpha > 0`` with ``(gram + ridge diag(gram)) alpha = 1 / alpha`` (float64, CPU); a task
    with a zero gradient gets 0.

    Solved on the Frobenius-normalised matrix and scaled back (see the module text); ``init`` is a
    starting point for the *normalised* problem (the previous solution), ones otherwise.
    """
    m = gram.detach().double().cpu()
    k = m.shape[0]
    s = float(torch.linalg.matrix_norm(m))
    out = torch.zeros(k, dtype=torch.float64)
    diag = m.diagonal()
    live = diag > 1e-20 * float(diag.max()) if s > 0 else torch.zeros(k, dtype=torch.bool)
    if not bool(live.any()):
        return out
    idx = live.nonzero()[:, 0]
    m = m[idx][:, idx] / s
    m = m + ridge * torch.diag(m.diagonal())
    a = torch.ones(len(idx), dtype=torch.float64)
    if init is not None and init.numel() == k:
        start = init.detach().double().cpu()[idx]
        if bool((start > 0).all()) and bool(torch.isfinite(start).all()):
            a = start.clone()

    def f(x: Tensor) -> float:
        return float(0.5 * x @ m @ x - torch.log(x).sum())

    for _ in range(max_iter):
        grad = m @ a - 1.0 / a
        if float(grad.norm()) <= tol * float((1.0 / a).norm()):
            break
        step = torch.linalg.solve(m + torch.diag(1.0 / a**2), -grad)
        fa, t = f(a), 1.0
        while t > 1e-12:
            new = a + t * step
            if bool((new > 0).all()) and f(new) <= fa + 1e-4 * t * float(grad @ step):
                break
            t *= 0.5
        else:
            break
        a = new
    out[idx] = a / s**0.5
    return out


@WEIGHTINGS.register("nash_mtl")
class NashMTL(GradientWeighting):
    """Nash bargaining solution of the task gradients, ``G G^T alpha = 1/alpha`` (Navon et al., 2022).

    ``max_norm`` (1.0) clips the shared update's norm (0 turns it off); ``update_every`` (1)
    recomputes the weights every that many steps and reuses them in between (Nash-MTL-T).
    Parameter gradients only.
    """

    modes = ("parameter",)

    #: the step count (``update_every``) and the warm-start solution
    resume_attributes = ("_calls", "_alpha", "_alpha_tasks")

    def __init__(self, tasks: Sequence[Task], *, max_norm: float = 1.0, update_every: int = 1,
                 mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        if update_every < 1:
            raise ConfigError(f"weighting.update_every: must be >= 1, not {update_every}")
        self.max_norm = max_norm
        self.update_every = update_every
        self._calls = 0
        self._alpha: Tensor | None = None  # last solution of the normalised problem (warm start)
        self._alpha_tasks: list[str] = []

    def _clip(self, update: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
        if self.max_norm > 0:
            norm = float(update.norm())
            if norm > self.max_norm:
                factor = self.max_norm / norm
                return update * factor, alpha * factor
        return update, alpha

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        s = float(torch.linalg.matrix_norm(gram.double()))
        init = self._alpha if self._alpha_tasks == self.active_tasks else None
        alpha = nash_mtl_weights(gram.double() / s if s > 0 else gram, init)
        self._alpha, self._alpha_tasks = alpha, list(self.active_tasks)
        return alpha.to(device=grads.device, dtype=grads.dtype)

    def direction(self, grads: Tensor, gram: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.combine(grads, gram, losses)
        return self._clip(alpha.to(grads.dtype) @ grads, alpha)

    def backward(self, losses: Mapping[str, Tensor], extra: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        calls, self._calls = self._calls, self._calls + 1
        if calls % self.update_every == 0 or self._alpha is None:
            return super().backward(losses, extra, ctx)
        names = ctx.active(list(losses))
        if names != self._alpha_tasks:  # other tasks labelled than when alpha was computed
            return super().backward(losses, extra, ctx)
        # Nash-MTL-T: reuse alpha; one gradient of sum_t alpha_t L_t instead of one per task (task-
        # specific parameters and penalties get their ordinary gradients, as in the base class)
        self.active_tasks = names
        model, scale = ctx.model, float(ctx.loss_scale)
        device = next(iter(losses.values())).device
        alpha = self._alpha.to(device=device, dtype=torch.float32)
        shared = model.shared_parameters()
        combined = sum(a * losses[n] for a, n in zip(alpha, names))
        row = ctx.all_reduce(task_gradients([combined], shared, scale), "mean")[0]
        update, alpha = self._clip(row, alpha)
        self.apply_parameter_update(shared, update, [losses[n] for n in names],
                                    sum(extra.values(), torch.zeros((), device=device)), ctx)
        weights = {n: torch.zeros((), device=device) for n in losses}
        for n, a in zip(names, alpha):
            weights[n] = a.detach()
        return weights
