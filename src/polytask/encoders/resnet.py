"""The ``resnet`` input encoder: a residual network over one ``dense`` image feature.

Residual networks of He, Zhang, Ren & Sun (CVPR 2016, "Deep Residual Learning for Image
Recognition"): stacks of residual blocks ``relu(F(x) + shortcut(x))``, the shortcut a 1x1
convolution + BatchNorm ("projection shortcut", option B) where a block changes the width or the
resolution, the identity otherwise.

* ``depth: 18 | 34 | 50`` builds torchvision's ResNet-18/34/50 trunk: BasicBlock stages
  ``[2, 2, 2, 2]`` / ``[3, 4, 6, 3]`` or Bottleneck stages ``[3, 4, 6, 3]`` (1x1, 3x3, 1x1 convs,
  expansion 4, the stride on the 3x3 conv as torchvision does, "ResNet v1.5"), widths 64, 128, 256,
  512. ``depth: None`` builds a small custom network from ``blocks`` and ``widths`` (default one
  BasicBlock in each of three stages of 16, 32, 64 channels: the CIFAR layout of He et al. Sec. 4.2
  with n = 1).
* ``stem: imagenet``: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (torchvision);
  ``stem: small``: 3x3 stride-1 conv, BN, ReLU (for 28-64 px images, as the CIFAR ResNets).
  The stem has ``widths[0]`` channels; every stage after the first halves the resolution.
* Global average pooling, then, with ``dim > 0``, a Linear + ReLU to ``dim``.

The trunk's parameter and buffer names are torchvision's ``resnet18/34/50`` state-dict keys
(``conv1.weight``, ``bn1.running_mean``, ``layer2.0.downsample.0.weight``, ...; torchvision's
classifier ``fc`` is not part of the trunk), and it is initialised as torchvision does (Kaiming
normal, fan-out, for convolutions; BatchNorm weight 1, bias 0), so ``weights:`` can read a
torchvision state dict (``torch.save(resnet18(weights=...).state_dict(), "resnet18.pth")``)
without any renaming. Nothing is ever downloaded. Pretrained ImageNet weights expect ImageNet's
input normalisation and 3 channels.

Like the ``embeddings:`` file of the ``tokens`` encoder, the weights file is read only while a run
is built: a saved run being loaded rebuilds the encoder from a restored input spec
(``InputSpec.restored``) and skips the file, its checkpoint restoring the weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import InputEncoder
from polytask.encoders.cnn import image_feature
from polytask.encoders.tabular import rest_input
from polytask.errors import ConfigError
from polytask.registry import ENCODERS

#: depth -> (bottleneck blocks, blocks per stage), torchvision's ResNet-18/34/50
DEPTHS: dict[int, tuple[bool, list[int]]] = {18: (False, [2, 2, 2, 2]), 34: (False, [3, 4, 6, 3]), 50: (True, [3, 4, 6, 3])}
#: stage widths (``planes``) of the ImageNet ResNets
IMAGENET_WIDTHS = [64, 128, 256, 512]
#: where errors about the weights file point
WEIGHTS_KEY = "model.encoder_params.weights"


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """The projection shortcut (``downsample.0`` conv, ``downsample.1`` BN) where the shape changes."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first with ``stride``), each followed by BN; ReLU after the first
    and after the residual sum. Output ``planes`` channels."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(c_in, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 (reduce to ``planes``), 3x3 (with ``stride``), 1x1 (expand to ``4 * planes``)
    convolutions, each followed by BN; ReLU between them and after the residual sum."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(c_in, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetTrunk(nn.Module):
    """Stem, residual stages ``layer1..layerN``, global average pooling: ``[B, C, H, W]`` ->
    ``[B, out_dim]``. Its state dict is torchvision's ResNet's without ``fc.*``.

    Args:
        in_channels: channels of the input image.
        blocks: residual blocks per stage.
        widths: ``planes`` of each stage (a stage outputs ``planes * expansion`` channels); the
            stem has ``widths[0]`` channels.
        bottleneck: Bottleneck blocks (expansion 4) instead of BasicBlocks.
        stem: ``imagenet`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or ``small`` (3x3/1 conv, BN, ReLU).
    """

    def __init__(
        self, in_channels: int, blocks: list[int], widths: list[int], *, bottleneck: bool = False,
        stem: Literal["imagenet", "small"] = "imagenet",
    ) -> None:
        super().__init__()
        block = Bottleneck if bottleneck else BasicBlock
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        c_in = widths[0]
        self.stages: list[str] = []
        for i, (n, planes) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(block(c_in, planes, 2 if i > 0 and j == 0 else 1))
                c_in = planes * block.expansion
            self.stages.append(f"layer{i + 1}")
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c_in
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.avgpool(x).flatten(1)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a torch state-dict file (``torch.load(..., weights_only=True)``): the file's
    dict itself, or the dict under its ``state_dict`` or ``model`` key (a training checkpoint).
    ConfigError naming ``model.encoder_params.weights`` and the file otherwise."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise ConfigError(
            f"{WEIGHTS_KEY}: {source}: file not found (nothing is downloaded: save the weights first, e.g. "
            "torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), 'resnet18.pth'))"
        )
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated, foreign or pickled-object file
        raise ConfigError(f"{WEIGHTS_KEY}: {source}: cannot be read as a torch state dict ({' '.join(str(exc).split())[:200]})") from None
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise ConfigError(f"{WEIGHTS_KEY}: {source}: holds no state dict (a dict of tensors, or one under 'state_dict' or 'model')")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ConfigError(f"{WEIGHTS_KEY}: {source}: {key!r} is not a named tensor; the file holds no state dict")
    return dict(state)


