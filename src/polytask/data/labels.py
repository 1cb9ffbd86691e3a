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
from polytask.data.encoders import check_finite, to_float
from polytask.errors import DataError
from polytask.tasks import Task

#: the column a multi-source run (``data.sources``) adds to its tables: which source a row is from
SOURCE_COLUMN = "_source"


def check_finite_labels(task: Task, label: np.ndarray, mask: np.ndarray, source: str) -> None:
    """Refuse a labelled element that is not finite (inf in a regression target, a relevance, ...),
    naming the column and row. Run on every kind's encoded labels, so a new kind is covered."""
    if not np.issubdtype(label.dtype, np.floating) or np.isfinite(label).all():
        return
    m = mask.astype(bool)
    if m.ndim > label.ndim:
        return
    m = m.reshape(m.shape + (1,) * (label.ndim - m.ndim))
    bad = ~np.isfinite(label) & m
    if not bad.any():
        return
    idx = np.argwhere(bad)[0]
    row = int(idx[0])
    columns = task.label_columns()
    column = columns[int(idx[1])] if label.ndim == 2 and len(columns) == label.shape[1] else task.label
    raise DataError(
        f"{source}: label column {column!r} of task {task.name!r} holds {label[tuple(idx)]:g} at row {row}; "
        "labels must be finite (leave the cell empty for a missing label)",
        row=row,
    )


class LabelEncoder:
    """Encodes one task's labels (its kind fits label-side state, e.g. classes, on train)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def fit(self, table: pa.Table, source: str) -> LabelEncoder:
        """Fit the kind's label state (classes, target scaling) on the training rows; in a
        multi-source run on the task's own source's rows only (another source's rows may hold
        a column of the same name that means something else)."""
        if self.task.source is not None and SOURCE_COLUMN in table.column_names:
            import pyarrow.compute as pc

            table = table.filter(pc.fill_null(pc.equal(table.column(SOURCE_COLUMN), self.task.source), False))
        self.task.spec.fit(table, self.task, source)
        return self

    def encode_parts(self, table: pa.Table, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(label, kind mask, where (per row, None without a condition), weight)``, checked."""
        task = self.task
        label, mask = task.spec.encode(table, task, source)
        check_finite_labels(task, label, mask, source)
        inside = evaluate_condition(table, task.where, source) if task.where else None
        if task.source is not None and SOURCE_COLUMN in table.column_names:
            import pyarrow.compute as pc

            own = pc.fill_null(pc.equal(table.column(SOURCE_COLUMN), task.source), False)
            own = own.to_numpy(zero_copy_only=False).astype(bool)
            inside = own if inside is None else inside & own
        weight = None
        if task.weight_column:
            w = to_float(table.column(task.weight_column), source=source, column=task.weight_column)
            if not np.isfinite(w).all():
                check_finite(w, source=source, column=task.weight_column, what="weight column")
            negative = w < 0
            if negative.any():
                row = int(np.flatnonzero(negative)[0])
                raise DataError(
                    f"{source}: weight column {task.weight_column!r} has negative values (row {row}: {w[row]:g})", row=row
                )
            weight = np.nan_to_num(w, nan=0.0).astype(np.float32)
        return label, mask, inside, weight

    def encode(self, table: pa.Table, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        label, mask, inside, weight = self.encode_parts(table, source)
        if inside is not None:
            mask = mask & inside.reshape(inside.shape + (1,) * (mask.ndim - 1))
        return label, mask, weight
