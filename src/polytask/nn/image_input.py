"""The model side of image features: uint8 pixels -> normalised float input, augmented in training.

An ``image`` feature is encoded once, as ``uint8 [N, C, H, W]`` pixels
(:class:`polytask.data.images.ImageEncoder`); every :class:`~polytask.models.base.MultiTaskModel`
whose input spec has images builds an :class:`ImageInputs` and applies it to the features before
each forward pass, so the trainer, evaluation, prediction and data-parallel training all feed the
model the same way without knowing about images.

Per image feature (``InputSpec.images[name]``), on ``features["dense:<name>"]``:

1. training mode only, ``crop > 0``: pad ``crop`` black (0) pixels on every side and take a random
   ``H x W`` window, one per example (torchvision's ``RandomCrop(size, padding=crop)``): offsets
   ``dy = randint(0, 2 * crop + 1, (B,))`` then ``dx`` likewise, so the image moves by
   ``dy - crop`` rows and ``dx - crop`` columns;
2. training mode only, ``flip``: mirror left-right the examples where ``rand(B) < 0.5``;
3. ``x / 255`` for uint8 pixels (float input is taken to be already in [0, 1] pixel units), then
   ``(x - mean) / std`` per channel.

The random numbers come from torch's global generator on the input's device (so a seeded run
repeats), drawn only when an augmentation is on, in the order above; the augmentations are
vectorised over the batch. ``mean`` and ``std`` are non-persistent buffers: they come from the
input spec, and a model's state dict is the same with or without images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def random_crop(x: Tensor, crop: int) -> Tensor:
    """``x`` ``[B, C, H, W]`` padded by ``crop`` zeros on every side, then cropped back to
    ``H x W`` at a random offset per example (see the module docstring for the draws)."""
    if crop <= 0:
        return x
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * crop + 1, (b,), device=x.device)
    dx = torch.randint(0, 2 * crop + 1, (b,), device=x.device)
    padded = F.pad(x, (crop, crop, crop, crop)).permute(0, 2, 3, 1)  # [B, H + 2c, W + 2c, C]
    rows = dy[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = dx[:, None] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_flip(x: Tensor) -> Tensor:
    """``x`` ``[B, C, H, W]`` with each example mirrored left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class ImageInputs(nn.Module):
    """``features`` -> a new dict in which every image ``dense:<name>`` is float, normalised and
    (in training mode) augmented; every other entry is passed through as it is.

    Args:
        images: ``InputSpec.images``: name -> ``{"mean": [C], "std": [C], "flip": bool, "crop": int}``.
    """

    def __init__(self, images: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__()
        self.names = list(images)
        self.flip = [bool(images[n].get("flip", False)) for n in self.names]
        self.crop = [int(images[n].get("crop", 0)) for n in self.names]
        for i, name in enumerate(self.names):
            mean = torch.tensor(images[name]["mean"], dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(images[name]["std"], dtype=torch.float32).view(1, -1, 1, 1)
            # by position: a feature name may hold characters a buffer name cannot
            self.register_buffer(f"mean_{i}", mean, persistent=False)
            self.register_buffer(f"std_{i}", std, persistent=False)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(features)
        for i, name in enumerate(self.names):
            key = f"dense:{name}"
            x = out.get(key)
            if x is None:
                continue
            if self.training:
                x = random_crop(x, self.crop[i])
                if self.flip[i]:
                    x = random_flip(x)
            mean, std = getattr(self, f"mean_{i}"), getattr(self, f"std_{i}")
            x = x.to(mean.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(mean.dtype)
            out[key] = (x - mean) / std
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{n} (flip={f}, crop={c})" for n, f, c in zip(self.names, self.flip, self.crop))


def apply_image_inputs(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook of a model holding ``image_inputs``: its features (the first positional
    argument, or ``features=``) go through :class:`ImageInputs` first. A module-level function
    taking the model, so a deep copy of the model keeps a hook on the copy."""
    if args:
        return (model.image_inputs(args[0]), *args[1:]), kwargs
    if "features" in kwargs:
        return args, {**kwargs, "features": model.image_inputs(kwargs["features"])}
    return None
