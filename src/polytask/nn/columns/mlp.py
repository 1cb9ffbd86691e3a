"""The ``mlp`` column family: one MLP per task over per-task input encoders, run as ``[T, N, C]``.

Each layer of all T columns is one :class:`~polytask.nn.experts.ParallelLinear` (weights
``[T, in, out]``), so the columns cost one batched matmul per layer. The stem is a
:class:`~polytask.encoders.PerTaskInputs` with any registered input encoder; an encoder over a
text feature gives token rows (``N = B * (L + 1)``), which the layers treat like any other rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import PerTaskInputs
from polytask.nn.columns.base import ColumnFamily, stack_modules
from polytask.nn.experts import ParallelLinear
from polytask.nn.mlp import activation
from polytask.registry import COLUMNS


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


def column_layers(num_tasks: int, in_dim: int, hidden: Sequence[int], *, act: str = "relu",
                  dropout: float = 0.0) -> nn.ModuleList:
    """``len(hidden)`` :class:`ColumnLayer` s, each as wide as the next entry of ``hidden``."""
    widths = [in_dim, *hidden]
    return nn.ModuleList(ColumnLayer(num_tasks, a, b, act=act, dropout=dropout) for a, b in zip(widths, widths[1:]))


class TaskColumns(nn.Module):
    """``len(hidden)`` column layers over a given ``[T, B, in_dim]`` input (no stem, no read-out);
    ``layers[i]`` can be run one at a time so units can sit between them."""

    def __init__(self, num_tasks: int, in_dim: int, hidden: Sequence[int], *, act: str = "relu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = column_layers(num_tasks, in_dim, hidden, act=act, dropout=dropout)
        self.num_tasks = num_tasks
        self.out_dim = hidden[-1] if hidden else in_dim

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


@COLUMNS.register("mlp")
class MLPColumns(ColumnFamily):
    """Per-task MLP columns over per-task input encoders (any registered encoder).

    Args:
        spec: the input spec.
        num_tasks: T.
        hidden: width of each layer.
        embedding_dim, encoder, encoder_params: the per-task input encoders (see
            :func:`polytask.encoders.make_input`).
        act, dropout: after every layer.
    """

    channel_dim = 2

    def __init__(
        self,
        spec: InputSpec,
        num_tasks: int,
        hidden: list[int],
        *,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: Mapping[str, Any] | None = None,
        act: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_tasks)
        self.inputs = PerTaskInputs(spec, num_tasks, embedding_dim, encoder, encoder_params)
        self.layers = column_layers(num_tasks, self.inputs.out_dim, hidden, act=act, dropout=dropout)
        self.widths = list(hidden)
        self.out_dim = hidden[-1] if hidden else self.inputs.out_dim
        self.position_feature = self.inputs.position_feature

    def stem(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.inputs(features)  # [T, N, in]

    def read_out(self, h: Tensor, features: Mapping[str, Tensor]) -> Tensor:
        return h  # already rows [T, N, C]

    def layer_weights(self, i: int) -> Tensor:
        return self.layers[i].linear.weight  # [T, in, out]

    def stacked_parameters(self) -> list[Tensor]:
        return list(self.layers.parameters()) + stack_modules(self.inputs)
