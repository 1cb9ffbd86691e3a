"""The ``cnn`` input encoder: a small LeNet-style CNN over one ``dense`` image feature.

The default layout is the MultiMNIST encoder of Sener & Koltun (NeurIPS 2018; MGDA's
``MultiLeNetR``): conv 1->10 (5x5), max-pool 2, ReLU, conv 10->20 (5x5), max-pool 2, ReLU,
flatten (20 x 4 x 4 = 320 at 28x28), linear -> 50, ReLU. Channel counts, kernel, pooling and the
output width are parameters; the flattened size follows from the image shape.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import InputEncoder
from polytask.encoders.tabular import TabularInput
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
    """LeNet-style CNN: ``features["dense:<feature>"]`` ``[B, C, H, W]`` -> ``[B, out_dim]``.

    Every other input feature of ``spec`` (numeric, categorical, sequences, other dense tensors)
    goes through a :class:`TabularInput` and is concatenated after the image embedding, so no
    declared feature is silently dropped.

    Args:
        spec: the input spec (see :class:`~polytask.data.schema.InputSpec`).
        feature: the image feature; by default the only 3-D dense feature.
        channels: output channels of each conv block (conv, max-pool, activation).
        kernel_size: square kernel of every convolution (no padding, stride 1).
        pool: max-pool window and stride after every convolution (1 = no pooling).
        dim: width of the final linear layer (the image embedding).
        embedding_dim: embedding width of the other (categorical, sequence) features.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        feature: str | None = None,
        channels: list[int] = [10, 20],  # noqa: B006 - read-only default
        kernel_size: int = 5,
        pool: int = 2,
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
        in_channels, height, width = spec.dense[self.feature]
        layers: list[nn.Module] = []
        size = [height, width]
        for c_in, c_out in zip([in_channels, *channels[:-1]], channels):
            size = [(s - kernel_size + 1) // pool for s in size]
            if min(size) < 1:
                raise ValueError(
                    f"encoder 'cnn': image {self.feature!r} of shape {spec.dense[self.feature]} is too small for "
                    f"{len(channels)} conv blocks with kernel_size={kernel_size}, pool={pool}"
                )
            layers += [nn.Conv2d(c_in, c_out, kernel_size)]
            if pool > 1:
                layers.append(nn.MaxPool2d(pool))
            layers.append(nn.ReLU())
        self.conv = nn.Sequential(*layers)
        self.flat_dim = channels[-1] * size[0] * size[1]
        self.fc = nn.Sequential(nn.Linear(self.flat_dim, dim), nn.ReLU())
        rest = replace(spec, dense={n: s for n, s in spec.dense.items() if n != self.feature})
        has_rest = rest.numeric_dim or rest.cardinalities or rest.sequences or rest.dense
        self.rest = TabularInput(rest, embedding_dim) if has_rest else None
        self.out_dim = dim + (self.rest.out_dim if self.rest is not None else 0)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = self.fc(self.conv(features[f"dense:{self.feature}"]).flatten(1))
        if self.rest is None:
            return x
        return torch.cat([x, self.rest(features)], dim=1)