def load_trunk_weights(trunk: ResNetTrunk, path: str | os.PathLike, *, describe: str = "the trunk") -> None:
    """Copy a torchvision-format state dict into ``trunk``: every trunk key must be in the file
    with the trunk's shape (``num_batches_tracked``, absent from old torchvision files, may be
    missing), ``fc.*`` is ignored and any other key of the file is refused (a deeper network's
    weights would otherwise half-load). One ConfigError naming the file and the first bad key."""
    source = os.fspath(path)
    state = {k: v for k, v in read_state_dict(source).items() if not k.startswith("fc.")}
    expected = trunk.state_dict()
    prefix = f"{WEIGHTS_KEY}: {source}"
    for key, mine in expected.items():
        theirs = state.get(key)
        if theirs is None:
            if key.endswith("num_batches_tracked"):
                continue
            hint = " (the file's keys start with 'module.': strip that prefix)" if any(k.startswith("module.") for k in state) else ""
            raise ConfigError(f"{prefix}: {key} is missing; {describe} expects it{hint}")
        if theirs.shape != mine.shape:
            raise ConfigError(f"{prefix}: {key} has shape {list(theirs.shape)}, {describe} expects {list(mine.shape)}"
                              f"{_shape_hint(key, theirs, mine)}")
        if theirs.is_floating_point() and not torch.isfinite(theirs).all():
            raise ConfigError(f"{prefix}: {key} holds a value that is not finite")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ConfigError(
            f"{prefix}: {extra[0]} is not a key of {describe} ({len(extra)} such key(s): the weights of a deeper or "
            "different network? choose the depth the file was saved from)"
        )
    trunk.load_state_dict({k: v for k, v in state.items()}, strict=False)


def _shape_hint(key: str, theirs: Tensor, mine: Tensor) -> str:
    if key != "conv1.weight":
        return ""
    if theirs.shape[1] != mine.shape[1]:
        return (f": the weights take {theirs.shape[1]}-channel images but the image feature has {mine.shape[1]} "
                f"channel(s); pretrained ImageNet ResNets need 3 (RGB) channels")
    if theirs.shape[2:] != mine.shape[2:]:
        return (f": the file's stem is a {theirs.shape[2]}x{theirs.shape[3]} convolution, this encoder's a "
                f"{mine.shape[2]}x{mine.shape[3]} one (stem: imagenet is 7x7, stem: small 3x3)")
    return ""


