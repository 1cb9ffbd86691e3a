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

What was reused, loaded, skipped and frozen is reported in ``run.metrics["transfer"]`` (and
``metrics.json``). The new run's checkpoint holds all its weights, so it loads without the source.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from torch import nn

from polytask.errors import ConfigError

if TYPE_CHECKING:
    from polytask.data.preprocessor import Preprocessor
    from polytask.run import Run

FREEZE = ("none", "shared", "loaded")
IN_MEMORY = "<in-memory run>"
_ENCODING_ONLY = ("max_len", "min_count")  # options that do not change how a fitted encoder reads values


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


def freeze(model: nn.Module, how: str, loaded: list[str]) -> list[str]:
    """Set ``requires_grad = False`` on the parameters ``how`` names (see the module docstring);
    returns their names."""
    if how not in FREEZE:
        raise ConfigError(f"train.freeze: {how!r} is not one of {', '.join(FREEZE)}")
    if how == "none":
        return []
    names = {id(p): n for n, p in model.named_parameters()}
    if how == "shared":
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
    return frozen


def initialise(
    model: nn.Module, source: Run, how: str, *, encoders: dict[str, list[str]] | None = None
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
    report["freeze"] = how
    report["frozen"] = freeze(model, how, report["loaded"])
    if encoders is not None:
        report["encoders"] = encoders
    return report
