"""Per-task columns: T networks of identical shape run side by side as ``[T, B, ...]`` tensors.

Sharing structures that act *between* layers of per-task networks (cross-stitch and sluice
units, soft sharing's parameter distance) are written against this interface, not against MLPs:
a column layer maps ``[T, B, in] -> [T, B, out]`` and keeps the parameters of all tasks stacked
on a leading task axis. The MLP columns here use ``ParallelLinear``; convolutional or recurrent
columns can provide the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from polytask.nn.experts import ParallelLinear
from polytask.nn.mlp import activation


class ColumnLayer(nn.Module):
    """One layer of every task's column: a linear map per task, then the activation (and dropout)."""

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, *, act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = ParallelLinear(num_tasks, in_dim, out_dim)
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.act(self.linear(x)))


class TaskColumns(nn.Module):
    """``len(hidden)`` column layers; ``layers[i]`` can be run one at a time so units can sit between them."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: Sequence[int], *, act: str = "relu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers, width = [], in_dim
        for h in hidden:
            layers.append(ColumnLayer(num_tasks, width, h, act=act, dropout=dropout))
            width = h
        self.layers = nn.ModuleList(layers)
        self.num_tasks = num_tasks
        self.out_dim = width

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
