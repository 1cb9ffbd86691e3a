"""Which tasks to train together: the network selection of Task Affinity Grouping (TAG; Fifty et
al., "Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS 2021, Sec. 3.3).

Given an inter-task affinity ``A[i, j]`` (how much a step on task ``i`` helps task ``j``: the
lookahead ``Z_{i->j}`` of :mod:`polytask.analysis.lookahead`), choose at most ``k`` groups of tasks,
each trained as one multi-task network, covering every task. A task is *served* by the group where
it receives the most affinity from the other members,

    ``s(j, G) = mean_{i in G, i != j} A[i, j]``   (0 for a task alone: nothing helps or hurts it),

and a grouping scores ``sum_j max_{G contains j} s(j, G)``, higher is better.

Two searches, both exact:

* ``overlap=False`` (default): the groups are disjoint, every task is trained in exactly one
  network. This is the plain question "which tasks to train together", and it is robust to the
  small positive affinity nearly every pair of tasks shows early in training (a shared trunk
  learning anything at all helps every head a little).
* ``overlap=True``: TAG's own selection, where a task may also be trained, as an auxiliary task, in
  networks that serve others. Then a leftover task joins whichever task helps it most, however
  little: with that generic early transfer, an unrelated task is rarely left alone.

With overlap, the sets of tasks each group serves still partition the tasks, so the best grouping
into at most ``k`` networks is the best partition into at most ``k`` blocks ``B``, each worth
``v(B) = max_{G containing B} sum_{j in B} s(j, G)`` (without overlap ``G = B``). Every block value
is computed over all (group, block) pairs (``3^T``), then a dynamic programme over subsets finds
the best partition for every ``k`` (``k 3^T``): well under a second for ``T <= MAX_TASKS`` (10);
more tasks are refused (ValueError).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: the most tasks the exhaustive search takes (3^10 = 59,049 block/group pairs)
MAX_TASKS = 10


@dataclass(frozen=True)
class Grouping:
    """At most ``k`` networks: ``groups[n]`` the tasks network ``n`` trains (sorted indices),
    ``serves[n]`` those it is chosen for (a task trained in several networks is served by one);
    ``score`` the TAG objective (sum over tasks of the affinity each receives where it is served)."""

    groups: list[list[int]]
    serves: list[list[int]]
    score: float

    @property
    def cost(self) -> int:
        """Relative compute: one unit per network."""
        return len(self.groups)

    def named(self, names: Sequence[str]) -> dict[str, Any]:
        """``{"groups": [[task names]], "serves": [[task names]], "score": ...}``."""
        return {"groups": [[names[i] for i in g] for g in self.groups],
                "serves": [[names[i] for i in s] for s in self.serves], "score": self.score}


def _matrix(affinity: Any) -> list[list[float]]:
    rows = affinity.tolist() if hasattr(affinity, "tolist") else [list(r) for r in affinity]
    t = len(rows)
    if any(len(r) != t for r in rows):
        raise ValueError(f"affinity must be a square [T, T] matrix, got {t} rows of lengths {[len(r) for r in rows]}")
    # NaN: a pair never measured together (no batch labelled both): no evidence either way
    return [[0.0 if (v is None or math.isnan(v)) else float(v) for v in r] for r in rows]


def served_affinity(affinity: Any, task: int, group: Sequence[int]) -> float:
    """``s(task, group)``: the mean affinity ``A[i, task]`` from the group's other members (0 alone)."""
    a = _matrix(affinity)
    others = [i for i in group if i != task]
    return sum(a[i][task] for i in others) / len(others) if others else 0.0


