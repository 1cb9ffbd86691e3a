"""Label columns -> (label, mask, weight) arrays for one task.

The mask is False where the label is missing (null/NaN) or the row lies outside the task's sample
space (its ``where`` condition is false). Masked rows hold a harmless placeholder label (0) so a
loss computed on them is finite before the mask removes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.data.conditions import evaluate_condition
from polytask.data.encoders import _is_string, to_float, to_strings
from polytask.errors import DataError
from polytask.tasks import Task


class LabelEncoder:
    """Encodes one task's label column (and fits a multiclass task's classes on train)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def fit(self, table: pa.Table, source: str) -> LabelEncoder:
        task = self.task
        if task.kind == "multiclass" and task.classes is None:
            col = table.column(task.label)
            if _is_string(col.type):
                values = sorted(v for v in pc.unique(to_strings(col)).to_pylist() if v is not None)
            else:
                x = to_float(col, source=source, column=task.label)
                values = [int(v) if float(v).is_integer() else float(v) for v in np.unique(x[~np.isnan(x)])]
                if task.num_classes and all(isinstance(v, int) and 0 <= v < task.num_classes for v in values):
                    # integer class ids with a declared class count: keep every class, even one
                    # absent from the training split
                    values = list(range(task.num_classes))
            if task.num_classes and len(values) != task.num_classes:
                raise DataError(
                    f"{source}: task {task.name!r} declares num_classes={task.num_classes} but label column "
                    f"{task.label!r} holds {len(values)} distinct values in training"
                )
            if len(values) < 2:
                raise DataError(f"{source}: multiclass label column {task.label!r} has fewer than 2 classes")
            task.classes = values
            task.num_classes = len(values)
        return self

    def encode(self, table: pa.Table, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        task = self.task
        col = table.column(task.label)
        if task.kind == "binary":
            label, mask = self._binary(col, source)
        elif task.kind == "regression":
            x = to_float(col, source=source, column=task.label)
            mask = ~np.isnan(x)
            label = np.where(mask, x, 0.0).astype(np.float32)
        else:
            label, mask = self._multiclass(col, source)
        if task.where:
            mask &= evaluate_condition(table, task.where, source)
        weight = None
        if task.weight_column:
            w = to_float(table.column(task.weight_column), source=source, column=task.weight_column)
            if (w[~np.isnan(w)] < 0).any():
                raise DataError(f"{source}: weight column {task.weight_column!r} has negative values")
            weight = np.nan_to_num(w, nan=0.0).astype(np.float32)
        return label, mask, weight

    def _binary(self, col, source: str) -> tuple[np.ndarray, np.ndarray]:
        task = self.task
        if task.positive is not None:
            s = to_strings(col)
            mask = pc.is_valid(s).to_numpy(zero_copy_only=False)
            label = pc.fill_null(pc.equal(s, str(task.positive)), False).to_numpy(zero_copy_only=False)
            return label.astype(np.float32), mask.astype(bool)
        if _is_string(col.type):
            s = pc.utf8_lower(pc.utf8_trim_whitespace(to_strings(col)))
            mapping = {"0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0, "0.0": 0.0, "1.0": 1.0}
            values = s.to_pylist()
            x = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                if v is None or v == "":
                    x[i] = np.nan
                elif v in mapping:
                    x[i] = mapping[v]
                else:
                    raise DataError(
                        f"{source}: binary label column {task.label!r} holds {v!r} at row {i}; "
                        f"labels must be 0/1 (or set positive: <value> on task {task.name!r})"
                    )
        else:
            x = to_float(col, source=source, column=task.label)
        mask = ~np.isnan(x)
        bad = mask & (x != 0) & (x != 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: binary label column {task.label!r} holds {x[row]:g} at row {row}; labels must be 0 or 1"
            )
        return np.where(mask, x, 0.0).astype(np.float32), mask

    def _multiclass(self, col, source: str) -> tuple[np.ndarray, np.ndarray]:
        task = self.task
        classes = [str(c) for c in task.classes or []]
        s = to_strings(col)
        idx = pc.index_in(s, value_set=pa.array(classes, pa.string()))
        present = pc.is_valid(s).to_numpy(zero_copy_only=False)
        known = pc.is_valid(idx).to_numpy(zero_copy_only=False)
        unknown = present & ~known
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"{source}: multiclass label column {task.label!r} holds {s[row].as_py()!r} at row {row}, "
                f"not among the classes seen in training ({len(classes)})"
            )
        return pc.fill_null(idx, 0).to_numpy(zero_copy_only=False).astype(np.int64), known.astype(bool)

    def decode(self, class_index: np.ndarray) -> list[Any]:
        """Class indices -> original label values (multiclass)."""
        classes = self.task.classes or []
        return [classes[i] for i in class_index]
