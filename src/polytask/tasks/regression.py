"""Regression: one output per row, mean squared error; RMSE and MAE."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from torch import Tensor

from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric, TaskKind
from polytask.tasks.task import Task


def rmse(output: Tensor, label: Tensor) -> float:
    return float((output.float() - label.float()).square().mean().sqrt())


def mae(output: Tensor, label: Tensor) -> float:
    return float((output.float() - label.float()).abs().mean())


@TASK_KINDS.register("regression")
class Regression(TaskKind):
    """Regression: one output, mean squared error, RMSE and MAE."""

    name = "regression"
    uncertainty_factor = 0.5  # Gaussian likelihood: exp(-s)/2 * MSE + s/2

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        from polytask.data.encoders import to_float

        x = to_float(table.column(task.label), source=source, column=task.label)
        mask = ~np.isnan(x)
        return np.where(mask, x, 0.0).astype(np.float32), mask

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return (output.float() - label.float()).square()

    def metrics(self) -> tuple[Metric, ...]:
        return (Metric("rmse", False, rmse), Metric("mae", False, mae))
