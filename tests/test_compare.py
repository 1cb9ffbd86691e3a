"""Multi-seed comparison: validation-only candidate selection, seed pairing in Delta-m, tables; the demo."""

from __future__ import annotations

import io

import pytest

from polytask.compare import markdown_table, merge, run_grid, summarize

BASE = {
    "data": {"dataset": "synthetic_mmoe", "params": {"correlation": 0.5, "n_train": 300, "n_validation": 100, "n_test": 100}},
    "train": {"epochs": 2, "batch_size": 64, "progress": False, "monitor": "loss"},
}


def test_merge_is_recursive_and_does_not_mutate():
    a = {"x": {"y": 1, "z": 2}, "k": [1]}
    b = {"x": {"y": 5}, "k": [2]}
    assert merge(a, b) == {"x": {"y": 5, "z": 2}, "k": [2]}
    assert a == {"x": {"y": 1, "z": 2}, "k": [1]}


def test_run_grid_picks_the_candidate_with_the_best_validation_score():
    search = [{"optimizer": {"lr": 1e-6}}, {"optimizer": {"lr": 1e-2}}]
    rows = run_grid(BASE, {"mmoe": {"model": {"name": "mmoe", "num_experts": 2}}}, [0, 1],
                    seed_keys=("train.seed", "data.params.seed"), search=search)
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        # lr 1e-6 barely moves in 2 epochs: its validation loss is worse, so 1e-2 must win
        assert r["candidate"] == {"optimizer": {"lr": 1e-2}}
        assert r["validation_score"] == pytest.approx(r["validation"]["loss"])
        assert set(r["test"]) >= {"y1", "y2"}


def test_summarize_pairs_delta_m_by_seed():
    def row(model, seed, auc):
        return {"model": model, "seed": seed, "parameters": 10, "seconds_per_epoch": 1.0,
                "test": {"a": {"auc": auc}}}

    rows = [row("stl", 0, 0.80), row("stl", 1, 0.60), row("mtl", 0, 0.88), row("mtl", 1, 0.60)]
    s = summarize(rows, ["a"], {"a": ["auc"]}, baseline="stl")
    # seed 0: +10 %, seed 1: 0 % -> mean 5, std sqrt(50)
    assert s["mtl"]["delta_m"]["mean"] == pytest.approx(5.0)
    assert s["mtl"]["delta_m"]["std"] == pytest.approx(50 ** 0.5)
    assert s["stl"]["delta_m"]["mean"] == pytest.approx(0.0)
    assert s["mtl"]["a"]["auc"]["mean"] == pytest.approx(0.74)
    table = markdown_table(s, ["a"], {"a": ["auc"]})
    assert "| mtl | 0.7400 ± 0.1980 | +5.00 ± 7.07 | 10 |" in table


def test_demo_prints_the_comparison_table():
    from rich.console import Console

    from polytask.demo import CORRELATIONS, MODELS, run_demo

    buf = io.StringIO()
    results = run_demo(seeds=1, n_train=300, epochs=1, console=Console(file=buf, width=120))
    text = buf.getvalue()
    for label in MODELS:
        assert label in text
    assert set(results) == set(CORRELATIONS)
    assert all(results[p][label]["y1"]["rmse"]["n"] == 1 for p in CORRELATIONS for label in MODELS)
