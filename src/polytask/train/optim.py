"""Optimisers and learning-rate schedulers by config name, parameters checked against torch's signatures."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from polytask.errors import ConfigError

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}
SCHEDULERS = {
    "step": torch.optim.lr_scheduler.StepLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
    "exponential": torch.optim.lr_scheduler.ExponentialLR,
    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}


def _check(cls: type, params: Mapping[str, Any], where: str, skip: tuple[str, ...]) -> dict[str, Any]:
    """Key names are checked here; torch's annotations mix floats and tensors, so values are
    left to torch's own checks (which name the argument)."""
    allowed = [p for p in inspect.signature(cls).parameters if p not in skip]
    return _names_only(params, allowed, where)


def _names_only(params: Mapping[str, Any], allowed: list[str], where: str) -> dict[str, Any]:
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (accepted: {', '.join(allowed)})")
    return dict(params)


def create_optimizer(name: str, params: Iterable[torch.nn.Parameter], options: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``adam`` (default), ``adamw``, ``sgd``, ``adagrad`` or ``rmsprop`` with torch's keyword options."""
    cls = OPTIMIZERS[name]
    checked = _check(cls, options, "optimizer", ("params",))
    return cls(list(params), **checked)


def create_scheduler(name: str, optimizer: torch.optim.Optimizer, options: Mapping[str, Any], *, epochs: int):
    """An epoch-level scheduler, or None. ``cosine`` defaults ``T_max`` to the number of epochs."""
    if name == "none":
        if options:
            _names_only(options, [], "scheduler")
        return None
    cls = SCHEDULERS[name]
    options = dict(options)
    if name == "cosine":
        options.setdefault("T_max", epochs)
    if name == "step":
        options.setdefault("step_size", max(1, epochs // 3))
    if name == "exponential":
        options.setdefault("gamma", 0.9)
    checked = _check(cls, options, "scheduler", ("optimizer",))
    return cls(optimizer, **checked)
