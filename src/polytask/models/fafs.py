"""Fully-Adaptive Feature Sharing (Lu, Kumar, Zhai, Cheng, Javidi, Feris; CVPR 2017).

Training starts from a thin network in which every layer is shared by all tasks and only the
output layer is per task. After ``warmup_epochs`` the top hidden layer becomes the *active*
layer: the branches meeting at the junction above it (at first one per task) are grouped by task
affinity (tasks that find the same held-out examples easy or hard, see
:mod:`polytask.analysis.affinity`) into the number of groups ``d`` that minimises
``(d - 1) * unit_cost + lam * separation_cost``; the active layer is copied once per group (each
copy starts from the trained weights), and the active layer moves one level down. Every
``widen_every`` epochs the next layer is widened the same way, until the bottom hidden layer has
been visited. The input encoder (or, with ``conv``, the encoder of the non-image features) stays
shared.

The tree is read with :meth:`FAFS.branch_tree`, logged per epoch, and saved with the checkpoint
(:meth:`structure`), so a loaded run rebuilds the widened network. Passing ``branches`` builds a
given tree directly (e.g. to retrain a found structure from scratch, with ``widen=False``).

Convolutional layers (``conv``): as in the paper, whose thin network is a CNN, the model can read
one image feature (``dense:<feature>``, ``[C, H, W]``) itself through thin conv blocks (conv ->
[BatchNorm] -> max-pool -> activation, :class:`~polytask.nn.conv.ConvBlock`), flatten the last
maps, concatenate the other input features (a shared :func:`~polytask.encoders.tabular.rest_input`)
and go on with the ``hidden`` fully connected layers. Every conv and fc layer is a node of the
branch tree, widened top-down (the fc layers first, then the conv layers), one layer per
``widen_every`` epochs. Branching a conv layer costs more, the paper's depth-dependent branching
cost ``L_b = (d - 1) * unit_cost * 2^p_l`` with ``p_l`` the number of pooling layers above layer
``l``: for conv block ``l`` of ``n``, the pools of blocks ``l..n-1`` (a block's own pool follows
its convolution, as pool5 lies above conv5_x in VGG-16); fully connected layers have ``p_l = 0``.
The formula is the one the project's method notes recall from the paper (marked unverified there).

Differences from the paper, stated: the paper initialises the thin network from a pretrained wide
one by simultaneous orthogonal matching pursuit; there is no pretrained network here, so the thin
network is trained from scratch for ``warmup_epochs``. The paper's VGG-16 pools 2x2 after groups of
convolutions; here each conv block has at most one pool, and a pool counts once in ``p_l`` whatever
its window. Without ``conv`` (MLP layers over an input encoder) there is no pooling: ``p_l = 0``.
The conv blocks have no dropout (``dropout`` applies to the fc layers).
With an image-only input, once the bottom conv layer has branched no parameter is shared: the
shared representation is then the image itself, and weightings that need shared parameters
(``pcgrad``) refuse the model when the trainer sets them up again after that widening.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polytask.analysis.affinity import branch_affinity, easy_hard_affinity, group_branches
from polytask.data.schema import InputSpec
from polytask.encoders.base import check_task_levels
from polytask.encoders.tabular import rest_input
from polytask.models.base import MultiTaskModel
from polytask.nn import MLP, TaskHeads
from polytask.nn.conv import ConvBlock
from polytask.nn.mlp import check_widths
from polytask.registry import MODELS
from polytask.tasks import Task

Groups = list[list[int]]


def _image_feature(spec: InputSpec, feature: str | None) -> str:
    """``feature`` (a 3-D dense feature) or the only 3-D dense feature; one ValueError otherwise."""
    if feature is None:
        images = [n for n, shape in spec.dense.items() if len(shape) == 3]
        feature = images[0] if len(images) == 1 else None
    if feature is None or len(spec.dense.get(feature, ())) != 3:
        dense = ", ".join(f"{n} {list(s)}" for n, s in spec.dense.items()) or "none"
        raise ValueError(
            "fafs with conv reads one image: feature must name a dense feature of shape [channels, height, width] "
            f"(it may be left out when there is exactly one); dense features: {dense}"
        )
    return feature


@MODELS.register("fafs")
class FAFS(MultiTaskModel):
    """A thin shared network widened top-down into a task-grouped branch tree (Lu et al., 2017).

    ``encoder``/``encoder_params`` pick the input encoder (see :mod:`polytask.encoders`); it stays
    shared while the layers above it branch. With ``conv`` (channel counts of thin conv blocks),
    the model reads the image ``feature`` itself and the conv blocks branch too (``kernel_size``,
    ``padding`` ``valid``/``same``, ``pool``, ``batch_norm`` as in the ``cnn`` encoder); the
    encoder must then stay at its default.
    """

    #: the output of the last layer every task shares; with ``conv`` and every conv layer branched
    #: the image itself (a leaf that requires grad, so representation-mode weightings still run)
    has_shared_representation = True

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
        conv: list[int] = [],  # noqa: B006 - read-only default
        kernel_size: int = 3,
        padding: Literal["valid", "same"] = "same",
        pool: int = 2,
        batch_norm: bool = False,
        feature: str | None = None,
    ) -> None:
        super().__init__(input_spec, tasks)
        if not hidden and not conv:
            raise ValueError("fafs needs at least one layer to widen (hidden, or conv)")
        if warmup_epochs < 1 or widen_every < 1:
            raise ValueError("warmup_epochs and widen_every must be >= 1")
        check_widths(conv, "conv channel counts")
        t = len(tasks)
        depth = len(conv) + len(hidden)
        if branches is None:
            branches = [[list(range(t))] for _ in range(depth)]
        self.branches: list[Groups] = [sorted(sorted(g) for g in layer) for layer in branches]
        self._check_tree(t, depth)
        self.lam, self.unit_cost = lam, unit_cost
        self.warmup_epochs, self.widen_every, self.widen = warmup_epochs, widen_every, widen
        # next layer to widen (top-down); None when done. A given tree is taken as final.
        self.active: int | None = depth - 1 if widen and all(len(b) == 1 for b in self.branches) else None
        self.next_epoch = warmup_epochs
        self.num_conv = len(conv)
        if conv:
            in_dim = self._build_conv(conv, encoder, encoder_params, embedding_dim, kernel_size, padding, pool,
                                      batch_norm, activation, feature)
        else:  # module order (so parameter names and seeded initialisation) as before conv existed
            self.input = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim)
            in_dim = self.input.out_dim
        widths = [in_dim, *hidden]
        fc = [
            nn.ModuleList(MLP(widths[i], [widths[i + 1]], act=activation, dropout=dropout) for _ in self.branches[self.num_conv + i])
            for i in range(len(hidden))
        ]
        if conv:
            self.layers.extend(fc)
        else:
            self.layers = nn.ModuleList(fc)
        self.heads = TaskHeads(tasks, widths[-1], tower_hidden, act=activation, dropout=dropout)

    def _build_conv(
        self, conv: list[int], encoder: str, encoder_params: dict[str, Any], embedding_dim: int, kernel_size: int,
        padding: str, pool: int, batch_norm: bool, activation: str, feature: str | None,
    ) -> int:
        """The branchable conv layers over the image and the shared input of the other features;
        returns the width the first fc layer (or the heads) reads."""
        if encoder != "tabular" or encoder_params:
            raise ValueError(
                f"fafs: conv reads the image feature itself, so encoder/encoder_params must stay at their defaults "
                f"(got encoder={encoder!r}, encoder_params={dict(encoder_params)!r}); drop conv to use an encoder"
            )
        self.feature = _image_feature(self.input_spec, feature)
        channels, height, width = self.input_spec.dense[self.feature]
        self.layers = nn.ModuleList()
        self.pools_above: list[int] = []
        for i, c_out in enumerate(conv):
            c_in = channels if i == 0 else conv[i - 1]
            blocks = [ConvBlock(c_in, c_out, kernel_size=kernel_size, padding=padding, pool=pool, batch_norm=batch_norm,
                                act=activation) for _ in self.branches[i]]
            height, width = blocks[0].out_size(height, width)
            if min(height, width) < 1:
                raise ValueError(
                    f"fafs: image {self.feature!r} of shape {list(self.input_spec.dense[self.feature])} is too small for "
                    f"conv={conv} with kernel_size={kernel_size}, padding={padding!r}, pool={pool}"
                )
            self.layers.append(nn.ModuleList(blocks))
        # p_l of Lu et al.: the pools of this block and of every conv block above it
        per_block = [int(pool > 1)] * len(conv)
        self.pools_above = [sum(per_block[i:]) for i in range(len(conv))]
        others = replace(self.input_spec, dense={n: s for n, s in self.input_spec.dense.items() if n != self.feature})
        self.rest = rest_input(others, embedding_dim)
        check_task_levels(self.tasks, None, "fafs (conv)")
        return conv[-1] * height * width + (self.rest.out_dim if self.rest is not None else 0)

    def _check_tree(self, num_tasks: int, depth: int) -> None:
        if len(self.branches) != depth:
            raise ValueError(f"branches: {len(self.branches)} layers given for {depth} layers (conv + hidden)")
        for i, layer in enumerate(self.branches):
            if sorted(t for g in layer for t in g) != list(range(num_tasks)):
                raise ValueError(f"branches[{i}]: every task index 0..{num_tasks - 1} must appear exactly once")
            if i and any(not any(set(g) <= set(p) for p in self.branches[i - 1]) for g in layer):
                raise ValueError(f"branches[{i}]: each branch must lie inside one branch of the layer below")

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        rest = None
        if self.num_conv:
            x = features[f"dense:{self.feature}"]
            if self.capture_representation and len(self.branches[0]) > 1:
                x = x.detach().requires_grad_(True)  # nothing shared above the image: it is the shared input
            rest = self.rest(features) if self.rest is not None else None
        else:
            x = self.input(features)
        outputs: list[Tensor] = [x]  # outputs of the branches of the layer below, by branch index
        below: Groups = [list(range(len(self.tasks)))]
        shared = x  # the output of the last layer every task still shares (the input, at worst)
        for i, (groups, modules) in enumerate(zip(self.branches, self.layers)):
            if i and i == self.num_conv:
                outputs = [self._flatten(o, rest) for o in outputs]
            parents = [next(j for j, p in enumerate(below) if set(g) <= set(p)) for g in groups]
            outputs = [m(outputs[j]) for m, j in zip(modules, parents)]
            if len(groups) == 1:
                shared = outputs[0]
            below = groups
        if self.num_conv == len(self.layers):  # no fc layer: the heads read the flattened maps
            outputs = [self._flatten(o, rest) for o in outputs]
        self.share(shared)  # recorded only; every branch above reads this tensor
        if len(below) == 1:
            return self.read_out(self.heads(outputs[0]), features)
        owner = {t: i for i, g in enumerate(below) for t in g}
        return self.read_out(self.heads(torch.stack([outputs[owner[t]] for t in range(len(self.tasks))])), features)

    @staticmethod
    def _flatten(maps: Tensor, rest: Tensor | None) -> Tensor:
        x = maps.flatten(1)
        return x if rest is None else torch.cat([x, rest], dim=1)

    def shared_modules(self) -> list[nn.Module]:
        """The input (with ``conv``: the input of the non-image features, if any) and every layer
        still shared by all tasks."""
        if self.num_conv:
            inputs: list[nn.Module] = [self.rest] if self.rest is not None else []
        else:
            inputs = [self.input]
        return inputs + [m[0] for m, g in zip(self.layers, self.branches) if len(g) == 1]

    # -- widening --------------------------------------------------------------------------------
    def adapt(self, epoch: int, probe: Callable[[], Tensor]) -> bool:
        """Widen the active layer when its epoch comes; True if the parameters changed."""
        if self.active is None or epoch < self.next_epoch:
            return False
        layer = self.active
        self.active = layer - 1 if layer > 0 else None
        self.next_epoch = epoch + self.widen_every
        return self.widen_layer(layer, easy_hard_affinity(probe().cpu()))

    def pools_above_layer(self, layer: int) -> int:
        """``p_l`` of the branching cost: pooling layers above ``layer`` (0 for fc layers)."""
        return self.pools_above[layer] if layer < self.num_conv else 0

    def widen_layer(self, layer: int, task_affinity: Tensor) -> bool:
        """Split each branch of ``layer`` by grouping the branches above it (per-task output
        branches for the top layer) on their affinity; new branches copy the old weights."""
        above = self.branches[layer + 1] if layer + 1 < len(self.branches) else [[t] for t in range(len(self.tasks))]
        pools = self.pools_above_layer(layer)
        new_groups: Groups = []
        new_modules: list[nn.Module] = []
        for group, module in zip(self.branches[layer], self.layers[layer]):
            children = [c for c in above if set(c) <= set(group)]
            if len(children) > 1:
                clusters = group_branches(branch_affinity(task_affinity, children), lam=self.lam,
                                          unit_cost=self.unit_cost, pools_above=pools)
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
        """Per layer (bottom first: the conv layers, then the hidden fc layers), the branches as
        lists of task names."""
        return [[[self.task_names[t] for t in g] for g in layer] for layer in self.branches]

    def structure(self) -> dict[str, Any]:
        return {"branches": [[list(g) for g in layer] for layer in self.branches], "widen": False}

    def diagnostics(self) -> dict[str, Any]:
        return {"branches": self.branch_tree()}