@ENCODERS.register("resnet")
class ResNetEncoder(InputEncoder):
    """A residual network (He et al., CVPR 2016) over one image feature: one row per example.

    ``features["dense:<feature>"]`` ``[B, C, H, W]`` -> ``[B, out_dim]``; every other feature of
    ``spec`` goes through a :class:`TabularInput` and is concatenated after the image vector.

    Args:
        spec: the input spec (see :class:`~polytask.data.schema.InputSpec`).
        feature: the image feature; by default the only 3-D dense feature.
        depth: 18, 34 or 50 for torchvision's ResNet-18/34/50; None for the custom ``blocks``/``widths``.
        stem: ``imagenet`` (7x7/2 conv + 3x3/2 max-pool) or ``small`` (3x3/1 conv, for 28-64 px images).
        blocks: residual blocks per stage (custom network; default ``[1, 1, 1]``).
        widths: width of each stage (custom network; default ``[16, 32, 64]``).
        bottleneck: Bottleneck blocks (expansion 4) in the custom network (``depth: 50`` has them).
        dim: 0: the pooled trunk output is the image vector; else a Linear + ReLU to ``dim``.
        weights: a torch state-dict file in torchvision's format loaded into the trunk (``fc.*``
            ignored); read only while a run is built, not when a saved run is loaded.
        embedding_dim: embedding width of the other (categorical, sequence) features.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        feature: str | None = None,
        depth: Literal[18, 34, 50] | None = None,
        stem: Literal["imagenet", "small"] = "imagenet",
        blocks: list[int] | None = None,
        widths: list[int] | None = None,
        bottleneck: bool = False,
        dim: int = 0,
        weights: str | None = None,
        embedding_dim: int = 4,
    ) -> None:
        super().__init__()
        try:
            self.feature = image_feature(spec, feature)
        except ValueError as exc:  # image_feature speaks for the cnn encoder
            raise ValueError(str(exc).replace("encoder 'cnn'", "encoder 'resnet'")) from None
        if stem not in ("imagenet", "small"):
            raise ValueError(f"encoder 'resnet': stem must be 'imagenet' or 'small', got {stem!r}")
        if dim < 0:
            raise ValueError(f"encoder 'resnet': dim must be >= 0 (0: no projection), got {dim!r}")
        if depth is not None:
            if depth not in DEPTHS:
                raise ValueError(f"encoder 'resnet': depth must be 18, 34, 50 or None, got {depth!r}")
            given = [k for k, v in (("blocks", blocks), ("widths", widths)) if v is not None]
            if given:
                raise ValueError(f"encoder 'resnet': {' and '.join(given)} describe a custom network; depth {depth} "
                                 "has its own layout (leave depth unset to use them)")
            if bottleneck and not DEPTHS[depth][0]:
                raise ValueError(f"encoder 'resnet': ResNet-{depth} has basic blocks; bottleneck is for the custom network")
            bottleneck, blocks, widths = DEPTHS[depth][0], DEPTHS[depth][1], IMAGENET_WIDTHS
        blocks = [1, 1, 1] if blocks is None else list(blocks)
        widths = [16, 32, 64] if widths is None else list(widths)
        if not blocks or any(n < 1 for n in blocks):
            raise ValueError(f"encoder 'resnet': blocks must be a non-empty list of positive integers, got {blocks!r}")
        if len(widths) != len(blocks) or any(w < 1 for w in widths):
            raise ValueError(f"encoder 'resnet': widths must give one positive width per stage of blocks {blocks!r}, "
                             f"got {widths!r}")
        self.depth, self.weights = depth, weights
        in_channels = spec.dense[self.feature][0]
        self.trunk = ResNetTrunk(in_channels, blocks, widths, bottleneck=bottleneck, stem=stem)
        if weights is not None and not spec.restored:
            load_trunk_weights(self.trunk, weights)
        self.project = nn.Sequential(nn.Linear(self.trunk.out_dim, dim), nn.ReLU()) if dim else None
        self.rest = rest_input(replace(spec, dense={n: s for n, s in spec.dense.items() if n != self.feature}), embedding_dim)
        self.out_dim = (dim or self.trunk.out_dim) + (self.rest.out_dim if self.rest is not None else 0)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = self.trunk(features[f"dense:{self.feature}"])
        if self.project is not None:
            x = self.project(x)
        if self.rest is None:
            return x
        return torch.cat([x, self.rest(features)], dim=1)
