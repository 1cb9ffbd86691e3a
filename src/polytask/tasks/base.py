"""The task-kind contract: everything that depends on *what* a task predicts lives in its kind.

A :class:`TaskKind` instance belongs to one task and owns its kind-specific knowledge: which
columns hold the label and how they are validated and encoded (fitting, e.g., the class list on
the training split), the output width, the masked loss, the metrics (each carrying its
direction), how raw outputs become predictions and how predictions are written out. The trainer,
the data pipeline, the metrics layer and the weightings ask the kind; none of them compares kind
names. A new kind is one file with a ``@TASK_KINDS.register(...)`` class and its tests.

Masks have the shape of the label (``[N]`` for one label per row, ``[N, L]`` for one per token,
``[N, K]`` for several binary labels); an element whose mask is False contributes nothing to the
loss or the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import pyarrow as pa

    from polytask.data.schema import FeatureSpec
    from polytask.tasks.task import Task

#: one label per row, or one per token of a text feature (the model reads its token rows out)
LEVELS = ("row", "token")


def masked_mean(values: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of ``values`` over the elements where ``mask`` is True, optionally weighted per row.

    ``mask`` has the shape of ``values``; ``weight`` is per row (``[N]``) and broadcast over the
    remaining axes. Elements outside the mask are zeroed with ``where`` (so a NaN or inf computed
    for an unlabelled element cannot leak), and the denominator is clamped so an empty mask
    yields 0, not NaN.
    """
    w = mask.to(values.dtype)
    if weight is not None:
        w = w * weight.to(values.dtype).reshape(weight.shape + (1,) * (w.dim() - weight.dim()))
    total = torch.where(mask, values * w, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    return total / w.sum().clamp_min(torch.finfo(values.dtype).tiny)


@dataclass(frozen=True)
class Metric:
    """A named score of one task with its direction (early stopping and Delta-m ask it).

    ``fn(output, label)`` receives the labelled rows only (kinds with element masks pass what
    their :meth:`TaskKind.compute_metrics` selects) and returns a float (NaN where undefined).
    """

    name: str
    higher_is_better: bool
    fn: Callable[[Tensor, Tensor], float]


class TaskKind:
    """Base class of the registered task kinds; one instance per task (it holds fitted state).

    Subclasses set ``name`` (the config's ``kind:``), ``level``, ``label_dtype``,
    ``uncertainty_factor`` and implement :meth:`elementwise_loss`, :meth:`metrics` and, where
    the label is not one numeric column, :meth:`fit`/:meth:`encode`. Their constructor's keyword
    parameters are the task's kind-specific config keys (checked against the signature like
    every other component's), and :meth:`options` returns them (with fitted state) so a saved
    run rebuilds the same kind.
    """

    name: ClassVar[str]
    #: ``row``: one output per example; ``token``: one per token of a text feature
    level: ClassVar[str] = "row"
    #: dtype labels are stored in
    label_dtype: ClassVar[torch.dtype] = torch.float32
    #: the output is one number per row (``[B]``) rather than a vector (``[B, C]``)
    scalar_output: ClassVar[bool] = True
    #: Kendall et al. (CVPR 2018): 1 for a softmax/sigmoid likelihood, 1/2 for a Gaussian one
    uncertainty_factor: ClassVar[float] = 1.0
    #: constructor keywords of a representative instance (required options, and those that add
    #: metrics), so metric names and directions can be listed without a task (``polytask list``)
    example_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def example(cls) -> TaskKind:
        """A representative instance, built from :attr:`example_options`."""
        return cls(**cls.example_options)

    # -- configuration ----------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """Constructor keywords (including fitted state) that rebuild this kind; None left out."""
        return {}

    @property
    def output_dim(self) -> int:
        """Width of the model's raw output per row (or per token)."""
        return 1

    @property
    def token_feature(self) -> str | None:
        """For token-level kinds: the text feature whose tokens the labels follow."""
        return None

    def check_inputs(self, task: Task, features: Mapping[str, FeatureSpec]) -> None:
        """Check the declared input features this kind relies on (a token-level kind's text
        feature); a ConfigError naming the task and the feature otherwise."""

    # -- labels -----------------------------------------------------------------------------
    def label_columns(self, task: Task) -> list[str]:
        """The columns this kind reads for ``task``."""
        return [task.label]

    def fit(self, table: pa.Table, task: Task, source: str) -> None:
        """Learn label-side state (e.g. the class list) from the training split."""

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        """``(label, mask)`` arrays; masked elements hold a harmless placeholder (0)."""
        raise NotImplementedError

    # -- loss -------------------------------------------------------------------------------
    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        """Loss of every labelled element, shaped like ``mask`` (placeholders already safe)."""
        raise NotImplementedError

    def _safe(self, output: Tensor, label: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # Replace what unlabelled elements hold (a NaN/inf/-1 placeholder label, a non-finite
        # output) *before* the elementwise loss: masking only afterwards keeps the forward finite
        # but the backward multiplies 0 by the NaN local derivative, giving NaN gradients.
        mask = mask.bool()
        row = mask.reshape(mask.shape + (1,) * (output.dim() - mask.dim())) if output.dim() >= mask.dim() else mask
        output = torch.where(row, output, output.new_zeros(()))
        label = torch.where(mask.reshape(mask.shape + (1,) * (label.dim() - mask.dim())), label, label.new_zeros(()))
        return output, label, mask

    def loss(self, output: Tensor, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        """Masked mean loss (0, attached to the graph, when nothing is labelled)."""
        output, label, mask = self._safe(output, label, mask)
        if weight is not None:
            row_mask = mask if mask.dim() == 1 else mask.flatten(1).any(1)
            weight = torch.where(row_mask, weight, weight.new_zeros(()))
        return masked_mean(self.elementwise_loss(output, label, mask), mask, weight)

    def loss_count(self, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        """The denominator of :meth:`loss` on this batch (the weighted number of elements the loss
        averages over). Data parallelism rescales each process's loss by its share of the total."""
        return labelled_weight(mask.bool(), weight)

    def per_example_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        """``[B]`` unweighted loss of every row (mean over its labelled elements), NaN where none."""
        output, label, mask = self._safe(output, label, mask)
        loss = self.elementwise_loss(output, label, mask).float()
        if mask.dim() == 1:
            return torch.where(mask, loss, torch.full_like(loss, float("nan")))
        m = mask.flatten(1).float()
        total = torch.where(mask, loss, torch.zeros_like(loss)).flatten(1).sum(1)
        count = m.sum(1)
        return torch.where(count > 0, total / count.clamp_min(1.0), torch.full_like(total, float("nan")))

    # -- metrics ----------------------------------------------------------------------------
    def metrics(self) -> tuple[Metric, ...]:
        """The kind's metrics; the first is the primary one."""
        raise NotImplementedError

    def metric(self, name: str) -> Metric:
        for m in self.metrics():
            if m.name == name:
                return m
        raise KeyError(f"kind {self.name!r} has no metric {name!r}; it has {', '.join(self.metric_names())}")

    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics())

    def compute_metrics(self, output: Tensor, label: Tensor, mask: Tensor) -> dict[str, float]:
        """Every metric on the labelled rows, plus ``count`` (rows with a label). With element
        masks, the metrics receive the rows that have a labelled element, whole, with the
        unlabelled elements marked by :meth:`mark_unlabelled`."""
        keep = mask.bool()
        if keep.dim() == 1:
            rows, lab = keep, label[keep]
        else:
            rows = keep.flatten(1).any(1)
            lab = self.mark_unlabelled(label, keep)[rows]
        out = output[rows]
        result: dict[str, float] = {"count": int(rows.sum())}
        for m in self.metrics():
            result[m.name] = m.fn(out, lab) if lab.numel() else float("nan")
        return result

    def mark_unlabelled(self, label: Tensor, keep: Tensor) -> Tensor:
        """Kinds with element masks: ``label`` with the elements outside ``keep`` set to the value
        their metrics skip (NaN, -1, ...)."""
        raise NotImplementedError(f"kind {self.name!r} has element masks but does not mark unlabelled elements")

    # -- predictions ------------------------------------------------------------------------
    def predict(self, output: Tensor) -> Tensor:
        """Raw model output -> what a user wants (a probability, a value, class scores)."""
        return output

    def prediction_columns(self, task: str, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """Predictions of task ``task`` as named output columns (``table`` is the input rows)."""
        import pyarrow as pa

        return {task: pa.array(prediction.astype(np.float32))}

    def label_predictions(self, task: Task, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """Predictions in the form of the task's own label column(s): ``{label column: values}``
        as the input file holds labels (a class name, a list of tags per row, head indices), so an
        input file can be written back out with the predictions in place of its labels (CoNLL-U).
        Default: the task's first prediction column under the label's name."""
        produced = self.prediction_columns(task.name, prediction, table)
        return {task.label: produced.get(task.name, next(iter(produced.values())))}


def labelled_weight(mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """The denominator of :func:`masked_mean`: the (row-weighted) number of labelled elements.
    Data parallelism rescales each process's mean loss by its share of this total."""
    w = mask.float()
    if weight is not None:
        w = w * weight.float().reshape(weight.shape + (1,) * (w.dim() - weight.dim()))
    return w.sum()


def row_count(mask: Tensor) -> Tensor:
    """Rows with at least one labelled element (``[N]`` or element masks)."""
    m = mask.bool()
    return m.sum() if m.dim() == 1 else m.flatten(1).any(1).sum()


def metric_table(kinds: Sequence[TaskKind]) -> dict[str, bool]:
    """``{metric: higher_is_better}`` over the given kinds' metrics."""
    return {m.name: m.higher_is_better for k in kinds for m in k.metrics()}
