"""One convolutional block: conv (stride 1) -> [BatchNorm2d] -> [max-pool] -> activation.

The block order of LeNet-style image networks (and of the ``cnn`` encoder, which keeps its own
layers for fixed parameter names): pooling before the activation, as in Sener & Koltun's
MultiMNIST network; for max-pooling and a non-decreasing activation (ReLU, tanh, sigmoid) the
order does not change the function. Used by models whose convolutional layers are themselves the structure (FAFS branches
its conv layers per task group, Lu et al. 2017).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from polytask.nn.mlp import activation

Padding = Literal["valid", "same"]


def conv_output_size(size: int, *, kernel_size: int, padding: Padding, pool: int) -> int:
    """Spatial size after one block: ``valid`` shrinks by ``kernel_size - 1``, ``same`` keeps the
    size; then max-pooling (window and stride ``pool``) floors the division. Below 1: too small."""
    return (size - (kernel_size - 1 if padding == "valid" else 0)) // pool


class ConvBlock(nn.Sequential):
    """``[B, in_channels, H, W]`` -> ``[B, out_channels, H', W']`` (see :func:`conv_output_size`).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: square kernel (stride 1).
        padding: ``valid`` (none) or ``same`` (zero padding that keeps the spatial size).
        pool: max-pool window and stride (1 = no pooling layer).
        batch_norm: BatchNorm2d after the convolution (Ioffe & Szegedy 2015).
        act: activation name (see :mod:`polytask.nn.mlp`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        padding: Padding = "valid",
        pool: int = 2,
        batch_norm: bool = False,
        act: str = "relu",
    ) -> None:
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"ConvBlock: channel counts must be >= 1, got {in_channels} -> {out_channels}")
        if kernel_size < 1 or pool < 1:
            raise ValueError(f"ConvBlock: kernel_size and pool must be >= 1, got {kernel_size!r}, {pool!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"ConvBlock: padding must be 'valid' or 'same', got {padding!r}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=0 if padding == "valid" else "same")]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if pool > 1:
            layers.append(nn.MaxPool2d(pool))
        layers.append(activation(act))
        super().__init__(*layers)
        self.kernel_size, self.padding, self.pool = kernel_size, padding, pool
        self.out_channels = out_channels

    @property
    def pools(self) -> int:
        """Number of pooling layers in the block (0 or 1)."""
        return int(self.pool > 1)

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial output size for an ``height x width`` input (a size below 1 means too small)."""
        kw = {"kernel_size": self.kernel_size, "padding": self.padding, "pool": self.pool}
        return conv_output_size(height, **kw), conv_output_size(width, **kw)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 (nn.Sequential's forward, typed)
        return super().forward(x)
