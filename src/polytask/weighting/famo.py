"""FAMO, Fast Adaptive Multitask Optimization (Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask
Optimization", NeurIPS 2023), Algorithm 1.

FAMO aims at an equal *relative* decrease of every task's loss at each step, with O(1) space and
time per step (no per-task gradients). With logits ``xi`` (0 at the start) and
``z = softmax(xi)`` over the tasks labelled in the batch, the network's loss is::

    c sum_t z_t log(l_t),   l_t = L_t - min_t + eps,   c = (sum_t z_t / l_t)^-1  (detached)

whose gradient is ``sum_t w_t grad L_t`` with ``w_t = c z_t / l_t``: positive weights that sum to 1
(the reported weights). After the optimiser step the same batch's losses ``l_t'`` are recomputed
and the logits take one step on the observed change of the log losses::

    delta = J_softmax(xi)^T [log l_t - log l_t']_t,   xi <- xi - beta (delta + gamma xi)

which moves weight toward the tasks whose loss decreased least.

Defaults: ``w_lr`` (beta) = 0.025, ``gamma`` = 1e-3 (the paper's default; the reference code runs
Adam with weight decay gamma on xi, this is the plain step of Algorithm 1), ``eps`` = 1e-8,
``min_losses`` (the known lower bounds ``min_t``) = 0 for every task. ``xi`` is a buffer updated in
place, not a parameter, so the trainer's optimiser never touches it; :meth:`state` logs ``z``.

Implementation: the network is given ``sum_t w_t L_t`` with ``w_t`` computed from the detached
losses (same gradient as the log form above). In a data-parallel run the losses used for ``w``
and for the update, before and after the step, are averaged over the processes first, so every
process keeps the same ``xi``.

Masking: a task without labelled rows in the (global) batch is left out of the softmax (weight 0)
and its logit is not updated that step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting, active_flags, masked_softmax, mean_over_processes


def softmax_vjp(z: Tensor, v: Tensor) -> Tensor:
    """``J^T v`` for the softmax Jacobian ``J = diag(z) - z z^T`` at ``z`` (J is symmetric)."""
    return z * (v - (z * v).sum())


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    """Fast adaptive weights balancing the relative loss decrease of every task (Liu et al., NeurIPS 2023)."""

    wants_losses_after_step = True

    def __init__(self, tasks: Sequence[Task], *, w_lr: float = 0.025, gamma: float = 1e-3, eps: float = 1e-8,
                 min_losses: dict[str, float] | None = None, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        if w_lr <= 0:
            raise ConfigError("weighting.w_lr: must be > 0")
        if gamma < 0:
            raise ConfigError("weighting.gamma: must be >= 0")
        if eps <= 0:
            raise ConfigError("weighting.eps: must be > 0")
        given = dict(min_losses or {})
        unknown = set(given) - set(self.task_names)
        if unknown:
            raise ConfigError(f"weighting.min_losses: unknown task(s) {', '.join(sorted(unknown))}; "
                              f"tasks: {', '.join(self.task_names)}")
        self.w_lr, self.gamma, self.eps = float(w_lr), float(gamma), float(eps)
        k = len(self.task_names)
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("min_losses", torch.tensor([float(given.get(n, 0.0)) for n in self.task_names]),
                             persistent=False)

    def _index(self, names: Sequence[str]) -> list[int]:
        return [self.task_names.index(n) for n in names]

    def _shifted(self, values: Tensor, index: list[int]) -> Tensor:
        """``l_t = L_t - min_t + eps`` (clamped at eps) of the process-averaged ``values``."""
        return (values.float() - self.min_losses[index]).clamp_min(0) + self.eps

    def task_weights(self, losses: Tensor, flags: Tensor, index: list[int]) -> Tensor:
        """``w_t = c z_t / l_t`` (sum 1 over the flagged tasks, 0 elsewhere) from detached ``losses``."""
        z = masked_softmax(self.logits[index], flags)
        inv = torch.where(flags, z / self._shifted(losses, index), torch.zeros_like(z))
        return inv / inv.sum().clamp_min(torch.finfo(inv.dtype).tiny)

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        names = list(losses)
        stacked = torch.stack([losses[n].detach() for n in names]).float()
        flags = active_flags(ctx, names, stacked.device)
        w = self.task_weights(mean_over_processes(ctx, stacked), flags, self._index(names))
        return {n: w[i] for i, n in enumerate(names)}

    @torch.no_grad()
    def after_step(self, losses: Mapping[str, Tensor], recompute: Callable[[], Mapping[str, Tensor]], ctx: StepContext) -> None:
        names = list(losses)
        index = self._index(names)
        flags = ctx.active_flags(names, self.logits.device)
        new = recompute()
        before = self._shifted(ctx.all_reduce(torch.stack([losses[n].detach().float() for n in names]), "mean"), index)
        after = self._shifted(ctx.all_reduce(torch.stack([new[n].detach().float() for n in names]), "mean"), index)
        decrease = torch.where(flags, before.log() - after.log(), torch.zeros_like(before))
        xi = self.logits[index]
        delta = softmax_vjp(masked_softmax(xi, flags), decrease)
        self.logits[index] = torch.where(flags, xi - self.w_lr * (delta + self.gamma * xi), xi)

    def state(self) -> dict[str, Any]:
        return {"z": dict(zip(self.task_names, torch.softmax(self.logits, dim=0).float().tolist()))}
