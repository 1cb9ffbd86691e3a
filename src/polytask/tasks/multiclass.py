"""Multiclass classification: C logits per row, cross-entropy, accuracy and macro-F1."""

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
from polytask.tasks.scores import accuracy, macro_f1
from polytask.tasks.task import Task


def fit_classes(col: pa.ChunkedArray, num_classes: int | None, *, source: str, column: str, task: str) -> list[Any]:
    """The sorted distinct label values of a training column (integer ids ``0..num_classes-1``
    all kept when the column holds such ids and ``num_classes`` is declared)."""
    from polytask.data.encoders import _is_string, to_float, to_strings

    if _is_string(col.type):
        values = sorted(v for v in pc.unique(to_strings(col)).to_pylist() if v is not None)
    else:
        x = to_float(col, source=source, column=column)
        values = [int(v) if float(v).is_integer() else float(v) for v in np.unique(x[~np.isnan(x)])]
        if num_classes and all(isinstance(v, int) and 0 <= v < num_classes for v in values):
            # integer class ids with a declared class count: keep every class, even one absent
            # from the training split
            values = list(range(num_classes))
    if num_classes and len(values) != num_classes:
        raise DataError(
            f"{source}: task {task!r} declares num_classes={num_classes} but label column "
            f"{column!r} holds {len(values)} distinct values in training"
        )
    if len(values) < 2:
        raise DataError(f"{source}: label column {column!r} of task {task!r} has fewer than 2 classes")
    return values


def class_ids(
    col: pa.ChunkedArray | pa.Array, classes: list[Any], *, source: str, column: str, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Label values -> class indices and a mask (False where missing); a value not among
    ``classes`` stops with an error naming the file, column and row (``rows[i]`` is the table row
    of value ``i`` when the values are the flattened items of a list column)."""
    from polytask.data.encoders import to_strings

    s = to_strings(col)
    idx = pc.index_in(s, value_set=pa.array([str(c) for c in classes], pa.string()))
    present = pc.is_valid(s).to_numpy(zero_copy_only=False)
    known = pc.is_valid(idx).to_numpy(zero_copy_only=False)
    unknown = present & ~known
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        row = i if rows is None else int(rows[i])
        raise DataError(
            f"{source}: label column {column!r} holds {s[i].as_py()!r} at row {row}, "
            f"not among the classes seen in training ({len(classes)})"
        )
    return pc.fill_null(idx, 0).to_numpy(zero_copy_only=False).astype(np.int64), known.astype(bool)


class Classes(TaskKind):
    """Shared by kinds whose labels are one of C classes (fitted on train): options and width."""

    scalar_output = False
    label_dtype = torch.int64

    def __init__(self, *, num_classes: int | None = None, classes: list[Any] | None = None) -> None:
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if classes is not None and num_classes is not None and len(classes) != num_classes:
            raise ValueError(f"classes lists {len(classes)} values but num_classes is {num_classes}")
        self.classes = list(classes) if classes is not None else None
        self.num_classes = len(classes) if classes is not None else num_classes

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.num_classes is not None:
            out["num_classes"] = self.num_classes
        if self.classes is not None:
            out["classes"] = self.classes
        return out

    @property
    def output_dim(self) -> int:
        if not self.num_classes:
            raise ValueError(f"a {self.name} task needs num_classes (declared, or fitted on the training labels)")
        return self.num_classes

    def decode(self, class_index: np.ndarray) -> list[Any]:
        """Class indices -> the original label values."""
        classes = self.classes or list(range(self.output_dim))
        return [classes[i] for i in class_index]


@TASK_KINDS.register("multiclass")
class Multiclass(Classes):
    """Multiclass classification: C logits, cross-entropy, accuracy and macro-F1; predicts class probabilities.

    Args:
        num_classes: number of classes (inferred from the training labels if omitted).
        classes: the label values in class-index order (fitted on train if omitted).
    """

    name = "multiclass"

    def fit(self, table: pa.Table, task: Task, source: str) -> None:
        if self.classes is None:
            self.classes = fit_classes(table.column(task.label), self.num_classes, source=source, column=task.label,
                                       task=task.name)
            self.num_classes = len(self.classes)

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        return class_ids(table.column(task.label), self.classes or list(range(self.output_dim)), source=source,
                         column=task.label)

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        # unlabelled rows hold class 0 (a valid index), and are removed by the mask afterwards
        return F.cross_entropy(output.float(), label.long(), reduction="none")

    def metrics(self) -> tuple[Metric, ...]:
        def f1(o: Tensor, y: Tensor) -> float:
            return macro_f1(o, y, self.output_dim)

        return (Metric("accuracy", True, accuracy), Metric("macro_f1", True, f1))

    def predict(self, output: Tensor) -> Tensor:
        return torch.softmax(output.float(), dim=-1)

    def prediction_columns(self, task: str, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """The predicted class (as the original label value) and ``<task>_proba`` (all classes)."""
        return {
            task: pa.array(self.decode(prediction.argmax(1))),
            f"{task}_proba": pa.array(list(prediction.astype(np.float32)), pa.list_(pa.float32())),
        }
