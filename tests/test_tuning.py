"""``--tune``: the search space per model (only keys the model accepts), how drawn values enter a
config, the seeded TPE search picking by validation score, and ``compare --tune N`` giving every
cell (baselines included) N trials on the first seed, then training every seed with the choice."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from polytask.api import resolve_model_params
from polytask.registry import MODELS
from polytask.tuning import COMMON_SPACE, MODEL_SPACES, Param, apply_values, model_space, tune


def test_every_model_space_key_is_accepted_by_its_model():
    for name, space in MODEL_SPACES.items():
        assert name in MODELS, name
        accepted = resolve_model_params(name, {})
        assert set(space) <= set(accepted), (name, set(space) - set(accepted))
    space = model_space("mmoe")
    assert set(space) == {"lr", "width", "dropout", "num_experts"}
    assert set(model_space("shared_bottom")) == set(COMMON_SPACE)  # no entry of its own: the common search


def test_apply_values_sets_lr_scales_every_hidden_list_and_sets_model_keys():
    raw = {"data": {"dataset": "x"}, "model": {"name": "mmoe", "expert_hidden": [16, 8]}, "optimizer": {"lr": 0.1}}
    out = apply_values(raw, {"lr": 0.003, "width": 1.5, "dropout": 0.2, "num_experts": 3})
    assert out["optimizer"]["lr"] == 0.003
    # the given list and the model's default tower_hidden [8] both scaled
    assert out["model"]["expert_hidden"] == [24, 12] and out["model"]["tower_hidden"] == [12]
    assert out["model"]["dropout"] == 0.2 and out["model"]["num_experts"] == 3
    assert raw["model"] == {"name": "mmoe", "expert_hidden": [16, 8]}  # not changed in place
    assert apply_values(raw, {"width": 0.01})["model"]["expert_hidden"] == [1, 1]  # at least one unit


def test_tune_runs_n_trials_and_keeps_the_best_validation_score():
    space = {"lr": Param("log", 1e-4, 1e-1), "layers": Param("int", 1, 4), "act": Param("choice", choices=("relu", "gelu"))}

    def score(values):  # best near lr = 1e-2
        return -abs(math.log10(values["lr"]) + 2) - (values["act"] == "gelu")

    result = tune(score, space, 8, higher_is_better=True, seed=0)
    assert len(result.trials) == 8
    best = max(result.trials, key=lambda t: t["validation_score"])
    assert result.best == best["values"] and result.best_score == best["validation_score"]
    assert tune(score, space, 8, higher_is_better=True, seed=0).trials == result.trials  # seeded
    low = tune(lambda v: v["lr"], space, 5, higher_is_better=False, seed=1)
    assert low.best["lr"] == min(t["values"]["lr"] for t in low.trials)
    failing = tune(lambda v: float("nan") if v["layers"] > 1 else 1.0, space, 6, higher_is_better=True, seed=0)
    assert failing.best == {} or failing.best["layers"] == 1  # a failed (NaN) trial is never chosen


def test_compare_tune_gives_every_cell_the_same_budget(tmp_path):
    import numpy as np
    import pandas as pd

    from polytask.compare import compare

    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=500), rng.normal(size=500)
    pd.DataFrame({"x1": x1, "x2": x2, "y": (x1 > 0).astype(int), "z": (x1 + x2 > 0).astype(int)}).to_csv(
        tmp_path / "rows.csv", index=False)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": str(tmp_path / "rows.csv"), "features": {"numeric": ["x1", "x2"]}, "tasks": ["y", "z"],
                 "split": {"validation": 0.2, "test": 0.2}},
        "model": {"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]},
        "train": {"epochs": 1, "batch_size": 128, "monitor": "mean.auc"}}))
    out = tmp_path / "out"
    payload = compare(config, ["shared_bottom"], out=out, seeds=2, tune=2)
    for label in ("single_task", "shared_bottom"):
        search = payload["cells"][label]["tuning"]
        assert len(search["trials"]) == 2
        best = max(search["trials"], key=lambda t: t["validation_score"])  # mean.auc: higher is better
        assert search["best"] == best["values"]
        for seed in (0, 1):  # every seed trained with the chosen values
            saved = yaml.safe_load((out / "runs" / f"{label}-seed{seed}" / "config.yaml").read_text())
            assert saved["optimizer"]["lr"] == pytest.approx(best["values"]["lr"])
            assert saved["model"]["dropout"] == pytest.approx(best["values"]["dropout"])
    for name, keys in (("lightgbm", {"num_leaves", "learning_rate", "min_child_samples"}), ("linear", {"C"})):
        search = payload["cells"][name]["tuning"]
        for task in ("y", "z"):
            assert len(search[task]["trials"]) == 2 and set(search[task]["best"]) == keys
        rows = [r for r in payload["rows"] if r["model"] == name]
        assert rows[0]["hyperparameters"] == rows[1]["hyperparameters"]  # tuned on seed 0, reused on seed 1
    assert json.loads((out / "compare.json").read_text())["tune"] == 2
    assert "2 Optuna TPE trials" in (out / "compare.md").read_text()
