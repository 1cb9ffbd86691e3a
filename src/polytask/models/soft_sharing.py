"""Soft parameter sharing, L2-constrained (Duong et al., ACL 2015; the MMoE paper's baseline).

One network per task with the same architecture (own input embeddings, own hidden layers); the
objective adds ``alpha * sum_{i<j} ||theta_i - theta_j||^2`` over corresponding parameters of
every pair of task networks, reported by :meth:`regularization` so the log shows it as its own
term. With parameters stacked on a task axis the pairwise sum is computed in closed form:
``sum_{i<j} ||a_i - a_j||^2 = T * sum_i ||a_i - mean(a)||^2``.

The task networks are any registered column family (``columns: mlp | cnn | lstm``, see
:mod:`polytask.nn.columns`); the penalty runs over the family's stacked parameters (inputs,
layers and read-out of every column) and the task towers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.columns import build_columns
from polytask.registry import MODELS
from polytask.tasks import Task


def pairwise_sq_distance(stacked: Tensor) -> Tensor:
    """``sum_{i<j} ||x_i - x_j||^2`` for ``stacked = [T, ...]`` (task axis first)."""
    t = stacked.shape[0]
    flat = stacked.reshape(t, -1)
    return t * (flat - flat.mean(dim=0, keepdim=True)).square().sum()


@MODELS.register("soft_sharing")
class SoftSharing(MultiTaskModel):
    """Per-task networks tied by an L2 penalty on the distance of their parameters (Duong et al., 2015)."""

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        alpha: float = 1e-3,
        hidden: list[int] = [64],  # noqa: B006
        tower_hidden: list[int] = [8],  # noqa: B006
        columns: str = "mlp",
        column_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        embedding_dim: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        self.alpha = alpha
        family = build_columns(self, columns, hidden, encoder=encoder, encoder_params=encoder_params,
                               embedding_dim=embedding_dim, act=activation, dropout=dropout, params=column_params)
        self.inputs = family.release_inputs()  # mlp: per-task encoders, named inputs.* as before families
        self.columns = family
        self.heads = TaskHeads(tasks, family.out_dim, tower_hidden, act=activation, dropout=dropout)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.read_out(self.heads(self.columns(features)), features)

    def stacked_parameters(self) -> list[Tensor]:
        """Corresponding parameters of all task networks, each stacked on a leading task axis (the
        output layers are left out: tasks of different kinds give them different meanings)."""
        return self.columns.stacked_parameters() + list(self.heads.towers.parameters())

    def regularization(self) -> dict[str, Tensor]:
        if self.alpha == 0 or len(self.task_names) < 2:
            return {}
        penalty = sum(pairwise_sq_distance(p) for p in self.stacked_parameters())
        return {"soft_sharing_l2": self.alpha * penalty}
