"""Regression: one output per row, mean squared error; RMSE and MAE.

Targets are standardised by default (``standardize: true``): :meth:`Regression.fit` learns the
mean and standard deviation of the training split's labelled values, :meth:`Regression.encode`
gives labels in standard units, so the loss (and the uncertainty weighting's Gaussian
likelihood) works on a target of unit scale whatever its units. The model's raw output is in
standard units too; :meth:`Regression.predict` maps it back to the target's units, and
:meth:`Regression.compute_metrics` maps output and label back, so RMSE and MAE are in the
target's units. The fitted ``mean``/``std`` are saved with the task (:meth:`options`); a run saved
before standardisation (no ``mean``) trains, predicts and reports in raw units as it did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from torch import Tensor

from polytask.errors import DataError
from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric, TaskKind
from polytask.tasks.task import Task


def rmse(output: Tensor, label: Tensor) -> float:
    return float((output.float() - label.float()).square().mean().sqrt())


def mae(output: Tensor, label: Tensor) -> float:
    return float((output.float() - label.float()).abs().mean())


@TASK_KINDS.register("regression")
class Regression(TaskKind):
    """Regression: one output, mean squared error, RMSE and MAE.

    Args:
        standardize: train on ``(y - mean) / std`` with the training split's mean and standard
            deviation (predictions and metrics stay in the target's units).
        mean, std: the fitted standardisation (set by :meth:`fit` and saved with the run; not
            meant to be written by hand).
    """

    name = "regression"
    uncertainty_factor = 0.5  # Gaussian likelihood: exp(-s)/2 * MSE + s/2

    def __init__(self, *, standardize: bool = True, mean: float | None = None, std: float | None = None) -> None:
        if (mean is None) != (std is None):
            raise ValueError("mean and std are set together")
        if std is not None and not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.standardize = standardize
        self.mean = mean
        self.std = std

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"standardize": self.standardize}
        if self.mean is not None:
            out.update(mean=self.mean, std=self.std)
        return out

    @property
    def scaled(self) -> bool:
        return self.mean is not None

    def _raw(self, table: pa.Table, task: Task, source: str) -> np.ndarray:
        from polytask.data.encoders import to_float

        return to_float(table.column(task.label), source=source, column=task.label)

    def fit(self, table: pa.Table, task: Task, source: str) -> None:
        if not self.standardize:
            self.mean = self.std = None
            return
        x = self._raw(table, task, source)
        seen = x[np.isfinite(x)]  # inf is refused when the labels are encoded
        if seen.size == 0:
            self.mean = self.std = None  # nothing to fit: the preprocessor refuses the task
            return
        mean, std = float(seen.mean()), float(seen.std())
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise DataError(f"{source}: label column {task.label!r} of task {task.name!r} holds values too large to standardise")
        self.mean, self.std = mean, (std if std > 0 else 1.0)

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        x = self._raw(table, task, source)
        mask = ~np.isnan(x)
        if self.scaled:
            x = (x - self.mean) / self.std
        return np.where(mask, x, 0.0).astype(np.float32), mask

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return (output.float() - label.float()).square()

    def metrics(self) -> tuple[Metric, ...]:
        return (Metric("rmse", False, rmse), Metric("mae", False, mae))

    def _to_units(self, x: Tensor) -> Tensor:
        return x.float() * self.std + self.mean if self.scaled else x

    def compute_metrics(self, output: Tensor, label: Tensor, mask: Tensor) -> dict[str, float]:
        """Metrics in the target's units: output and label mapped back from standard units."""
        return super().compute_metrics(self._to_units(output), self._to_units(label), mask)

    def predict(self, output: Tensor) -> Tensor:
        return self._to_units(output)
