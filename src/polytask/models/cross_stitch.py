"""Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016).

One column per task; after chosen layers a learned T x T unit mixes the tasks' activations,
``h~_t = sum_s alpha[t, s] h_s`` (one unit per layer, or one per channel). Initialised as in the
paper's best setting: 0.9 on the diagonal (same task) and 0.1 spread over the other tasks; the
units learn with their own learning-rate multiplier (the paper found 10^2-10^3 best).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders import PerTaskInputs
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.columns import TaskColumns
from polytask.registry import MODELS
from polytask.tasks import Task


class CrossStitchUnit(nn.Module):
    """``alpha`` of shape ``[T, T]`` (per layer) or ``[C, T, T]`` (per channel) applied to ``[T, B, C]``."""

    def __init__(self, num_tasks: int, channels: int, *, per_channel: bool = False, same: float = 0.9) -> None:
        super().__init__()
        other = (1.0 - same) / (num_tasks - 1) if num_tasks > 1 else 0.0
        init = torch.full((num_tasks, num_tasks), other)
        init.fill_diagonal_(same if num_tasks > 1 else 1.0)
        self.per_channel = per_channel
        self.alpha = nn.Parameter(init.expand(channels, -1, -1).clone() if per_channel else init)

    def forward(self, h: Tensor) -> Tensor:
        if self.per_channel:
            return torch.einsum("cts,sbc->tbc", self.alpha, h)
        return torch.einsum("ts,sbc->tbc", self.alpha, h)


@MODELS.register("cross_stitch")
class CrossStitch(MultiTaskModel):
    """Per-task columns joined by learned cross-stitch units after their layers (Misra et al., CVPR 2016)."""
    has_shared_representation = False  # per-task columns mixed by the units: no one tensor all tasks read

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        hidden: list[int] = [64, 32],  # noqa: B006
        tower_hidden: list[int] = [8],  # noqa: B006
        stitch_after: list[int] | None = None,
        per_channel: bool = False,
        same_task_init: float = 0.9,
        stitch_lr_scale: float = 100.0,
        embedding_dim: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        self.inputs = PerTaskInputs(input_spec, len(tasks), embedding_dim)
        self.columns = TaskColumns(len(tasks), self.inputs.out_dim, hidden, act=activation, dropout=dropout)
        positions = list(range(len(hidden))) if stitch_after is None else list(stitch_after)
        bad = [i for i in positions if not 0 <= i < len(hidden)]
        if bad:
            raise ValueError(f"stitch_after: layer index {bad[0]} out of range (the columns have {len(hidden)} layers)")
        self.units = nn.ModuleDict(
            {str(i): CrossStitchUnit(len(tasks), hidden[i], per_channel=per_channel, same=same_task_init)
             for i in positions}
        )
        self.stitch_lr_scale = stitch_lr_scale
        self.heads = TaskHeads(tasks, self.columns.out_dim, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        return [self.units]

    def optimizer_groups(self) -> list[dict[str, Any]]:
        unit_ids = {id(p) for p in self.units.parameters()}
        rest = [p for p in self.parameters() if id(p) not in unit_ids]
        return [{"params": rest}, {"params": list(self.units.parameters()), "lr_scale": self.stitch_lr_scale}]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.inputs(features)  # [T, B, in]
        for i, layer in enumerate(self.columns.layers):
            h = layer(h)
            unit = self.units[str(i)] if str(i) in self.units else None
            if unit is not None:
                h = unit(h)
        return self.heads(h)

    def diagnostics(self) -> dict[str, Any]:
        """The learned mixing matrices (per-channel units averaged over channels)."""
        return {"cross_stitch": {i: (u.alpha.mean(0) if u.per_channel else u.alpha).detach().tolist()
                                 for i, u in self.units.items()}}
