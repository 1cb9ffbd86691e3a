"""Per-task towers and output layers, batched across tasks, returning ``{task: raw output}``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from polytask.nn.experts import ParallelLinear, ParallelMLP
from polytask.tasks import Task


class TaskHeads(nn.Module):
    """One tower (MLP of ``hidden`` sizes) and one output layer per task.

    Input: ``[B, d]`` (all tasks read the same representation) or ``[T, B, d]`` (one per task).
    The output layers of all tasks are one ``ParallelLinear`` as wide as the widest task; each task
    keeps its own first ``output_dim`` columns. Kinds with a scalar output (binary, regression)
    give ``[B]``, the others ``[B, C]``.
    """

    def __init__(self, tasks: Sequence[Task], in_dim: int, hidden: Sequence[int] = (), *, act: str = "relu",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.names = [t.name for t in tasks]
        self.dims = [t.output_dim for t in tasks]
        self.scalar = [t.spec.scalar_output for t in tasks]
        self.towers = ParallelMLP(len(tasks), in_dim, hidden, act=act, dropout=dropout)
        self.out = ParallelLinear(len(tasks), self.towers.out_dim, max(self.dims))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        y = self.out(self.towers(x))  # [T, B, max_dim]
        return {
            name: (y[i, :, 0] if scalar else y[i, :, :dim])
            for i, (name, dim, scalar) in enumerate(zip(self.names, self.dims, self.scalar))
        }
