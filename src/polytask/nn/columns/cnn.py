"""The ``cnn`` column family: one convolutional network per task over an image feature.

As in cross-stitch networks (Misra, Shrivastava, Gupta, Hebert, CVPR 2016), every task has its own
copy of a conv net (here LeNet-style blocks like the ``cnn`` encoder: conv ``kernel_size`` ->
max-pool ``pool`` -> activation, ``hidden`` channels per block), and units between the blocks mix
the tasks' activations per channel. A block of all T columns is ONE grouped convolution: the
columns' inputs ``[T, B, C, H, W]`` are laid out as ``[B, T*C, H, W]`` and convolved with
``groups=T``, whose weight ``[T*C_out, C_in, k, k]`` is the T columns' weights stacked
(``weight.view(T, C_out, C_in, k, k)``).

The read-out flattens each column's last feature maps, applies a per-task fully connected layer
(``dim`` units, activation) and concatenates the example's other features through a per-task
``tabular`` input (per task so that the columns share nothing but what units share).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.nn.columns.base import ColumnFamily, per_task_rest, stack_modules
from polytask.nn.experts import ParallelLinear
from polytask.nn.mlp import activation
from polytask.registry import COLUMNS


def image_feature(spec: InputSpec, feature: str | None) -> str:
    """``feature`` (a 3-D dense feature) or else the only 3-D dense feature; ValueError otherwise."""
    images = [name for name, shape in spec.dense.items() if len(shape) == 3]
    dense = ", ".join(f"{n} {s}" for n, s in spec.dense.items()) or "none"
    if feature is not None and feature not in images:
        raise ValueError(
            f"model.column_params.feature: {feature!r} is not a dense feature of shape [channels, height, width] "
            f"(dense features: {dense})"
        )
    if feature is None and len(images) != 1:
        raise ValueError(
            "columns 'cnn' need exactly one dense feature of shape [channels, height, width] "
            f"(or column_params.feature naming one); dense features: {dense}"
        )
    return feature if feature is not None else images[0]


class ConvColumnLayer(nn.Module):
    """One conv block of every task's column as a grouped convolution: ``[T, B, C_in, H, W] ->
    [T, B, C_out, H', W']``."""

    def __init__(self, num_tasks: int, in_channels: int, out_channels: int, *, kernel_size: int, pool: int,
                 act: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.num_tasks, self.out_channels = num_tasks, out_channels
        # groups=T initialises each group like a separate Conv2d(in_channels, out_channels, k)
        self.conv = nn.Conv2d(num_tasks * in_channels, num_tasks * out_channels, kernel_size, groups=num_tasks)
        self.pool = nn.MaxPool2d(pool) if pool > 1 else nn.Identity()
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    @property
    def weight(self) -> Tensor:
        """The columns' kernels ``[T, C_out, C_in, k, k]`` (a view of the grouped weight)."""
        w = self.conv.weight
        return w.view(self.num_tasks, self.out_channels, *w.shape[1:])

    def forward(self, h: Tensor) -> Tensor:
        t, b = h.shape[:2]
        x = h.transpose(0, 1).reshape(b, -1, *h.shape[3:])  # [B, T*C, H, W]: task t's channels are group t
        y = self.dropout(self.act(self.pool(self.conv(x))))
        return y.view(b, t, self.out_channels, *y.shape[2:]).transpose(0, 1)


@COLUMNS.register("cnn")
class CNNColumns(ColumnFamily):
    """Per-task conv nets over one image feature, all tasks as one grouped convolution per block.

    Args:
        spec: the input spec.
        num_tasks: T.
        hidden: output channels of each conv block.
        embedding_dim: width of the other features' embeddings (per-task ``tabular`` inputs).
        encoder, encoder_params: must be left at ``tabular`` / empty (the columns read the image).
        act, dropout: after every block (and ``act`` after the fully connected layer).
        feature: the image feature; by default the only 3-D dense feature.
        kernel_size: square kernel of every convolution (no padding, stride 1).
        pool: max-pool window and stride after every convolution (1 = none).
        dim: units of the per-task fully connected layer after the last block.
    """

    channel_dim = 2
    takes_encoder = False

    def __init__(
        self,
        spec: InputSpec,
        num_tasks: int,
        hidden: list[int],
        *,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: Mapping[str, Any] | None = None,
        act: str = "relu",
        dropout: float = 0.0,
        feature: str | None = None,
        kernel_size: int = 5,
        pool: int = 2,
        dim: int = 50,
    ) -> None:
        super().__init__(num_tasks)
        self.feature = image_feature(spec, feature)
        if not hidden or any(c < 1 for c in hidden):
            raise ValueError(f"model.hidden: cnn columns need a non-empty list of positive channel counts, got {hidden}")
        for key, value in (("kernel_size", kernel_size), ("pool", pool), ("dim", dim)):
            if value < 1:
                raise ValueError(f"model.column_params.{key}: must be >= 1, got {value!r}")
        in_channels, *size = spec.dense[self.feature]
        layers, self.sizes = [], []
        for c_in, c_out in zip([in_channels, *hidden[:-1]], hidden):
            size = [(s - kernel_size + 1) // pool for s in size]
            if min(size) < 1:
                raise ValueError(
                    f"model.hidden: image {self.feature!r} of shape {spec.dense[self.feature]} is too small for "
                    f"{len(hidden)} conv blocks with kernel_size={kernel_size}, pool={pool}"
                )
            layers.append(ConvColumnLayer(num_tasks, c_in, c_out, kernel_size=kernel_size, pool=pool, act=act,
                                          dropout=dropout))
            self.sizes.append(tuple(size))
        self.layers = nn.ModuleList(layers)
        self.widths = list(hidden)
        self.fc = ParallelLinear(num_tasks, hidden[-1] * size[0] * size[1], dim)
        self.fc_act = activation(act)
        self.rest = per_task_rest(replace(spec, dense={n: s for n, s in spec.dense.items() if n != self.feature}),
                                  num_tasks, embedding_dim)
        self.out_dim = dim + (self.rest.out_dim if self.rest is not None else 0)

    def stem(self, features: Mapping[str, Tensor]) -> Tensor:
        x = features[f"dense:{self.feature}"]  # [B, C, H, W], the same input for every column
        return x.unsqueeze(0).expand(self.num_tasks, *x.shape)

    def read_out(self, h: Tensor, features: Mapping[str, Tensor]) -> Tensor:
        x = self.fc_act(self.fc(h.flatten(2)))  # [T, B, dim]
        return x if self.rest is None else torch.cat([x, self.rest(features)], dim=2)

    def align(self, h: Tensor, i: int) -> Tensor:
        """Layer ``i``'s maps average-pooled (adaptively) to the last layer's spatial size."""
        super().align(h, i)
        if h.shape[3:] == self.sizes[-1]:
            return h
        pooled = F.adaptive_avg_pool2d(h.reshape(-1, *h.shape[2:]), self.sizes[-1])
        return pooled.view(*h.shape[:3], *self.sizes[-1])

    def layer_weights(self, i: int) -> Tensor:
        w = self.layers[i].weight  # [T, C_out, C_in, k, k]
        return w.flatten(2).transpose(1, 2)  # [T, C_in*k*k, C_out]

    def stacked_parameters(self) -> list[Tensor]:
        convs = [p for layer in self.layers
                 for p in (layer.weight, layer.conv.bias.view(self.num_tasks, -1))]
        rest = stack_modules(self.rest) if self.rest is not None else []
        return convs + list(self.fc.parameters()) + rest
