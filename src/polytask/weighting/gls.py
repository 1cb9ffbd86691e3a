"""Geometric Loss Strategy (Chennupati, Sistu, Yogamani, Rawashdeh, "MultiNet++: Multi-Stream
Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019).

The loss is the geometric mean of the task losses::

    L = (prod_t L_t)^(1/k) = exp(mean_t log(L_t + eps))

over the ``k`` tasks with at least one labelled row in the (global) batch. Its gradient is
``sum_t w_t grad L_t`` with the effective weights ``w_t = dL/dL_t = L / (k (L_t + eps))`` (the
reported weights): every ``w_t L_t`` is the same, so rescaling a task's loss by a constant changes
no relative weight-times-loss and only scales the update by ``c^(1/k)``.

The weights are computed from the detached losses (averaged over the processes of a data-parallel
run) and the network is given ``sum_t w_t L_t``: the same gradient as differentiating the geometric
mean, and exact under data parallelism. A task without labels gets weight 0. Default ``eps = 1e-8``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting, active_flags, mean_over_processes


def gls_weights(losses: Tensor, flags: Tensor, eps: float) -> Tensor:
    """``dL/dL_t = L / (k (L_t + eps))`` for ``L = exp(mean log(L_t + eps))`` over the flagged tasks, 0 elsewhere."""
    k = flags.sum().clamp_min(1).to(losses.dtype)
    shifted = losses.clamp_min(0) + eps
    logs = torch.where(flags, torch.log(shifted), torch.zeros_like(losses))
    total = torch.exp(logs.sum() / k)
    return torch.where(flags, total / (k * shifted), torch.zeros_like(losses))


@WEIGHTINGS.register("gls")
class GLS(Weighting):
    """Geometric mean of the task losses, ``(prod_t L_t)^(1/k)`` (Chennupati et al., 2019)."""

    def __init__(self, tasks: Sequence[Task], *, eps: float = 1e-8, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        if eps <= 0:
            raise ConfigError("weighting.eps: must be > 0 (a task whose loss is 0 would get weight 0/0)")
        self.eps = float(eps)

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        names = list(losses)
        stacked = torch.stack([losses[n].detach() for n in names]).float()
        flags = active_flags(ctx, names, stacked.device)
        w = gls_weights(mean_over_processes(ctx, stacked), flags, self.eps)
        return {n: w[i] for i, n in enumerate(names)}
