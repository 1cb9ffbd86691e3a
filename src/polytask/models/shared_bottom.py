"""Shared-Bottom (hard parameter sharing; Caruana 1997, the MMoE paper's Eq. 1 baseline).

``y_k = h_k(f(x))``: one bottom network ``f`` shared by all tasks, one tower ``h_k`` per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import MLP, TaskHeads
from polytask.registry import MODELS
from polytask.tasks import Task


@MODELS.register("shared_bottom")
class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: a shared bottom MLP under one tower per task.

    ``encoder`` picks the input encoder (``tabular``, or ``cnn`` for an image feature) and
    ``encoder_params`` its settings (see :mod:`polytask.encoders`); the encoder is shared.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        bottom_hidden: list[int] = [113],  # noqa: B006 - parameter-matched to 8x16 MMoE at d=100
        tower_hidden: list[int] = [8],  # noqa: B006
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        self.bottom = MLP(self.input.out_dim, bottom_hidden, act=activation, dropout=dropout)
        self.heads = TaskHeads(tasks, self.bottom.out_dim, tower_hidden, act=activation, dropout=dropout)

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.bottom]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.read_out(self.heads(self.share(self.bottom(self.input(features)))), features)
