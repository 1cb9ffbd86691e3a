"""The classification scores the task kinds report: ROC AUC, accuracy and macro-F1.

Written out in a few tensor operations rather than imported from torchmetrics: ``import
torchmetrics`` costs about 1 s and 100 MB of memory (it imports every domain, and scipy.signal
with them) for these three functions, in every process that trains or evaluates. Each is checked
against scikit-learn's definition in ``tests/tasks/test_scores.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks of the values of ``x`` (float64), tied values sharing their average rank."""
    _, inverse, counts = torch.unique(x.flatten(), sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return (ends - (counts.double() - 1) / 2)[inverse]


def auroc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels``: the probability that a positive row scores above
    a negative one, ties counted one half (the Mann-Whitney U statistic over average ranks). NaN
    when one class is absent. Any monotone score gives the same AUC, so logits can be passed as
    they are (a sigmoid in float32 would tie every logit above ~17)."""
    y = labels.flatten() != 0
    n1 = int(y.sum())
    n0 = y.numel() - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = average_ranks(scores.flatten().double())
    u = float(ranks[y].sum()) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Share of rows whose highest-scoring class (the first, on ties) is the label."""
    if labels.numel() == 0:
        return float("nan")
    return float((logits.argmax(-1) == labels.long()).double().mean())


def macro_f1(logits: Tensor, labels: Tensor, num_classes: int) -> float:
    """F1 of each class that occurs among the labels or the predictions (the argmax), averaged
    with equal weight per class (scikit-learn's ``average="macro"``)."""
    if labels.numel() == 0:
        return float("nan")
    pred, true = logits.argmax(-1).flatten(), labels.long().flatten()
    tp = torch.bincount(true[pred == true], minlength=num_classes).double()
    both = torch.bincount(pred, minlength=num_classes).double() + torch.bincount(true, minlength=num_classes).double()
    present = both > 0
    return float((2 * tp[present] / both[present]).mean())