def grouping_score(affinity: Any, groups: Sequence[Sequence[int]]) -> float:
    """The TAG objective of ``groups``: each task counts where it receives the most affinity.
    ValueError when a task is in no group."""
    t = len(_matrix(affinity))
    total = 0.0
    for j in range(t):
        scores = [served_affinity(affinity, j, g) for g in groups if j in g]
        if not scores:
            raise ValueError(f"task {j} is in no group of {list(map(list, groups))}")
        total += max(scores)
    return total


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def best_groupings(affinity: Any, max_groups: int | None = None, *, overlap: bool = False) -> list[Grouping]:
    """The best grouping into at most ``k`` networks for ``k = 1 .. max_groups`` (default: the
    number of tasks), as a list indexed ``k - 1``; disjoint groups unless ``overlap`` (see the
    module doc). Ties go to smaller networks, then to fewer.

    ``affinity`` is ``[T, T]`` (a tensor, array or nested list) with ``affinity[i, j]`` how much
    task ``i`` helps task ``j``; NaN counts as 0. ValueError for more than :data:`MAX_TASKS` tasks."""
    a = _matrix(affinity)
    t = len(a)
    if t == 0:
        raise ValueError("affinity has no task")
    if t > MAX_TASKS:
        raise ValueError(f"the grouping search is exhaustive and takes at most {MAX_TASKS} tasks; got {t}")
    k_max = t if max_groups is None else max_groups
    if k_max < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    k_max = min(k_max, t)
    full = (1 << t) - 1
    # v(B) and the group G achieving it, over every group G (smaller groups first: ties keep them)
    value = [-math.inf] * (full + 1)
    network = [0] * (full + 1)
    for group in sorted(range(1, full + 1), key=lambda m: (bin(m).count("1"), m)):
        members = _bits(group)
        s = {j: (sum(a[i][j] for i in members if i != j) / (len(members) - 1) if len(members) > 1 else 0.0)
             for j in members}
        block = group
        while block:  # every non-empty block the group can serve (only itself without overlap)
            v = sum(s[j] for j in _bits(block))
            if v > value[block] + 1e-12:
                value[block], network[block] = v, group
            block = (block - 1) & group if overlap else 0
    # best[k][mask]: the best partition of `mask` into at most k blocks; choice: its block holding
    # the lowest task of `mask` (0: the k - 1 solution)
    best = [[0.0] * (full + 1)] + [[-math.inf] * (full + 1) for _ in range(k_max)]
    choice = [[0] * (full + 1) for _ in range(k_max + 1)]
    for mask in range(1, full + 1):
        best[1][mask], choice[1][mask] = value[mask], mask
    for k in range(2, k_max + 1):
        prev, cur, pick = best[k - 1], best[k], choice[k]
        for mask in range(1, full + 1):
            cur[mask] = prev[mask]
            low = mask & -mask
            rest = mask ^ low
            sub = rest
            while True:  # blocks holding the lowest task: low | every subset of the rest
                block = low | sub
                v = value[block] + prev[mask ^ block] if block != mask else value[block]
                if v > cur[mask] + 1e-12:
                    cur[mask], pick[mask] = v, block
                if sub == 0:
                    break
                sub = (sub - 1) & rest
    out = []
    for k in range(1, k_max + 1):
        blocks, mask, kk = [], full, k
        while mask:
            while kk > 1 and choice[kk][mask] == 0:
                kk -= 1
            block = choice[kk][mask]
            blocks.append(block)
            mask ^= block
            kk -= 1
        out.append(_grouping(blocks, network, a))
    return out


def _grouping(blocks: list[int], network: list[int], a: list[list[float]]) -> Grouping:
    """Blocks -> networks (two blocks served best by the same group are one network)."""
    by_group: dict[int, int] = {}
    for block in blocks:
        by_group[network[block]] = by_group.get(network[block], 0) | block
    pairs = sorted((_bits(g), _bits(b)) for g, b in by_group.items())
    groups = [g for g, _ in pairs]
    return Grouping(groups=groups, serves=[b for _, b in pairs], score=grouping_score(a, groups))


def advise(groupings: Sequence[Grouping], budget: float | None = None, tolerance: float = 0.05) -> Grouping:
    """The grouping to advise among ``groupings`` (:func:`best_groupings`'s list): the fewest
    networks whose score is within ``tolerance`` (a fraction of the best score's size) of the best
    score that at most ``budget`` networks reach (``k`` networks cost ``k``; None: no cap). A
    network more must be worth it: with ``tolerance=0`` any gain, noise included, adds one."""
    allowed = [g for k, g in enumerate(groupings, start=1) if budget is None or k <= budget]
    if not allowed:
        raise ValueError(f"budget {budget}: not even one network fits (one network costs 1)")
    top = max(g.score for g in allowed)
    return next(g for g in allowed if g.score >= top - tolerance * abs(top) - 1e-12)
