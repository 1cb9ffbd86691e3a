"""Multi-label classification: K independent binary labels in one task (one logit each).

The labels come either from K 0/1 columns (``labels: [a, b, c]``; a missing value masks only that
element) or from one column holding, per row, the list of label names that apply (a list column
or a string joined by ``separator``; the names are fitted on the training split, a missing row
masks the whole row, an empty one means "none applies").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.errors import ConfigError, DataError
from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric, TaskKind
from polytask.tasks.scores import auroc
from polytask.tasks.binary import binary_values
from polytask.tasks.multiclass import class_ids
from polytask.tasks.tagging import split_lists
from polytask.tasks.task import Task

if TYPE_CHECKING:
    from polytask.data.schema import FeatureSpec


def mean_auc(output: Tensor, label: Tensor) -> float:
    """Mean over labels of the ROC AUC on that label's labelled rows (``label`` NaN elsewhere);
    labels with a single class there are skipped; NaN when none is left."""
    aucs = []
    for k in range(label.shape[1]):
        seen = ~torch.isnan(label[:, k])
        y = label[seen, k]
        if y.numel() and y.min() != y.max():
            aucs.append(auroc(output[seen, k].float(), y))
    return float(np.mean(aucs)) if aucs else float("nan")


def micro_f1(output: Tensor, label: Tensor) -> float:
    """F1 over every labelled element at probability 0.5 (logit 0); NaN with no positive label
    and no positive prediction."""
    seen = ~torch.isnan(label)
    pred, true = output[seen] >= 0, label[seen] == 1
    tp = int((pred & true).sum())
    wrong = int((pred ^ true).sum())  # false positives + false negatives
    return 2 * tp / (2 * tp + wrong) if tp or wrong else float("nan")


@TASK_KINDS.register("multilabel")
class Multilabel(TaskKind):
    """Multi-label classification: K binary labels, mean BCE over labelled elements, mean AUC and
    micro-F1; predicts the labels with probability >= 0.5.

    Args:
        labels: K 0/1 label columns (the task's ``label`` column is then not read). Without
            it the task's ``label`` column holds each row's label names.
        separator: the names in a string ``label`` column are joined by it.
        classes: the label names in output order (fitted on train if omitted; ``labels`` when set).
    """

    name = "multilabel"
    scalar_output = False

    def __init__(self, *, labels: list[str] | None = None, separator: str = "|", classes: list[str] | None = None) -> None:
        if labels is not None:
            if not labels:
                raise ValueError("labels must name at least one column")
            if len(set(labels)) != len(labels):
                raise ValueError(f"labels names a column twice: {labels}")
            if classes is not None and list(classes) != list(labels):
                raise ValueError("classes must equal labels when labels is set")
        if classes is not None and len(set(classes)) != len(classes):
            raise ValueError(f"classes names a label twice: {classes}")
        if not separator:
            raise ValueError("separator must not be empty")
        self.labels = list(labels) if labels is not None else None
        self.separator = separator
        self.classes = list(labels) if labels is not None else (list(classes) if classes is not None else None)

    def options(self) -> dict[str, Any]:
        if self.labels is not None:
            return {"labels": self.labels}
        out: dict[str, Any] = {"separator": self.separator}
        if self.classes is not None:
            out["classes"] = self.classes
        return out

    @property
    def output_dim(self) -> int:
        if not self.classes:
            raise ValueError("a multilabel task needs its label names (labels, classes, or fitted on the training labels)")
        return len(self.classes)

    def check_inputs(self, task: Task, features: Mapping[str, FeatureSpec]) -> None:
        clash = [c for c in self.label_columns(task) if c in features]
        if clash:
            raise ConfigError(f"task {task.name!r}: label column {clash[0]!r} is also declared as a feature")

    # -- labels -----------------------------------------------------------------------------
    def label_columns(self, task: Task) -> list[str]:
        return list(self.labels) if self.labels is not None else [task.label]

    def fit(self, table: pa.Table, task: Task, source: str) -> None:
        if self.classes is not None:
            return
        from polytask.data.encoders import to_strings

        lists, _ = split_lists(table.column(task.label), self.separator, source=source, column=task.label)
        names = sorted(v for v in pc.unique(to_strings(pc.list_flatten(lists))).to_pylist() if v not in (None, ""))
        if not names:
            raise DataError(f"{source}: label column {task.label!r} of task {task.name!r} names no label in training")
        self.classes = names

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        if self.labels is not None:
            x = np.stack([binary_values(table.column(c), source=source, column=c, hint="") for c in self.labels], axis=1)
            mask = ~np.isnan(x)
            return np.where(mask, x, 0.0).astype(np.float32), mask
        lists, present = split_lists(table.column(task.label), self.separator, source=source, column=task.label)
        rows = pc.list_parent_indices(lists).to_numpy()
        ids, known = class_ids(pc.list_flatten(lists), self.classes or [], source=source, column=task.label, rows=rows)
        y = np.zeros((len(present), self.output_dim), dtype=np.float32)
        y[rows[known], ids[known]] = 1.0  # a null item inside a list names nothing
        mask = np.repeat(present[:, None], self.output_dim, axis=1)
        return y, mask

    # -- loss and metrics -------------------------------------------------------------------
    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output.float(), label.float(), reduction="none")

    def metrics(self) -> tuple[Metric, ...]:
        return (Metric("mean_auc", True, mean_auc), Metric("micro_f1", True, micro_f1))

    def mark_unlabelled(self, label: Tensor, keep: Tensor) -> Tensor:
        """Each metric receives ``[R, K]`` labels holding NaN at unlabelled elements."""
        return torch.where(keep, label.float(), torch.full_like(label.float(), float("nan")))

    # -- predictions ------------------------------------------------------------------------
    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    def prediction_columns(self, task: str, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """``<task>``: the names with probability >= 0.5 (a list per row); ``<task>_proba``: all K."""
        names = [str(c) for c in self.classes or []]
        chosen = [[names[j] for j in np.flatnonzero(p >= 0.5)] for p in prediction]
        return {
            task: pa.array(chosen, pa.list_(pa.string())),
            f"{task}_proba": pa.array(list(prediction.astype(np.float32)), pa.list_(pa.float32())),
        }
