"""Per-task metrics (through torchmetrics' functional API), all restricted to labelled rows,
and the multi-task gain Delta-m against single-task baselines.

Metrics are computed once per split on the concatenated outputs, not averaged over batches
(batch-averaged AUC is not AUC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_auroc,
    multiclass_accuracy,
    multiclass_f1_score,
)

from polytask.tasks import Task

#: True where a larger value is better; drives early stopping and Delta-m signs.
HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "logloss": False,
    "rmse": False,
    "mae": False,
    "mse": False,
    "accuracy": True,
    "macro_f1": True,
    "loss": False,
}


def _metric(name: str, task: Task, output: Tensor, label: Tensor) -> float:
    if name == "auc":
        if label.numel() == 0 or label.min() == label.max():
            return float("nan")  # AUC is undefined with one class present
        return float(binary_auroc(torch.sigmoid(output.float()), label.long()))
    if name == "logloss":
        return float(F.binary_cross_entropy_with_logits(output.float(), label.float()))
    if name == "rmse":
        return float((output.float() - label.float()).square().mean().sqrt())
    if name == "mse":
        return float((output.float() - label.float()).square().mean())
    if name == "mae":
        return float((output.float() - label.float()).abs().mean())
    if name == "accuracy":
        return float(multiclass_accuracy(output.float(), label.long(), num_classes=task.output_dim, average="micro"))
    if name == "macro_f1":
        return float(multiclass_f1_score(output.float(), label.long(), num_classes=task.output_dim, average="macro"))
    raise KeyError(f"unknown metric {name!r}")


def task_metrics(task: Task, output: Tensor, label: Tensor, mask: Tensor) -> dict[str, float]:
    """All metrics of ``task`` on the rows where ``mask`` is True, plus ``count`` (labelled rows)."""
    keep = mask.bool()
    out, lab = output[keep], label[keep]
    result: dict[str, float] = {"count": int(keep.sum())}
    for name in task.metrics:
        result[name] = _metric(name, task, out, lab) if lab.numel() else float("nan")
    return result


def compute_metrics(
    tasks: Sequence[Task], outputs: Mapping[str, Tensor], labels: Mapping[str, Tensor], masks: Mapping[str, Tensor]
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for every task."""
    return {t.name: task_metrics(t, outputs[t.name], labels[t.name], masks[t.name]) for t in tasks}


def delta_m(
    method: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    metrics: Mapping[str, Sequence[str]] | None = None,
) -> float:
    """Multi-task gain Delta-m in percent, **higher is better**, averaged per task first.

    ``Delta-m = 100/T * sum_t 1/M_t * sum_m s_m (M_method - M_base) / M_base`` with ``s_m = +1``
    if the metric is higher-is-better, else ``-1`` (the LibMTL ``Delta_p`` convention; the
    Nash-MTL/FAMO papers use the opposite sign and a flat mean over metrics, see
    ``shared/reference/paper-results.md`` Sec. 4). ``metrics`` picks which metrics count per task
    (default: every shared metric with a known direction).
    """
    per_task = []
    for task, base in baseline.items():
        if task not in method or not isinstance(base, Mapping):
            continue  # the split-level "loss" entry is not a task
        names = list(metrics[task]) if metrics and task in metrics else [m for m in base if m in HIGHER_IS_BETTER]
        gains = []
        for m in names:
            b, v = base[m], method[task][m]
            if b == 0 or b != b or v != v:
                continue
            sign = 1.0 if HIGHER_IS_BETTER[m] else -1.0
            gains.append(sign * (v - b) / abs(b))
        if gains:
            per_task.append(sum(gains) / len(gains))
    if not per_task:
        return float("nan")
    return 100.0 * sum(per_task) / len(per_task)
