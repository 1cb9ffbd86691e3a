"""Learning to rank: one score per row, ranked within the rows of the same group (query, user,
session); NDCG@k and MAP.

The label tensor is float32 ``[N, 2]``: column 0 the relevance (a non-negative number), column 1
the row's group as a dense integer id (the group column's values factorised per encoded table).
A loss only sees the groups present in a batch (rows of a group split across batches are ranked
against the part in the same batch); the metrics see the whole split.

Losses (a row's loss is its share of its group's loss, scaled so that the mean over the group's
scored rows is the group loss; the task loss is the mean over scored rows):

* ``listwise`` -- ListNet (Cao et al., ICML 2007), the top-one probability model:
  ``L_g = -sum_i softmax(y)_i log softmax(s)_i`` over the labelled rows of group ``g``; row ``i``'s
  share is ``-softmax(y)_i log softmax(s)_i``. Groups with one labelled row score nothing.
* ``pairwise`` -- RankNet (Burges et al., ICML 2005): for every pair of rows of one group with
  ``y_i > y_j``, ``log(1 + exp(-(s_i - s_j)))``; ``L_g`` is the mean over the group's pairs and each
  pair's loss is split evenly between its two rows. Rows in no such pair score nothing.

When no row is scored (no group with two labelled rows, or no pair) the loss is 0, still attached
to the graph.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.errors import DataError
from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric, TaskKind, labelled_weight, masked_mean
from polytask.tasks.task import Task

#: group ids are stored in float32 labels: exact integers up to 2**24
MAX_GROUPS = 2**24


def group_index(group: Tensor) -> tuple[Tensor, int]:
    """Group ids -> dense ``0..G-1`` indices and ``G``."""
    uniq, inv = torch.unique(group, return_inverse=True)
    return inv, int(uniq.numel())


def group_log_softmax(x: Tensor, inv: Tensor, groups: int) -> Tensor:
    """``log softmax`` of ``x`` within each group (``inv`` the dense group index of every row)."""
    top = torch.full((groups,), float("-inf"), dtype=x.dtype, device=x.device)
    top = top.scatter_reduce(0, inv, x.detach(), "amax")  # a constant shift per group: no gradient needed
    z = x - top[inv]
    total = torch.zeros(groups, dtype=x.dtype, device=x.device).index_add(0, inv, z.exp())
    return z - total.log()[inv]


def group_pairs(inv: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Every ordered pair ``(i, j)`` of rows in the same group, ``i == j`` included: the
    ``sum_g n_g^2`` pairs, never an ``N x N`` matrix."""
    n = inv.numel()
    counts = torch.bincount(inv, minlength=groups)
    order = torch.argsort(inv, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    per_row = counts[inv]
    first = torch.repeat_interleave(torch.arange(n, device=inv.device), per_row)
    offset = torch.arange(int(per_row.sum()), device=inv.device) - torch.repeat_interleave(torch.cumsum(per_row, 0) - per_row, per_row)
    second = order[starts[inv[first]] + offset]
    return first, second


def _within_group_ranks(key: np.ndarray, inv: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by group, then by ``key`` descending (ties keep the input order): the order and
    each row's 0-based rank within its group."""
    order = np.lexsort((-key, inv))
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(key), dtype=np.int64)
    rank[order] = np.arange(len(key)) - starts[inv[order]]
    return order, rank


def _split(output: Tensor, label: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s = output.detach().float().cpu().numpy().astype(np.float64).reshape(-1)
    y = label[:, 0].detach().float().cpu().numpy().astype(np.float64)
    _, inv, counts = np.unique(label[:, 1].detach().cpu().numpy(), return_inverse=True, return_counts=True)
    return s, y, inv.reshape(-1), counts


def ndcg(output: Tensor, label: Tensor, k: int) -> float:
    """Mean over groups of NDCG@k (gain ``2^rel - 1``, discount ``1 / log2(rank + 1)``, ranks
    from 1); groups with no relevant row are skipped; NaN when none is left."""
    s, y, inv, counts = _split(output, label)
    if not len(s):
        return float("nan")
    gain = np.exp2(y) - 1.0
    _, rank = _within_group_ranks(s, inv, counts)
    _, ideal = _within_group_ranks(y, inv, counts)
    dcg = np.bincount(inv, gain / np.log2(rank + 2.0) * (rank < k), minlength=len(counts))
    best = np.bincount(inv, gain / np.log2(ideal + 2.0) * (ideal < k), minlength=len(counts))
    ok = best > 0
    return float(np.mean(dcg[ok] / best[ok])) if ok.any() else float("nan")


def mean_average_precision(output: Tensor, label: Tensor) -> float:
    """Mean over groups of average precision (relevant: relevance > 0) over the whole ranked
    group; groups with no relevant row are skipped; NaN when none is left."""
    s, y, inv, counts = _split(output, label)
    if not len(s):
        return float("nan")
    order, rank = _within_group_ranks(s, inv, counts)
    relevant = (y > 0).astype(np.float64)
    rel_sorted, g_sorted = relevant[order], inv[order]
    hits = np.cumsum(rel_sorted)
    starts = np.cumsum(counts) - counts
    before = hits[starts] - rel_sorted[starts]  # relevant rows ahead of each group
    precision = (hits - before[g_sorted]) / (rank[order] + 1.0)
    ap_sum = np.bincount(g_sorted, rel_sorted * precision, minlength=len(counts))
    n_rel = np.bincount(g_sorted, rel_sorted, minlength=len(counts))
    ok = n_rel > 0
    return float(np.mean(ap_sum[ok] / n_rel[ok])) if ok.any() else float("nan")


@TASK_KINDS.register("ranking")
class Ranking(TaskKind):
    """Learning to rank within a group column: ListNet or RankNet loss, NDCG@k and MAP; predicts scores.

    Args:
        group: the column whose values group the rows to rank together (a query or user id).
        loss: ``listwise`` (ListNet top-one cross-entropy) or ``pairwise`` (RankNet logistic loss).
        k: cut-off of the ``ndcg`` metric (NDCG@k).
    """

    name = "ranking"
    example_options = {"group": "query"}

    def __init__(self, *, group: str, loss: Literal["listwise", "pairwise"] = "listwise", k: int = 10) -> None:
        if loss not in ("listwise", "pairwise"):
            raise ValueError(f"loss must be 'listwise' or 'pairwise', got {loss!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.group = group
        self.objective = loss  # not ``self.loss``: that is the loss method
        self.k = k

    def options(self) -> dict[str, Any]:
        return {"group": self.group, "loss": self.objective, "k": self.k}

    # -- labels -----------------------------------------------------------------------------
    def label_columns(self, task: Task) -> list[str]:
        return [task.label, self.group]

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        from polytask.data.encoders import to_float, to_strings

        rel = to_float(table.column(task.label), source=source, column=task.label)
        negative = rel < 0
        if negative.any():
            row = int(np.flatnonzero(negative)[0])
            raise DataError(f"{source}: relevance column {task.label!r} holds {rel[row]:g} at row {row}; relevance must be >= 0")
        groups = pc.dictionary_encode(to_strings(table.column(self.group))).combine_chunks()
        if len(groups.dictionary) > MAX_GROUPS:
            raise DataError(
                f"{source}: group column {self.group!r} of task {task.name!r} holds {len(groups.dictionary)} groups; "
                f"at most {MAX_GROUPS} can be told apart"
            )
        has_group = pc.is_valid(groups.indices).to_numpy(zero_copy_only=False).astype(bool)
        gid = pc.fill_null(groups.indices, 0).to_numpy(zero_copy_only=False).astype(np.float32)
        mask = ~np.isnan(rel) & has_group
        label = np.stack([np.where(mask, rel, 0.0).astype(np.float32), gid], axis=1)
        return label, mask

    # -- loss -------------------------------------------------------------------------------
    def terms(self, output: Tensor, label: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Every row's loss (``[N]``) and which rows are scored (in a group with two labelled
        rows for ``listwise``, in a pair with different relevance for ``pairwise``); inputs as
        :meth:`_safe` leaves them."""
        s, y = output.float().reshape(-1), label[:, 0].float()
        # unlabelled rows all go to one extra group (-1): they never meet a labelled row
        inv, groups = group_index(torch.where(mask, label[:, 1].long(), torch.full_like(label[:, 1].long(), -1)))
        if self.objective == "listwise":
            n_lab = torch.bincount(inv, weights=mask.float(), minlength=groups)
            scored = mask & (n_lab[inv] >= 2)
            target = torch.exp(group_log_softmax(y, inv, groups))
            share = -target * group_log_softmax(s, inv, groups)
            return share * n_lab[inv], scored
        first, second = group_pairs(inv, groups)
        keep = mask[first] & mask[second] & (y[first] > y[second])
        first, second = first[keep], second[keep]
        pair_loss = F.softplus(s[second] - s[first])  # -log sigmoid(s_i - s_j) for y_i > y_j
        g = inv[first]
        n_pairs = torch.bincount(g, minlength=groups).to(s.dtype)
        half = 0.5 * pair_loss / n_pairs[g]
        contrib = torch.zeros_like(s).index_add(0, first, half).index_add(0, second, half)
        in_pair = torch.zeros_like(s).index_add(0, first, torch.ones_like(half)).index_add(0, second, torch.ones_like(half)) > 0
        n_rows = torch.bincount(inv, weights=in_pair.float(), minlength=groups)
        return contrib * n_rows[inv], in_pair

    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        return self.terms(output, label, mask)[0]

    def loss(self, output: Tensor, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean loss over the scored rows (0, attached to the graph, when none is scored)."""
        output, label, mask = self._safe(output, label, mask)
        values, scored = self.terms(output, label, mask)
        if weight is not None:
            weight = torch.where(scored, weight, weight.new_zeros(()))
        return masked_mean(values, scored, weight)

    def loss_count(self, label: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
        """The scored rows (which rows are scored depends on the labels only), weighted."""
        mask = mask.bool()
        scored = self.terms(label.new_zeros(label.shape[0]), torch.where(mask.unsqueeze(1), label, label.new_zeros(())), mask)[1]
        return labelled_weight(scored, weight)

    def per_example_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        """``[B]`` each row's share of its group's loss; NaN for rows that are not scored."""
        output, label, mask = self._safe(output, label, mask)
        values, scored = self.terms(output, label, mask)
        return torch.where(scored, values.float(), torch.full_like(values.float(), float("nan")))

    # -- metrics ----------------------------------------------------------------------------
    def metrics(self) -> tuple[Metric, ...]:
        k = self.k
        return (Metric("ndcg", True, lambda o, y: ndcg(o, y, k)), Metric("map", True, mean_average_precision))
