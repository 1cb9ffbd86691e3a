"""Label columns -> (label, mask, weight) arrays for one task.

The task's kind reads and validates its label column(s) (:meth:`TaskKind.encode`); this module
adds what every task has: the sample-space condition (``where``, false rows are masked out) and
per-row sample weights. Masked elements hold a harmless placeholder label (0) so a loss computed
on them is finite before the mask removes it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from polytask.data.conditions import evaluate_condition
from polytask.data.encoders import to_float
from polytask.errors import DataError
from polytask.tasks import Task


class LabelEncoder:
    """Encodes one task's labels (its kind fits label-side state, e.g. classes, on train)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def fit(self, table: pa.Table, source: str) -> LabelEncoder:
        self.task.spec.fit(table, self.task, source)
        return self

    def encode(self, table: pa.Table, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        task = self.task
        label, mask = task.spec.encode(table, task, source)
        if task.where:
            inside = evaluate_condition(table, task.where, source)
            mask = mask & inside.reshape(inside.shape + (1,) * (mask.ndim - 1))
        weight = None
        if task.weight_column:
            w = to_float(table.column(task.weight_column), source=source, column=task.weight_column)
            if (w[~np.isnan(w)] < 0).any():
                raise DataError(f"{source}: weight column {task.weight_column!r} has negative values")
            weight = np.nan_to_num(w, nan=0.0).astype(np.float32)
        return label, mask, weight
