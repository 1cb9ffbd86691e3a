"""The ``cnn`` input encoder: a configurable convolutional network over one ``dense`` image feature.

The default layout is the MultiMNIST encoder of Sener & Koltun (NeurIPS 2018; MGDA's
``MultiLeNetR``): conv 1->10 (5x5), max-pool 2, ReLU, conv 10->20 (5x5), max-pool 2, ReLU,
flatten (20 x 4 x 4 = 320 at 28x28), linear -> 50, ReLU. Its parameter names and its
initialisation for a given seed are fixed (the MultiMNIST benchmark depends on them): the
settings below only add or resize layers when changed from their defaults.

Deeper or wider networks are one config away: ``channels`` (one conv block per entry), ``width``
(a multiplier of every channel count, as in wide ResNets' ``k``), ``padding`` (``valid``: no
padding, the image shrinks by ``kernel_size - 1`` per block; ``same``: zero padding keeps the
size, so more blocks fit before pooling exhausts the image), ``batch_norm`` (BatchNorm2d after each
convolution, Ioffe & Szegedy 2015) and ``hidden`` (fully connected layers between the flattened
maps and the output ``dim``). The flattened size follows from the image shape.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import InputEncoder
from polytask.encoders.tabular import rest_input
from polytask.registry import ENCODERS


def image_feature(spec: InputSpec, feature: str | None = None) -> str:
    """The name of the image feature to encode: ``feature`` if given (it must be a 3-D dense
    feature), else the only 3-D (``[C, H, W]``) dense feature. ValueError otherwise."""
    images = [name for name, shape in spec.dense.items() if len(shape) == 3]
    if feature is not None:
        if feature not in spec.dense:
            known = ", ".join(f"{n} {s}" for n, s in spec.dense.items()) or "none"
            raise ValueError(f"encoder 'cnn': feature {feature!r} is not a dense feature (dense features: {known})")
        if len(spec.dense[feature]) != 3:
            raise ValueError(
                f"encoder 'cnn': dense feature {feature!r} has shape {spec.dense[feature]}, "
                "but an image needs 3 dimensions [channels, height, width]"
            )
        return feature
    if len(images) != 1:
        dense = ", ".join(f"{n} {s}" for n, s in spec.dense.items()) or "none"
        raise ValueError(
            "encoder 'cnn' needs exactly one dense feature of shape [channels, height, width] "
            f"(or encoder_params.feature naming one); dense features: {dense}"
        )
    return images[0]


@ENCODERS.register("cnn")
class ImageEncoder(InputEncoder):
    """Convolutional network (LeNet-style by default) over one image feature: one row per example.

    ``features["dense:<feature>"]`` ``[B, C, H, W]`` -> ``[B, out_dim]``. Every other input feature of ``spec`` (numeric, categorical, sequences, other dense tensors)
    goes through a :class:`TabularInput` and is concatenated after the image embedding, so no
    declared feature is silently dropped.

    Args:
        spec: the input spec (see :class:`~polytask.data.schema.InputSpec`).
        feature: the image feature; by default the only 3-D dense feature.
        channels: output channels of each conv block (conv, [batch norm], max-pool, ReLU).
        width: multiplier of every channel count (rounded, at least 1).
        kernel_size: square kernel of every convolution (stride 1).
        padding: ``valid`` (none) or ``same`` (zero padding that keeps the spatial size).
        pool: max-pool window and stride after every convolution (1 = no pooling).
        batch_norm: BatchNorm2d after every convolution.
        hidden: widths of fully connected ReLU layers between the flattened maps and ``dim``.
        dim: width of the final linear layer (the image embedding, followed by a ReLU).
        embedding_dim: embedding width of the other (categorical, sequence) features.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        feature: str | None = None,
        channels: list[int] = [10, 20],  # noqa: B006 - read-only default
        width: float = 1.0,
        kernel_size: int = 5,
        padding: Literal["valid", "same"] = "valid",
        pool: int = 2,
        batch_norm: bool = False,
        hidden: list[int] = [],  # noqa: B006 - read-only default
        dim: int = 50,
        embedding_dim: int = 4,
    ) -> None:
        super().__init__()
        self.feature = image_feature(spec, feature)
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"encoder 'cnn': channels must be a non-empty list of positive integers, got {channels!r}")
        if kernel_size < 1 or pool < 1 or dim < 1:
            raise ValueError(
                f"encoder 'cnn': kernel_size, pool and dim must be >= 1, got {kernel_size!r}, {pool!r}, {dim!r}"
            )
        if not width > 0:
            raise ValueError(f"encoder 'cnn': width must be > 0, got {width!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"encoder 'cnn': padding must be 'valid' or 'same', got {padding!r}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"encoder 'cnn': hidden must list positive widths, got {hidden!r}")
        channels = [max(1, round(c * width)) for c in channels]
        in_channels, height, img_width = spec.dense[self.feature]
        layers: list[nn.Module] = []
        size = [height, img_width]
        shrink = kernel_size - 1 if padding == "valid" else 0
        for c_in, c_out in zip([in_channels, *channels[:-1]], channels):
            size = [(s - shrink) // pool for s in size]
            if min(size) < 1:
                raise ValueError(
                    f"encoder 'cnn': image {self.feature!r} of shape {spec.dense[self.feature]} is too small for "
                    f"{len(channels)} conv blocks with kernel_size={kernel_size}, padding={padding!r}, pool={pool}"
                )
            # module order (and so parameter names and seeded initialisation) of the default is fixed
            layers.append(nn.Conv2d(c_in, c_out, kernel_size, padding=0 if padding == "valid" else "same"))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            if pool > 1:
                layers.append(nn.MaxPool2d(pool))
            layers.append(nn.ReLU())
        self.conv = nn.Sequential(*layers)
        self.flat_dim = channels[-1] * size[0] * size[1]
        fc: list[nn.Module] = []
        for w_in, w_out in zip([self.flat_dim, *hidden], [*hidden, dim]):
            fc += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.fc = nn.Sequential(*fc)
        self.rest = rest_input(replace(spec, dense={n: s for n, s in spec.dense.items() if n != self.feature}), embedding_dim)
        self.out_dim = dim + (self.rest.out_dim if self.rest is not None else 0)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = self.fc(self.conv(features[f"dense:{self.feature}"]).flatten(1))
        if self.rest is None:
            return x
        return torch.cat([x, self.rest(features)], dim=1)
