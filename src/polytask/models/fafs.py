"""Fully-Adaptive Feature Sharing (Lu, Kumar, Zhai, Cheng, Javidi, Feris; CVPR 2017).

Training starts from a thin network in which every layer is shared by all tasks and only the
output layer is per task. After ``warmup_epochs`` the top hidden layer becomes the *active*
layer: the branches meeting at the junction above it (at first one per task) are grouped by task
affinity (tasks that find the same held-out examples easy or hard, see
:mod:`polytask.analysis.affinity`) into the number of groups ``d`` that minimises
``(d - 1) * unit_cost + lam * separation_cost``; the active layer is copied once per group (each
copy starts from the trained weights), and the active layer moves one level down. Every
``widen_every`` epochs the next layer is widened the same way, until the bottom hidden layer has
been visited. The embedding input stays shared.

The tree is read with :meth:`FAFS.branch_tree`, logged per epoch, and saved with the checkpoint
(:meth:`structure`), so a loaded run rebuilds the widened network. Passing ``branches`` builds a
given tree directly (e.g. to retrain a found structure from scratch, with ``widen=False``).

Differences from the paper, stated: the paper initialises the thin network from a pretrained wide
one by simultaneous orthogonal matching pursuit; tabular models have no pretrained network, so the
thin network is trained from scratch for ``warmup_epochs``. MLP layers have no pooling, so the
branching cost does not grow with depth (``p_l = 0``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.analysis.affinity import branch_affinity, easy_hard_affinity, group_branches
from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn import MLP, TaskHeads
from polytask.registry import MODELS
from polytask.tasks import Task

Groups = list[list[int]]


@MODELS.register("fafs")
class FAFS(MultiTaskModel):
    """A thin shared network widened top-down into a task-grouped branch tree (Lu et al., 2017).

    ``encoder``/``encoder_params`` pick the input encoder (see :mod:`polytask.encoders`); it stays
    shared while the layers above it branch.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        hidden: list[int] = [64, 32],  # noqa: B006
        tower_hidden: list[int] = [],  # noqa: B006
        lam: float = 5.0,
        unit_cost: float = 1.0,
        warmup_epochs: int = 2,
        widen_every: int = 2,
        widen: bool = True,
        branches: list[list[list[int]]] | None = None,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        if not hidden:
            raise ValueError("fafs needs at least one hidden layer to widen")
        if warmup_epochs < 1 or widen_every < 1:
            raise ValueError("warmup_epochs and widen_every must be >= 1")
        t = len(tasks)
        if branches is None:
            branches = [[list(range(t))] for _ in hidden]
        self.branches: list[Groups] = [sorted(sorted(g) for g in layer) for layer in branches]
        self._check_tree(t, len(hidden))
        self.lam, self.unit_cost = lam, unit_cost
        self.warmup_epochs, self.widen_every, self.widen = warmup_epochs, widen_every, widen
        # next layer to widen (top-down); None when done. A given tree is taken as final.
        self.active: int | None = len(hidden) - 1 if widen and all(len(b) == 1 for b in self.branches) else None
        self.next_epoch = warmup_epochs
        self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
        widths = [self.input.out_dim, *hidden]
        self.layers = nn.ModuleList(
            nn.ModuleList(MLP(widths[i], [widths[i + 1]], act=activation, dropout=dropout) for _ in self.branches[i])
            for i in range(len(hidden))
        )
        self.heads = TaskHeads(tasks, widths[-1], tower_hidden, act=activation, dropout=dropout)

    def _check_tree(self, num_tasks: int, depth: int) -> None:
        if len(self.branches) != depth:
            raise ValueError(f"branches: {len(self.branches)} layers given for {depth} hidden layers")
        for i, layer in enumerate(self.branches):
            if sorted(t for g in layer for t in g) != list(range(num_tasks)):
                raise ValueError(f"branches[{i}]: every task index 0..{num_tasks - 1} must appear exactly once")
            if i and any(not any(set(g) <= set(p) for p in self.branches[i - 1]) for g in layer):
                raise ValueError(f"branches[{i}]: each branch must lie inside one branch of the layer below")

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = self.input(features)
        outputs: list[Tensor] = [x]  # outputs of the branches of the layer below, by branch index
        below: Groups = [list(range(len(self.tasks)))]
        shared = x  # the output of the last layer every task still shares (the input, at worst)
        for groups, modules in zip(self.branches, self.layers):
            parents = [next(j for j, p in enumerate(below) if set(g) <= set(p)) for g in groups]
            outputs = [m(outputs[j]) for m, j in zip(modules, parents)]
            if len(groups) == 1:
                shared = outputs[0]
            below = groups
        self.share(shared)  # recorded only; every branch above reads this tensor
        if len(below) == 1:
            return self.read_out(self.heads(outputs[0]), features)
        owner = {t: i for i, g in enumerate(below) for t in g}
        return self.read_out(self.heads(torch.stack([outputs[owner[t]] for t in range(len(self.tasks))])), features)

    def shared_modules(self) -> list[nn.Module]:
        """The embedding input and every layer still shared by all tasks."""
        return [self.input] + [m[0] for m, g in zip(self.layers, self.branches) if len(g) == 1]

    # -- widening --------------------------------------------------------------------------------
    def adapt(self, epoch: int, probe: Callable[[], Tensor]) -> bool:
        """Widen the active layer when its epoch comes; True if the parameters changed."""
        if self.active is None or epoch < self.next_epoch:
            return False
        layer = self.active
        self.active = layer - 1 if layer > 0 else None
        self.next_epoch = epoch + self.widen_every
        return self.widen_layer(layer, easy_hard_affinity(probe().cpu()))

    def widen_layer(self, layer: int, task_affinity: Tensor) -> bool:
        """Split each branch of ``layer`` by grouping the branches above it (per-task output
        branches for the top layer) on their affinity; new branches copy the old weights."""
        above = self.branches[layer + 1] if layer + 1 < len(self.branches) else [[t] for t in range(len(self.tasks))]
        new_groups: Groups = []
        new_modules: list[nn.Module] = []
        for group, module in zip(self.branches[layer], self.layers[layer]):
            children = [c for c in above if set(c) <= set(group)]
            if len(children) > 1:
                clusters = group_branches(branch_affinity(task_affinity, children), lam=self.lam, unit_cost=self.unit_cost)
            else:
                clusters = [[0]]
            for i, cluster in enumerate(clusters):
                new_groups.append(sorted(t for c in cluster for t in children[c]))
                new_modules.append(module if i == 0 else copy.deepcopy(module))
        changed = len(new_groups) != len(self.branches[layer])
        order = sorted(range(len(new_groups)), key=lambda i: new_groups[i])
        self.branches[layer] = [new_groups[i] for i in order]
        self.layers[layer] = nn.ModuleList(new_modules[i] for i in order)
        return changed

    # -- reading the tree ------------------------------------------------------------------------
    def branch_tree(self) -> list[list[list[str]]]:
        """Per hidden layer (bottom first), the branches as lists of task names."""
        return [[[self.task_names[t] for t in g] for g in layer] for layer in self.branches]

    def structure(self) -> dict[str, Any]:
        return {"branches": [[list(g) for g in layer] for layer in self.branches], "widen": False}

    def diagnostics(self) -> dict[str, Any]:
        return {"branches": self.branch_tree()}
