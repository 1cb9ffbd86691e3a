"""Single-task baseline: one independent network per task (nothing shared).

It is the reference every multi-task model is compared with (Delta-m). Each task has its own
input embeddings and its own MLP; the networks are stacked and evaluated as one batched op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import ParallelMLP, TaskHeads
from polytask.registry import MODELS
from polytask.tasks import Task


@MODELS.register("single_task")
class SingleTask(MultiTaskModel):
    """Independent per-task networks (input embeddings, hidden layers, tower): the STL baseline.

    ``encoder``/``encoder_params`` pick each task's own input encoder (see :mod:`polytask.encoders`).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        hidden: list[int] = [64],  # noqa: B006 - read-only default, documented in the signature
        tower_hidden: list[int] = [],  # noqa: B006
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        self.inputs = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim, copies=len(tasks))
        in_dim = self.inputs.out_dim
        self.body = ParallelMLP(len(tasks), in_dim, hidden, act=activation, dropout=dropout)
        self.heads = TaskHeads(tasks, self.body.out_dim, tower_hidden, act=activation, dropout=dropout)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.inputs(features)  # [T, B, in]
        return self.read_out(self.heads(self.body(x)), features)
