"""Dynamic Weight Average (Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention",
CVPR 2019).

Epoch-level weights from the rate at which each task's epoch-average training loss falls::

    w_k(t-1)  = L_k(t-1) / L_k(t-2)
    lambda_k(t) = T exp(w_k(t-1) / temp) / sum_i exp(w_i(t-1) / temp)

so ``sum_k lambda_k = T``; a task whose loss falls more slowly gets a larger weight. The weights are
1 for the first two epochs (there is no ratio yet). Default ``temp = 2``. The loss is
``sum_k lambda_k L_k``.

The trainer calls :meth:`on_epoch_end` with the epoch's mean training losses (in a data-parallel
run, averaged over the processes by the trainer, so every process gets the same weights). A ratio whose
denominator is not a positive finite number (a task with no labels in a whole epoch) is taken as 1.

Masking: the weights are fixed for the epoch; a task with no labelled row in a batch has a zero
loss and contributes nothing that step (its weight is still reported, as for fixed weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.errors import ConfigError
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting


def dwa_weights(previous: Tensor, before: Tensor, temp: float) -> Tensor:
    """``T softmax((L(t-1)/L(t-2)) / temp)`` from ``previous = L(t-1)`` and ``before = L(t-2)``."""
    ok = torch.isfinite(before) & (before > 0) & torch.isfinite(previous)
    ratio = torch.where(ok, previous / torch.where(ok, before, torch.ones_like(before)), torch.ones_like(before))
    return len(ratio) * torch.softmax(ratio / temp, dim=0)


@WEIGHTINGS.register("dwa")
class DWA(Weighting):
    """Dynamic Weight Average: ``T softmax(L(t-1)/L(t-2) / temp)`` on epoch losses (Liu et al., CVPR 2019)."""

    def __init__(self, tasks: Sequence[Task], *, temp: float = 2.0, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        if temp <= 0:
            raise ConfigError("weighting.temp: must be > 0")
        self.temp = float(temp)
        k = len(self.task_names)
        #: epoch-average training losses of the last two epochs, rows L(t-2), L(t-1) (NaN: not yet seen)
        self.register_buffer("epoch_losses", torch.full((2, k), float("nan")))
        self.register_buffer("lambdas", torch.ones(k))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        return {name: self.lambdas[i] for i, name in enumerate(self.task_names) if name in losses}

    def on_epoch_end(self, epoch: int, train_losses: Mapping[str, float]) -> None:
        current = torch.tensor([float(train_losses.get(n, float("nan"))) for n in self.task_names],
                               dtype=self.epoch_losses.dtype, device=self.epoch_losses.device)
        with torch.no_grad():
            self.epoch_losses[0] = self.epoch_losses[1]
            self.epoch_losses[1] = current
            self.epochs_seen += 1
            if int(self.epochs_seen) >= 2:
                self.lambdas.copy_(dwa_weights(self.epoch_losses[1], self.epoch_losses[0], self.temp))

    def state(self) -> dict[str, Any]:
        return {"lambda": dict(zip(self.task_names, self.lambdas.tolist()))}
