"""Binary classification: one logit per row, BCE-with-logits, AUC and logloss (and accuracy at a
threshold when one is set); predicts P(y=1)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.errors import DataError
from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric, TaskKind
from polytask.tasks.scores import auroc
from polytask.tasks.task import Task

_TRUTH = {"0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0, "0.0": 0.0, "1.0": 1.0}


def auc(output: Tensor, label: Tensor) -> float:
    """ROC AUC of logits ``output`` against 0/1 ``label`` (NaN when one class is absent)."""
    return auroc(output.float(), label)


def logloss(output: Tensor, label: Tensor) -> float:
    return float(F.binary_cross_entropy_with_logits(output.float(), label.float()))


def accuracy_at(threshold: float):
    """Accuracy of ``P(y=1) >= threshold`` against 0/1 labels, as a metric function of logits."""

    def accuracy(output: Tensor, label: Tensor) -> float:
        if label.numel() == 0:
            return float("nan")
        return float(((torch.sigmoid(output.float()) >= threshold).float() == label.float()).float().mean())

    return accuracy


def binary_values(col: pa.ChunkedArray, *, source: str, column: str, hint: str) -> np.ndarray:
    """A 0/1 label column (numbers, booleans or "0"/"1"/"true"/"false" strings) -> float64 with
    NaN for missing values; any other value stops with an error naming file, column and row."""
    from polytask.data.encoders import _is_string, to_float

    if _is_string(col.type):
        s = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(col, pa.string()) if not pa.types.is_dictionary(col.type)
                                                  else pc.cast(col, col.type.value_type)))
        values = s.to_pylist()
        x = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            if v is None or v == "":
                x[i] = np.nan
            elif v in _TRUTH:
                x[i] = _TRUTH[v]
            else:
                raise DataError(f"{source}: binary label column {column!r} holds {v!r} at row {i}; labels must be 0/1{hint}")
    else:
        x = to_float(col, source=source, column=column)
    labelled = ~np.isnan(x)
    bad = labelled & (x != 0) & (x != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: binary label column {column!r} holds {x[row]:g} at row {row}; labels must be 0 or 1")
    return x


@TASK_KINDS.register("binary")
class Binary(TaskKind):
    """Binary classification: one logit, BCE-with-logits, AUC and logloss; predicts P(y=1).

    Args:
        positive: when the label column holds strings, the value meaning 1 (every other
            non-empty value is 0).
        threshold: also report ``accuracy`` of ``P(y=1) >= threshold`` (e.g. 0.5 for a balanced
            task such as UTKFace's gender); unset, only the threshold-free AUC and logloss.
    """

    name = "binary"

    def __init__(self, *, positive: str | int | float | bool | None = None, threshold: float | None = None) -> None:
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")
        self.positive = positive
        self.threshold = threshold

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.positive is None else {"positive": self.positive}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        from polytask.data.encoders import to_strings

        col = table.column(task.label)
        if self.positive is not None:
            s = to_strings(col)
            mask = pc.is_valid(s).to_numpy(zero_copy_only=False)
            y = pc.fill_null(pc.equal(s, str(self.positive)), False).to_numpy(zero_copy_only=False)
            return y.astype(np.float32), mask.astype(bool)
        x = binary_values(col, source=source, column=task.label, hint=f" (or set positive: <value> on task {task.name!r})")
        mask = ~np.isnan(x)
        return np.where(mask, x, 0.0).astype(np.float32), mask

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output.float(), label.float(), reduction="none")

    def metrics(self) -> tuple[Metric, ...]:
        out = (Metric("auc", True, auc), Metric("logloss", False, logloss))
        if self.threshold is not None:
            out += (Metric("accuracy", True, accuracy_at(self.threshold)),)
        return out

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())
