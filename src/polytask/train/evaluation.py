"""Prediction and evaluation of a model on a whole split.

Metrics are computed once per split on labelled rows only (a batch-averaged AUC is not an AUC);
the trainer, a loaded run and ``polytask evaluate`` all go through these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.data.loader import in_order
from polytask.data.table import TensorTable
from polytask.metrics import compute_metrics
from polytask.tasks import Task
from polytask.train.progress import batch_reporter


@torch.inference_mode()
def predict_raw(
    model: nn.Module, table: TensorTable, task_names: Sequence[str], batch_size: int = 8192,
    device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """Raw outputs of ``model`` for every row of ``table`` (on the CPU), in row order."""
    model.eval()
    device = torch.device(device)
    chunks: dict[str, list[Tensor]] = {name: [] for name in task_names}
    report = batch_reporter()  # a progress bar around this call (polytask evaluate / predict)
    loader = in_order(table, batch_size)  # a streamed split reads its own rows
    for i, batch in enumerate(loader):
        if device.type != "cpu":
            batch = batch.to(device)
        out = model(batch.features)
        for name in chunks:
            chunks[name].append(out[name].float().cpu())
        if report is not None:
            report(i + 1, len(loader))
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def evaluate_table(
    model: nn.Module, tasks: Sequence[Task], table: TensorTable, batch_size: int = 8192, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """``{task: {metric: value, "loss": ...}}`` plus ``loss`` (sum of the trained tasks' losses,
    see ``loss_task_names``) on labelled rows."""
    outputs = predict_raw(model, table, [t.name for t in tasks], batch_size, device)
    metrics: dict[str, Any] = compute_metrics(tasks, outputs, table.labels, table.masks)
    trained = set(model.loss_task_names()) if hasattr(model, "loss_task_names") else {t.name for t in tasks}
    total = 0.0
    for t in tasks:
        loss = float(t.loss(outputs[t.name], table.labels[t.name], table.masks[t.name], table.weights.get(t.name)))
        metrics[t.name]["loss"] = loss
        if t.name in trained:
            total += loss
    metrics["loss"] = total
    return metrics


@torch.inference_mode()
def per_example_losses(
    model: nn.Module, tasks: Sequence[Task], table: TensorTable, max_rows: int | None = None,
    batch_size: int = 8192, device: torch.device | str = "cpu",
) -> Tensor:
    """``[N, T]`` loss of every row of ``table`` (the first ``max_rows``), NaN where unlabelled."""
    if max_rows is not None and max_rows < len(table):
        b = table.slice(0, max_rows)
        table = TensorTable(b.features, b.labels, b.masks, b.weights)
    outputs = predict_raw(model, table, [t.name for t in tasks], batch_size, device)
    return torch.stack(
        [t.per_example_loss(outputs[t.name], table.labels[t.name], table.masks[t.name]) for t in tasks], dim=1
    )
