"""Tasks: what is predicted, how it is scored, and which rows carry a label.

A task has a *kind* (binary, regression, multiclass); the kind decides the output width, the
default loss, the metrics and how raw outputs become predictions. Every loss here is *masked*:
rows whose mask is False (a missing label, or a row outside the task's sample space such as CVR
on unclicked impressions) contribute nothing, and the loss is normalised by the (weighted)
number of labelled rows only. A batch in which a task has no labelled row gives that task a
loss of exactly zero, still attached to the graph, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of ``values`` over rows where ``mask`` is True, optionally weighted per row.

    Rows outside the mask are zeroed with ``where`` (so a NaN or inf computed for an unlabelled
    row cannot leak), and the denominator is clamped so an empty mask yields 0, not NaN.
    """
    w = mask.to(values.dtype)
    if weight is not None:
        w = w * weight.to(values.dtype)
    total = torch.where(mask, values * w, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / w.sum().clamp_min(torch.finfo(values.dtype).tiny)


class TaskKind:
    """Behaviour shared by all tasks of one kind. Subclasses are registered in :data:`TASK_KINDS`."""

    name: ClassVar[str]
    #: metric names, the first is the primary one (used by default for early stopping)
    metrics: ClassVar[tuple[str, ...]]
    #: dtype labels are stored in
    label_dtype: ClassVar[torch.dtype] = torch.float32

    def output_dim(self, num_classes: int | None) -> int:
        return 1

    def loss(self, output: Tensor, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        # Replace what unlabelled rows hold (a NaN/inf/-1 placeholder label, a non-finite output or
        # weight) *before* the elementwise loss: masking only afterwards keeps the forward finite
        # but the backward multiplies 0 by the NaN local derivative, giving NaN gradients.
        mask = mask.bool()
        row = mask.reshape(mask.shape + (1,) * (output.dim() - mask.dim()))
        output = torch.where(row, output, output.new_zeros(()))
        label = torch.where(mask, label, label.new_zeros(()))
        if weight is not None:
            weight = torch.where(mask, weight, weight.new_zeros(()))
        return masked_mean(self.elementwise_loss(output, label, mask), mask, weight)

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, output: Tensor) -> Tensor:
        """Raw model output -> the prediction a user wants (probability, value, class scores)."""
        return output


class Binary(TaskKind):
    """Binary classification: one logit, BCE-with-logits, AUC and logloss; predicts P(y=1)."""

    name = "binary"
    metrics = ("auc", "logloss")

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output.float(), label.float(), reduction="none")

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())


class Regression(TaskKind):
    """Regression: one output, mean squared error, RMSE and MAE."""

    name = "regression"
    metrics = ("rmse", "mae")

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return (output.float() - label.float()).square()


class Multiclass(TaskKind):
    """Multiclass classification: C logits, cross-entropy, accuracy and macro-F1; predicts class probabilities."""

    name = "multiclass"
    metrics = ("accuracy", "macro_f1")
    label_dtype = torch.int64

    def output_dim(self, num_classes: int | None) -> int:
        if not num_classes or num_classes < 2:
            raise ValueError("a multiclass task needs num_classes >= 2")
        return num_classes

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        # unlabelled rows hold class 0 (a valid index), and are removed by the mask afterwards
        return F.cross_entropy(output.float(), label.long(), reduction="none")

    def predict(self, output: Tensor) -> Tensor:
        return torch.softmax(output.float(), dim=-1)


TASK_KINDS: dict[str, TaskKind] = {k.name: k() for k in (Binary, Regression, Multiclass)}


@dataclass
class Task:
    """One prediction target.

    Args:
        name: the task's name (output key, column name in predictions, metric prefix).
        kind: ``binary``, ``regression`` or ``multiclass``.
        label: the label column (defaults to ``name``).
        num_classes: classes of a multiclass task (inferred from the training labels if omitted).
        where: sample-space condition on other columns, e.g. ``"click == 1"``; rows where it is
            false are masked out of this task's loss and metrics.
        weight: fixed loss weight used by the ``fixed`` weighting (default 1).
        weight_column: per-row sample weights for this task's loss.
        positive: for a binary task whose label column holds strings, the value meaning 1.
        classes: for a multiclass task, the label values in class-index order (fitted on train).
    """

    name: str
    kind: str = "binary"
    label: str | None = None
    num_classes: int | None = None
    where: str | None = None
    weight: float = 1.0
    weight_column: str | None = None
    positive: Any = None
    classes: list[Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}; known: {', '.join(TASK_KINDS)}")
        if self.label is None:
            self.label = self.name

    @property
    def spec(self) -> TaskKind:
        return TASK_KINDS[self.kind]

    @property
    def output_dim(self) -> int:
        return self.spec.output_dim(self.num_classes)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.spec.metrics

    def loss(self, output: Tensor, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.spec.loss(output, label, mask, weight)

    def per_example_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        """``[B]`` unweighted loss of every row, NaN where the row is unlabelled."""
        mask = mask.bool()
        row = mask.reshape(mask.shape + (1,) * (output.dim() - mask.dim()))
        output = torch.where(row, output, output.new_zeros(()))
        label = torch.where(mask, label, label.new_zeros(()))
        loss = self.spec.elementwise_loss(output, label, mask).float()
        return torch.where(mask, loss, torch.full_like(loss, float("nan")))

    def predict(self, output: Tensor) -> Tensor:
        return self.spec.predict(output)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}
