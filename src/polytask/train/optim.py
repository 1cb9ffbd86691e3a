"""Optimisers and learning-rate schedulers by config name.

Options are checked against torch's own signatures (unknown keys and wrong types are a
:class:`~polytask.errors.ConfigError` naming the key), and values torch itself rejects
(``eps=-1``) become a ConfigError too, raised when the trainer is built, before training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from polytask.errors import ConfigError
from polytask.params import validate_params

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


def _build(kind: str, name: str, registry: dict[str, type], first: Any, options: Mapping[str, Any], skip: str) -> Any:
    if name not in registry:
        raise ConfigError(f"{kind}.name: unknown {kind} {name!r}; known: {', '.join(registry)}")
    cls = registry[name]
    checked = validate_params(cls, options, where=kind, skip=(skip,))
    try:
        return cls(first, **checked)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{kind} ({name}): {exc}") from None


def create_optimizer(name: str, params: Iterable[torch.nn.Parameter], options: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``adam`` (default), ``adamw``, ``sgd``, ``adagrad`` or ``rmsprop`` with torch's keyword options."""
    return _build("optimizer", name, OPTIMIZERS, list(params), options, "params")


def create_scheduler(name: str, optimizer: torch.optim.Optimizer, options: Mapping[str, Any], *, epochs: int) -> Any:
    """An epoch-level scheduler, or None for ``none``. Defaults: ``cosine`` anneals over all epochs
    (``T_max = epochs``), ``step`` decays by ``gamma=0.1`` every third of the epochs,
    ``exponential`` uses ``gamma=0.9``."""
    options = dict(options)
    if name == "none":
        if options:
            raise ConfigError(f"scheduler.{next(iter(options))}: unknown key (scheduler 'none' takes no options)")
        return None
    if name == "cosine":
        options.setdefault("T_max", epochs)
    if name == "step":
        options.setdefault("step_size", max(1, epochs // 3))
    if name == "exponential":
        options.setdefault("gamma", 0.9)
    for key in ("step_size", "T_max"):  # torch accepts 0 here and divides by it at the first step
        if key in options and isinstance(options[key], int) and options[key] < 1:
            raise ConfigError(f"scheduler.{key}: must be >= 1, got {options[key]}")
    return _build("scheduler", name, SCHEDULERS, optimizer, options, "optimizer")
