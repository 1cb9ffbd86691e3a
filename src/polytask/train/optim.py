"""Optimisers and learning-rate schedulers by config name, and the optimiser's parameter groups.

Options are checked against torch's own signatures (unknown keys and wrong types are a
:class:`~polytask.errors.ConfigError` naming the key), and values torch itself rejects
(``eps=-1``) become a ConfigError too, raised when the trainer is built, before training.

:func:`parameter_groups` applies ``train.lr_scale`` (per-parameter learning-rate multipliers by
name pattern, e.g. a smaller rate for a pretrained trunk than for the new task layers) on top of
the model's own :meth:`~polytask.models.base.MultiTaskModel.optimizer_groups`;
:func:`match_parameters` is the name matching it shares with ``train.freeze``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
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


#: optimisers with a fused implementation (one kernel updates every parameter of a group)
FUSED = ("adam", "adamw")


def create_optimizer(name: str, params: Iterable[torch.nn.Parameter], options: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``adam`` (default), ``adamw``, ``sgd``, ``adagrad`` or ``rmsprop`` with torch's keyword options.

    Adam and AdamW default to torch's fused implementation (``fused: true``) when every parameter
    is a float tensor on the CPU or a CUDA device: the same update in one kernel per group instead
    of a dozen small operations per parameter (about 5 % of a training step on the speed
    benchmark's MMoE). ``fused: false`` (or ``foreach``) in the optimizer options chooses otherwise."""
    params = list(params)
    options = dict(options)
    if name in FUSED and "fused" not in options and "foreach" not in options and _fusable(params):
        options["fused"] = True
    return _build("optimizer", name, OPTIMIZERS, params, options, "params")


def _fusable(params: list) -> bool:
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(tensors) and all(
        p.is_floating_point() and p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
        and p.device.type in ("cpu", "cuda") and not p.is_sparse for p in tensors
    )


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


def parameter_prefixes(names: Iterable[str], limit: int = 10) -> str:
    """The distinct first two dotted parts of ``names`` (``input.trunk``, ``columns.layers``), for
    hints: which names a pattern could have meant."""
    seen = list(dict.fromkeys(".".join(n.split(".")[:2]) for n in names))
    return ", ".join(seen[:limit]) + (f", ... ({len(seen)} in all)" if len(seen) > limit else "")


def match_parameters(model: torch.nn.Module, patterns: Sequence[str], key: str) -> dict[str, list[str]]:
    """``{pattern: names of model.named_parameters() it matches}`` (shell-style patterns,
    :func:`fnmatch.fnmatchcase`). A pattern matching nothing is a ConfigError naming ``key`` and the
    pattern, with the parameter-name prefixes the model has."""
    names = [n for n, _ in model.named_parameters()]
    matched = {}
    for pattern in patterns:
        found = [n for n in names if fnmatchcase(n, pattern)]
        if not found:
            raise ConfigError(
                f"{key}: {pattern!r} matches no parameter of the model (parameter names start with "
                f"{parameter_prefixes(names)}; patterns are shell-style, e.g. 'input.trunk.*')"
            )
        matched[pattern] = found
    return matched


def parameter_groups(
    model: torch.nn.Module, groups: Iterable[Mapping[str, Any]], lr: float, lr_scale: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """The optimiser's groups ``{"params", "lr"}`` from the model's ``groups``
    (:meth:`~polytask.models.base.MultiTaskModel.optimizer_groups`, each with an optional
    ``lr_scale``) and ``lr_scale`` (``train.lr_scale``: ``{pattern: factor}``). A parameter trains
    at ``lr * group lr_scale * factor``, the factor of the first pattern (in the given order) its
    name matches, 1 if none. Each group is split by factor, in order, so without ``lr_scale`` the
    groups are the model's. A pattern matching no parameter is a ConfigError naming ``train.lr_scale``."""
    scale = dict(lr_scale or {})
    if scale:
        match_parameters(model, list(scale), "train.lr_scale")
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for group in groups:
        base = lr * float(group.get("lr_scale", 1.0))
        split: dict[float, list[torch.nn.Parameter]] = {}
        for p in group["params"]:
            name = names.get(id(p))
            factor = next((f for pattern, f in scale.items() if name is not None and fnmatchcase(name, pattern)), 1.0)
            split.setdefault(float(factor), []).append(p)
        out.extend({"params": params, "lr": base * factor} for factor, params in split.items())
    return out
