"""Reusing a trained representation for new tasks: ``train.init_from`` and ``train.freeze``.

``polytask.fit(..., init_from=<run directory or Run>, freeze="shared")`` (config:
``train: {init_from: runs/dupn, freeze: shared}``) does three things before training:

1. **Encoders.** Every feature the source run also had (same name and type, same encoding
   options apart from ``max_len``/``min_count``) is encoded with the *source run's* fitted encoder,
   so an item id means the same row of a loaded embedding table. Other features are fitted on this
   run's training split as usual.
2. **Parameters.** Every parameter and buffer of the new model whose name and shape match the
   source model's is copied from it; the rest keep their fresh initialisation (e.g. the towers of
   tasks the source was not trained on: their shapes differ). Nothing matching is an error.
3. **Freezing** (``freeze``): ``none`` (default: everything is fine-tuned), ``shared`` (the
   model's :meth:`~polytask.models.base.MultiTaskModel.shared_modules`, i.e. the shared
   representation: ``requires_grad = False``; every one of their parameters must have been
   loaded, else it is an error: a frozen random layer is a mistake), or ``loaded`` (exactly the
   loaded parameters). Frozen parameters are left out of the optimiser (``optimizer_groups``
   filters on ``requires_grad``), so they stay bit-identical to the source's. Dropout inside frozen
   modules still follows train/eval mode.

``freeze`` may also be a list of parameter-name patterns (shell-style, matched with
:func:`fnmatch.fnmatchcase` against ``model.named_parameters()``: ``["input.trunk.*"]`` freezes a
``resnet`` encoder's trunk, e.g. one initialised from a ``weights:`` file); patterns need no
``init_from``, and each must match at least one parameter.

Whatever the mode, a BatchNorm layer whose parameters are all frozen is frozen as a whole: it stays
in eval mode, so it normalises with its running statistics and never updates them, as is usual
when fine-tuning a pretrained trunk (its statistics belong to the pretrained weights, and a
small fine-tuning batch would otherwise overwrite them). That survives ``model.train()``: the
layer's own ``train`` is replaced, on that instance only, by one that keeps it in eval mode
(:func:`hold_batch_norms`); a saved run is rebuilt without it (inference is in eval mode anyway).

What was reused, loaded, skipped and frozen (parameters, and ``frozen_batch_norm``: the held
BatchNorm layers) is reported in ``run.metrics["transfer"]`` (and ``metrics.json``); with freeze
patterns and no ``init_from`` that report holds ``freeze``, ``frozen`` and ``frozen_batch_norm``
only. The new run's checkpoint holds all its weights, so it loads without the source.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from polytask.errors import ConfigError
from polytask.train.optim import match_parameters

if TYPE_CHECKING:
    from polytask.data.preprocessor import Preprocessor
    from polytask.run import Run

FREEZE = ("none", "shared", "loaded")
IN_MEMORY = "<in-memory run>"
_ENCODING_ONLY = ("max_len", "min_count", "flip", "crop")  # options that do not change how a fitted encoder reads values


def load_source(init_from: str | os.PathLike) -> Run:
    """The run to start from (a run directory), or a ConfigError naming ``train.init_from``."""
    from polytask.run import Run

    if str(init_from) == IN_MEMORY:
        raise ConfigError(
            f"train.init_from: {IN_MEMORY} was an in-memory Run; pass the Run itself (fit(init_from=run))"
        )
    try:
        return Run.load(init_from)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"train.init_from: cannot load the run {init_from}: {exc}") from None


def reuse_encoders(pre: Preprocessor, source: Preprocessor) -> dict[str, list[str]]:
    """Give ``pre`` (already fitted) the source's fitted state for every feature both have with
    the same type and encoding options. Returns ``{"reused": [...], "refit": [...]}``."""
    src = {f.name: f for f in source.features}
    reused, refit = [], []
    for f in pre.features:
        other = src.get(f.name)
        same = other is not None and all(
            v == getattr(other, k) for k, v in f.to_dict().items() if k not in _ENCODING_ONLY
        )
        if same:
            pre.encoders[f.name].load(source.encoders[f.name].state())
            reused.append(f.name)
        else:
            refit.append(f.name)
    return {"reused": reused, "refit": refit}


def load_matching(model: nn.Module, source: nn.Module) -> dict[str, list[str]]:
    """Copy every parameter/buffer of ``source`` into ``model`` whose name and shape match.
    Returns ``{"loaded", "shape_mismatch", "not_in_source", "not_used"}`` (state-dict names)."""
    target, state = model.state_dict(), source.state_dict()
    loaded, mismatch, missing, take = [], [], [], {}
    for name, value in target.items():
        other = state.get(name)
        if other is None:
            missing.append(name)
        elif other.shape != value.shape:
            mismatch.append(f"{name}: {list(other.shape)} -> {list(value.shape)}")
        else:
            take[name] = other
            loaded.append(name)
    model.load_state_dict(take, strict=False)
    return {
        "loaded": loaded,
        "shape_mismatch": mismatch,
        "not_in_source": missing,
        "not_used": [n for n in state if n not in target],
    }


def freeze(model: nn.Module, how: str | Sequence[str], loaded: list[str]) -> list[str]:
    """Set ``requires_grad = False`` on the parameters ``how`` names (a mode, or a list of
    parameter-name patterns: see the module docstring) and hold the BatchNorm layers left without a
    trainable parameter in eval mode (:func:`hold_batch_norms`); returns the frozen names."""
    if isinstance(how, str) and how not in FREEZE:
        raise ConfigError(f"train.freeze: {how!r} is not one of {', '.join(FREEZE)}, nor a list of parameter-name patterns")
    if how == "none":
        return []
    names = {id(p): n for n, p in model.named_parameters()}
    if not isinstance(how, str):
        matched = match_parameters(model, list(how), "train.freeze")
        wanted = {n for found in matched.values() for n in found}
        chosen = {id(p) for n, p in model.named_parameters() if n in wanted}
    elif how == "shared":
        chosen = {id(p) for m in model.shared_modules() for p in m.parameters()}  # type: ignore[operator]
        if not chosen:
            raise ConfigError(f"train.freeze: shared: model {type(model).__name__} has no shared modules")
        done = set(loaded)
        not_loaded = sorted(names[i] for i in chosen if names[i] not in done)
        if not_loaded:
            raise ConfigError(
                "train.freeze: shared: these shared parameters were not loaded from train.init_from (they would "
                f"stay frozen at their random initialisation): {', '.join(not_loaded)}"
            )
    else:
        wanted = set(loaded)
        chosen = {id(p) for n, p in model.named_parameters() if n in wanted}
    frozen = []
    for n, p in model.named_parameters():
        if id(p) in chosen:
            p.requires_grad_(False)
            frozen.append(n)
    if all(not p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.freeze: {how}: every parameter of the model would be frozen; nothing left to train")
    hold_batch_norms(model)
    return frozen


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """The ``train`` of a held BatchNorm layer: whatever ``mode``, it stays in eval mode."""
    return nn.Module.train(module, False)


def hold_batch_norms(model: nn.Module) -> list[str]:
    """Put every BatchNorm layer whose parameters are all frozen in eval mode for good (running
    statistics fixed and used to normalise; ``model.train()`` leaves it in eval mode); returns
    the names of the held layers (those held before included). A BatchNorm without parameters
    (``affine=False``) is left as it is."""
    held = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm):
            continue
        params = list(m.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            if not is_held(m):
                m.train = functools.partial(_stay_in_eval, m)  # this instance only; picklable
                m.train(False)
            held.append(name)
    return held


def is_held(module: nn.Module) -> bool:
    """Whether :func:`hold_batch_norms` holds ``module`` in eval mode."""
    train = module.__dict__.get("train")
    return isinstance(train, functools.partial) and train.func is _stay_in_eval


def freeze_by_patterns(model: nn.Module, patterns: Sequence[str]) -> dict[str, Any]:
    """``train.freeze: [patterns]`` without ``init_from``: freeze, hold the BatchNorm layers, and
    the report (``freeze``, ``frozen``, ``frozen_batch_norm``) for ``run.metrics["transfer"]``."""
    frozen = freeze(model, list(patterns), [])
    return {"freeze": list(patterns), "frozen": frozen, "frozen_batch_norm": hold_batch_norms(model)}


def initialise(
    model: nn.Module, source: Run, how: str | Sequence[str], *, encoders: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Load what matches from ``source.model`` into ``model``, freeze as ``how`` says; the report."""
    report: dict[str, Any] = {"source": str(source.directory) if source.directory else IN_MEMORY,
                              "source_model": source.config.model.name}
    report.update(load_matching(model, source.model))
    if not report["loaded"]:
        raise ConfigError(
            f"train.init_from: no parameter of the source model ({report['source_model']}) matches this model "
            "by name and shape"
        )
    report["freeze"] = how if isinstance(how, str) else list(how)
    report["frozen"] = freeze(model, how, report["loaded"])
    report["frozen_batch_norm"] = hold_batch_norms(model) if report["frozen"] else []
    if encoders is not None:
        report["encoders"] = encoders
    return report
