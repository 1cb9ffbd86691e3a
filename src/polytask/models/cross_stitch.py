"""Cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016).

One column per task; after chosen layers a learned T x T unit mixes the tasks' activations,
``h~_t = sum_s alpha[t, s] h_s`` (one unit per layer, or one per channel). Initialised as in the
paper's best setting: 0.9 on the diagonal (same task) and 0.1 spread over the other tasks; the
units learn with their own learning-rate multiplier (the paper found 10^2-10^3 best).

The columns are any registered column family (``columns: mlp | cnn | lstm``, see
:mod:`polytask.nn.columns`): with ``cnn`` columns the units sit after each conv/pool block and,
per channel, mix every feature map of a channel as in the paper; with ``lstm`` columns they mix
per hidden unit at every position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.columns import build_columns
from polytask.registry import MODELS
from polytask.tasks import Task


class CrossStitchUnit(nn.Module):
    """``alpha`` of shape ``[T, T]`` (per layer) or ``[C, T, T]`` (per channel) applied to a layer
    output ``[T, B, ...]`` whose ``C`` channels lie on axis ``channel_dim``."""

    def __init__(self, num_tasks: int, channels: int, *, per_channel: bool = False, same: float = 0.9,
                 channel_dim: int = 2) -> None:
        super().__init__()
        other = (1.0 - same) / (num_tasks - 1) if num_tasks > 1 else 0.0
        init = torch.full((num_tasks, num_tasks), other)
        init.fill_diagonal_(same if num_tasks > 1 else 1.0)
        self.per_channel, self.channel_dim = per_channel, channel_dim
        self.alpha = nn.Parameter(init.expand(channels, -1, -1).clone() if per_channel else init)

    def forward(self, h: Tensor) -> Tensor:
        if self.per_channel:
            x = h.movedim(self.channel_dim, -1)  # [T, ..., C]
            return torch.einsum("cts,s...c->t...c", self.alpha, x).movedim(-1, self.channel_dim)
        return torch.einsum("ts,s...->t...", self.alpha, h)


@MODELS.register("cross_stitch")
class CrossStitch(MultiTaskModel):
    """Per-task columns joined by learned cross-stitch units after their layers (Misra et al., CVPR 2016).

    ``columns`` picks the column family (``mlp``, ``cnn`` or ``lstm``) and ``column_params`` its own
    settings; ``hidden`` is the width (channels) of each column layer. ``encoder``/``encoder_params``
    choose the per-task input encoders of ``mlp`` columns (the other families read their feature
    themselves).
    """
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
        columns: str = "mlp",
        column_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        embedding_dim: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        family = build_columns(self, columns, hidden, encoder=encoder, encoder_params=encoder_params,
                               embedding_dim=embedding_dim, act=activation, dropout=dropout, params=column_params)
        self.inputs = family.release_inputs()  # mlp: per-task encoders, named inputs.* as before families
        self.columns = family
        positions = list(range(len(hidden))) if stitch_after is None else list(stitch_after)
        bad = [i for i in positions if not 0 <= i < len(hidden)]
        if bad:
            raise ValueError(f"stitch_after: layer index {bad[0]} out of range (the columns have {len(hidden)} layers)")
        self.units = nn.ModuleDict(
            {str(i): CrossStitchUnit(len(tasks), family.widths[i], per_channel=per_channel, same=same_task_init,
                                     channel_dim=family.channel_dim)
             for i in positions}
        )
        self.stitch_lr_scale = stitch_lr_scale
        self.heads = TaskHeads(tasks, family.out_dim, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        return [self.units]

    def optimizer_groups(self) -> list[dict[str, Any]]:
        unit_ids = {id(p) for p in self.units.parameters()}
        rest = [p for p in self.parameters() if id(p) not in unit_ids]
        return [{"params": rest}, {"params": list(self.units.parameters()), "lr_scale": self.stitch_lr_scale}]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        h = self.columns.stem(features)  # [T, B, ...]
        for i in range(len(self.columns.layers)):
            h = self.columns.run_layer(i, h, features)
            if str(i) in self.units:
                h = self.units[str(i)](h)
        return self.read_out(self.heads(self.columns.read_out(h, features)), features)

    def diagnostics(self) -> dict[str, Any]:
        """The learned mixing matrices (per-channel units averaged over channels)."""
        return {"cross_stitch": {i: (u.alpha.mean(0) if u.per_channel else u.alpha).detach().tolist()
                                 for i, u in self.units.items()}}
