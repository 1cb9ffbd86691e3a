"""The hyperparameter search ``polytask compare --tune N`` gives every cell: the same budget of N
Optuna trials (TPE sampler, seeded; Bergstra et al., NeurIPS 2011), scored on the validation split
only, so no model of a comparison wins by tuning alone.

A neural cell searches the learning rate (log-uniform), a width multiplier applied to every
hidden-size list of its model (``hidden``, ``expert_hidden``, ``tower_hidden``, ...), the dropout,
and the model's main hyperparameters from :data:`MODEL_SPACES` (each model's entry optional;
only keys the model's constructor accepts are used). Baselines bring their own spaces
(:mod:`polytask.baselines`) and use :func:`tune` the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: ``kind`` is ``int``, ``float``, ``log`` (log-uniform float) or
    ``choice`` (one of ``choices``)."""

    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this parameter from an Optuna ``trial``."""
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high)
        if self.kind == "log":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        raise ValueError(f"unknown parameter kind {self.kind!r}")


#: searched for every neural model (``width`` and ``dropout`` only where the model has them)
COMMON_SPACE: dict[str, Param] = {
    "lr": Param("log", 1e-4, 1e-2),
    "width": Param("log", 0.5, 2.0),
    "dropout": Param("float", 0.0, 0.3),
}

#: each model's main structural hyperparameters (model name -> {constructor keyword: range})
MODEL_SPACES: dict[str, dict[str, Param]] = {
    "mmoe": {"num_experts": Param("int", 2, 16)},
    "omoe": {"num_experts": Param("int", 2, 16)},
    "cgc": {"specific_experts": Param("int", 1, 4), "shared_experts": Param("int", 1, 4)},
    "ple": {"num_levels": Param("int", 1, 3), "specific_experts": Param("int", 1, 4),
            "shared_experts": Param("int", 1, 4)},
    "soft_sharing": {"alpha": Param("log", 1e-5, 1e-1)},
    "drn": {"trade_off": Param("log", 1e-5, 1e-1)},
    "cross_stitch": {"same_task_init": Param("float", 0.5, 0.99)},
    "sluice": {"orthogonality": Param("log", 1e-4, 1.0)},
    "tensor_factorization": {"factorization": Param("choice", choices=("tucker", "tt", "laf"))},
    "fafs": {"lam": Param("log", 0.5, 20.0)},
    "aitm": {"calibration_weight": Param("float", 0.1, 1.0)},
    "esmm": {},
}


def hidden_lists(params: Mapping[str, Any]) -> list[str]:
    """The keys of ``params`` that hold a model's hidden sizes: lists of positive ints whose name
    says ``hidden``."""
    def sizes(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)

    return [k for k, v in params.items() if "hidden" in k and sizes(v)]


def model_space(model: str) -> dict[str, Param]:
    """The search space of ``model``: :data:`COMMON_SPACE` (``width`` when it has hidden-size
    lists, ``dropout`` when it takes one) plus its :data:`MODEL_SPACES` entry, restricted to the
    keywords its constructor accepts."""
    from polytask.api import resolve_model_params

    accepted = resolve_model_params(model, {})
    space = {"lr": COMMON_SPACE["lr"]}
    if hidden_lists(accepted):
        space["width"] = COMMON_SPACE["width"]
    if "dropout" in accepted:
        space["dropout"] = COMMON_SPACE["dropout"]
    space.update({k: p for k, p in MODEL_SPACES.get(model, {}).items() if k in accepted})
    return space


def apply_values(config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a raw config dict) with the drawn ``values`` set: ``lr`` in the optimizer
    section, ``width`` multiplying every hidden-size list of the model (at least 1 unit each), the
    rest as model keywords."""
    from polytask.api import resolve_model_params
    from polytask.compare import merge

    out = merge(config, {})
    model = out.setdefault("model", {})
    for key, value in values.items():
        if key == "lr":
            out.setdefault("optimizer", {})["lr"] = float(value)
        elif key == "width":
            resolved = resolve_model_params(model["name"], {k: v for k, v in model.items() if k != "name"})
            for name in hidden_lists(resolved):
                model[name] = [max(1, int(round(h * value))) for h in resolved[name]]
        else:
            model[key] = value
    return out


@dataclass
class TuneResult:
    """What :func:`tune` found: the best values, their validation score, and every trial."""

    best: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_score": self.best_score, "trials": self.trials}


def tune(
    objective: Callable[[dict[str, Any]], float],
    space: Mapping[str, Param],
    n_trials: int,
    *,
    higher_is_better: bool,
    seed: int = 0,
) -> TuneResult:
    """Run ``n_trials`` of a seeded TPE search of ``space``; ``objective(values)`` returns the
    validation score (NaN: a failed trial, never chosen). Deterministic for a given seed when the
    objective is."""
    import optuna

    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize" if higher_is_better else "minimize", sampler=sampler)
    trials: list[dict[str, Any]] = []

    def run(trial: Any) -> float:
        values = {name: p.suggest(trial, name) for name, p in space.items()}
        score = float(objective(values))
        trials.append({"number": trial.number, "values": values, "validation_score": score})
        # a failed trial (NaN) ranks last instead of stopping the study
        return score if math.isfinite(score) else (-math.inf if higher_is_better else math.inf)

    study.optimize(run, n_trials=n_trials)
    finite = [t for t in trials if math.isfinite(t["validation_score"])]
    if not finite:
        return TuneResult({}, float("nan"), trials)
    pick = max if higher_is_better else min
    best = pick(finite, key=lambda t: t["validation_score"])
    return TuneResult(dict(best["values"]), best["validation_score"], trials)
