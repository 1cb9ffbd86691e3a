"""Soft parameter sharing, L2-constrained (Duong et al., ACL 2015; the MMoE paper's baseline).

One network per task with the same architecture (own input embeddings, own hidden layers); the
objective adds ``alpha * sum_{i<j} ||theta_i - theta_j||^2`` over corresponding parameters of
every pair of task networks, reported by :meth:`regularization` so the log shows it as its own
term. With parameters stacked on a task axis the pairwise sum is computed in closed form:
``sum_{i<j} ||a_i - a_j||^2 = T * sum_i ||a_i - mean(a)||^2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.data.schema import InputSpec
from polytask.encoders import PerTaskInputs
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.columns import TaskColumns
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
        embedding_dim: int = 4,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        self.alpha = alpha
        self.inputs = PerTaskInputs(input_spec, len(tasks), embedding_dim)
        self.columns = TaskColumns(len(tasks), self.inputs.out_dim, hidden, act=activation, dropout=dropout)
        self.heads = TaskHeads(tasks, self.columns.out_dim, tower_hidden, act=activation, dropout=dropout)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.inputs(features)  # [T, B, in]
        return self.heads(self.columns(x))

    def stacked_parameters(self) -> list[Tensor]:
        """Corresponding parameters of all task networks, each stacked on a leading task axis (the
        output layers are left out: tasks of different kinds give them different meanings)."""
        stacked = [p for p in self.columns.parameters()] + [p for p in self.heads.towers.parameters()]
        per_task_inputs = [list(inp.parameters()) for inp in self.inputs]
        stacked += [torch.stack(group) for group in zip(*per_task_inputs)]
        return stacked

    def regularization(self) -> dict[str, Tensor]:
        if self.alpha == 0 or len(self.task_names) < 2:
            return {}
        penalty = sum(pairwise_sq_distance(p) for p in self.stacked_parameters())
        return {"soft_sharing_l2": self.alpha * penalty}
