"""Equal weighting: the plain sum of task losses (the "EW"/"LS" baseline of the MTL literature)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.weighting.base import StepContext, Weighting


@WEIGHTINGS.register("equal")
class Equal(Weighting):
    """Sum of task losses, every weight 1."""

    def weights(self, losses: Mapping[str, Tensor], ctx: StepContext | None = None) -> dict[str, Tensor]:
        one = torch.ones((), device=next(iter(losses.values())).device)
        return {name: one for name in losses}
