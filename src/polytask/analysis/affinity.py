"""Task affinity from "easy / hard" examples and the branch grouping of Fully-Adaptive Feature
Sharing (Lu et al., CVPR 2017).

Two tasks are related if they tend to find the same examples easy or hard. With ``e_i(n) = 1``
when example n's loss for task i is below that task's mean loss,
``A(i, j) = P(e_i = 1, e_j = 1) + P(e_i = 0, e_j = 0)``. Branches (sets of tasks) are compared by
complete linkage, ``A_b(k, l) = mean_{i in k} min_{j in l} A(i, j)``, symmetrised. A junction's
branches are grouped by minimising ``L = L_b + lambda * L_s``: the branching cost
``L_b = (d - 1) * unit_cost * 2^pools_above`` of ``d`` groups against the separation cost
``L_s`` = mean over groups of ``1 - (within-group affinity)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def easy_hard_affinity(losses: Tensor) -> Tensor:
    """``[N, T]`` per-example losses (on held-out data) -> ``[T, T]`` affinity in [0, 1].

    NaN marks an unlabelled example: a task's mean loss uses its labelled rows, and a pair of
    tasks is compared on the rows labelled for both (a pair with no such row gets affinity 0.5,
    what independent tasks score)."""
    labelled = ~torch.isnan(losses)
    filled = torch.where(labelled, losses, torch.zeros((), dtype=losses.dtype))
    mean = filled.sum(0, keepdim=True) / labelled.sum(0, keepdim=True).clamp_min(1)
    both = labelled.to(losses.dtype)
    easy = (filled < mean).to(losses.dtype) * both
    hard = both - easy
    pairs = both.T @ both
    agree = easy.T @ easy + hard.T @ hard
    return torch.where(pairs > 0, agree / pairs.clamp_min(1), torch.full_like(agree, 0.5))


def branch_affinity(task_affinity: Tensor, branches: Sequence[Sequence[int]]) -> Tensor:
    """``[c, c]`` symmetrised complete-linkage affinity between branches (lists of task indices)."""
    c = len(branches)
    out = torch.empty(c, c, dtype=task_affinity.dtype)
    for k, bk in enumerate(branches):
        for m, bm in enumerate(branches):
            out[k, m] = task_affinity[list(bk)][:, list(bm)].min(dim=1).values.mean()
    return (out + out.T) / 2


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1 :]
        yield [[first], *part]


def separation_cost(affinity: Tensor, groups: Sequence[Sequence[int]]) -> float:
    """Mean over groups of ``1 - within-group affinity`` (complete linkage; a singleton costs 0)."""
    costs = []
    for g in groups:
        if len(g) == 1:
            costs.append(0.0)
            continue
        sub = affinity[list(g)][:, list(g)]
        costs.append(1.0 - float(sub.min(dim=1).values.mean()))
    return sum(costs) / len(costs)


def group_branches(
    affinity: Tensor, *, lam: float, unit_cost: float = 1.0, pools_above: int = 0, max_exhaustive: int = 8
) -> list[list[int]]:
    """Group ``c`` branches (by their ``[c, c]`` affinity) minimising branching + lambda x separation.

    Every partition is scored for ``c <= max_exhaustive``; beyond that, agglomerative complete-linkage
    merges give one candidate per number of groups.
    """
    c = affinity.shape[0]

    def score(groups: list[list[int]]) -> float:
        return (len(groups) - 1) * unit_cost * 2**pools_above + lam * separation_cost(affinity, groups)

    if c <= max_exhaustive:
        candidates: Iterator[list[list[int]]] | list[list[list[int]]] = _partitions(list(range(c)))
    else:
        groups = [[i] for i in range(c)]
        candidates = [list(map(list, groups))]
        while len(groups) > 1:
            best = max(((a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))),
                       key=lambda ab: float(affinity[groups[ab[0]]][:, groups[ab[1]]].min()))
            a, b = best
            groups = [g for i, g in enumerate(groups) if i not in (a, b)] + [groups[a] + groups[b]]
            candidates.append(list(map(list, groups)))
    best_groups = min(candidates, key=score)
    return sorted(sorted(g) for g in best_groups)
