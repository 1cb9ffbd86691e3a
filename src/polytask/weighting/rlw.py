"""Random Loss Weighting (Lin, Ye, Xu, Shi, Zhang, Kwok, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022).

Each step the weights are ``lambda = softmax(lambda~)`` with ``lambda~ ~ N(0, I)`` drawn afresh; the
loss is ``sum_t lambda_t L_t``. The normal variant is the one the Nash-MTL and FAMO tables use.

Masking: the softmax runs over the tasks with at least one labelled row in the (global) batch only,
so their weights sum to 1 and a task without labels gets weight 0. One normal number is drawn for
every task each call (labelled or not), so the random stream does not depend on the masks.

Defaults: ``seed = 0``. The numbers come from a CPU generator seeded with ``seed``, the same in every
process of a data-parallel run; a new draw is made at every backward call (every micro-batch
under gradient accumulation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.weighting.base import StepContext, Weighting, active_flags, masked_softmax


@WEIGHTINGS.register("rlw")
class RLW(Weighting):
    """Random loss weights ``softmax(N(0, I))`` over the labelled tasks, redrawn every step (Lin et al., 2022)."""

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, mode: str | None = None) -> None:
        super().__init__(tasks, mode=mode)
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        names = list(losses)
        device = next(iter(losses.values())).device
        draw = torch.randn(len(self.task_names), generator=self.generator)
        draw = draw[[self.task_names.index(n) for n in names]].to(device, non_blocking=True)
        w = masked_softmax(draw, active_flags(ctx, names, device))
        return {n: w[i] for i, n in enumerate(names)}
