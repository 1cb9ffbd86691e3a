"""Semantic relatedness: a real-valued score in ``[low, high]`` predicted as a distribution over the
integer scores (Tai, Socher & Manning, ACL 2015, Sec. 5.2; JMT, Hashimoto et al., EMNLP 2017, Eq. 9).

The model gives ``K = high - low + 1`` logits per row, one per integer score ``r = low..high``. A
gold score ``y`` becomes the sparse target distribution ``p`` with ``p[floor(y)] = floor(y) - y + 1``
and ``p[floor(y) + 1] = y - floor(y)`` (all mass on ``high`` when ``y = high``), so ``y`` is exactly
the expected score under ``p``. The loss is ``KL(p || softmax(output))`` per row; the prediction is
the expected score ``sum_r r * p_hat_r``. Metrics (on the expected score, in the score's units):
Pearson's r (primary, SICK's official measure), Spearman's rho and the mean squared error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from polytask.errors import DataError
from polytask.registry import TASK_KINDS
from polytask.tasks import scores
from polytask.tasks.base import Metric, TaskKind
from polytask.tasks.task import Task


def pearson(x: np.ndarray | Tensor, y: np.ndarray | Tensor) -> float:
    """Pearson's correlation coefficient (float64); NaN with fewer than 2 values or a constant one."""
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if a.size < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    return scores.average_ranks(torch.tensor(x, dtype=torch.float64)).numpy()


def spearman(x: np.ndarray | Tensor, y: np.ndarray | Tensor) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks."""
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    return pearson(average_ranks(a), average_ranks(b))


@TASK_KINDS.register("relatedness")
class Relatedness(TaskKind):
    """Semantic relatedness (Tai et al. 2015; JMT Eq. 9): ``high - low + 1`` logits per row, KL
    divergence to the sparse target distribution of the gold score, expected-score predictions;
    Pearson, Spearman and MSE.

    Args:
        low: the lowest score (an integer; SICK: 1).
        high: the highest score (an integer > ``low``; SICK: 5).
    """

    name = "relatedness"
    scalar_output = False
    label_dtype = torch.float32
    example_options = {"low": 1, "high": 5}

    def __init__(self, *, low: int = 1, high: int = 5) -> None:
        if high <= low:
            raise ValueError(f"high must be greater than low, got low={low}, high={high}")
        self.low, self.high = int(low), int(high)

    def options(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}

    @property
    def output_dim(self) -> int:
        return self.high - self.low + 1

    def scores(self, device: torch.device | None = None) -> Tensor:
        """``[K]`` the integer scores ``low..high`` the logits stand for."""
        return torch.arange(self.low, self.high + 1, dtype=torch.float32, device=device)

    # -- labels -----------------------------------------------------------------------------
    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        from polytask.data.encoders import to_float

        y = to_float(table.column(task.label), source=source, column=task.label)
        mask = ~np.isnan(y)
        outside = mask & ~((y >= self.low) & (y <= self.high))
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise DataError(
                f"{source}: score column {task.label!r} of task {task.name!r} holds {y[row]} at row {row}, "
                f"outside [{self.low}, {self.high}] (set the task's low/high)", row=row
            )
        return np.where(mask, y, 0.0).astype(np.float32), mask

    def target_distribution(self, label: Tensor) -> Tensor:
        """``[B]`` scores -> ``[B, K]`` sparse distributions ``p`` with ``sum_r r p_r = y`` (scores
        are clamped into ``[low, high]``, so placeholders of unlabelled rows stay valid)."""
        k = self.output_dim
        y = label.float().clamp(self.low, self.high) - self.low  # 0 .. K-1
        floor = y.floor().clamp(max=k - 1)
        frac = (y - floor).unsqueeze(-1)
        index = floor.long().unsqueeze(-1)
        p = torch.zeros(*label.shape, k, dtype=torch.float32, device=label.device)
        p.scatter_add_(-1, index, 1.0 - frac)
        p.scatter_add_(-1, (index + 1).clamp(max=k - 1), frac)  # frac is 0 where floor is K-1
        return p

    # -- loss -------------------------------------------------------------------------------
    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        """``KL(p || softmax(output)) = sum_r p_r (log p_r - log q_r)`` per row (0 log 0 = 0)."""
        p = self.target_distribution(label)
        log_q = torch.log_softmax(output.float(), dim=-1)
        return (torch.xlogy(p, p) - p * log_q).sum(-1)

    # -- metrics ----------------------------------------------------------------------------
    def expected_score(self, output: Tensor) -> Tensor:
        """``[B, K]`` logits -> ``[B]`` the expected score ``sum_r r * softmax(output)_r``."""
        return torch.softmax(output.float(), dim=-1) @ self.scores(output.device)

    def metrics(self) -> tuple[Metric, ...]:
        def pearson_r(o: Tensor, y: Tensor) -> float:
            return pearson(self.expected_score(o).cpu().numpy(), y.cpu().numpy())

        def spearman_rho(o: Tensor, y: Tensor) -> float:
            return spearman(self.expected_score(o).cpu().numpy(), y.cpu().numpy())

        def mse(o: Tensor, y: Tensor) -> float:
            return float((self.expected_score(o) - y.float()).square().mean())

        return (Metric("pearson", True, pearson_r), Metric("spearman", True, spearman_rho), Metric("mse", False, mse))

    # -- predictions ------------------------------------------------------------------------
    def predict(self, output: Tensor) -> Tensor:
        """The expected score ``[B]`` (in ``[low, high]``)."""
        return self.expected_score(output)
