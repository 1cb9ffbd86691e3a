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


def test_demo_off_a_terminal_prints_a_line_per_run_saves_the_runs_and_ends_with_the_report(tmp_path):
    from rich.console import Console

    from polytask.demo import CORRELATIONS, MODELS, run_demo
    from polytask.run import is_run_directory

    buf = io.StringIO()  # not a terminal: what `make demo > log` sees
    run_demo(seeds=1, n_train=200, epochs=1, console=Console(file=buf, width=200), out=tmp_path / "demo")
    lines = buf.getvalue().splitlines()
    per_run = [line for line in lines if line.startswith("[")]
    assert len(per_run) == len(CORRELATIONS) * len(MODELS)
    assert per_run[0].startswith(f"[1/{len(per_run)}] correlation {CORRELATIONS[0]} Shared-Bottom seed 0: test RMSE y1 ")
    for p in CORRELATIONS:
        for label in MODELS:
            assert is_run_directory(tmp_path / "demo" / f"corr{p}" / f"{label}-seed0")
    report = tmp_path / "demo" / "report.html"
    assert report.is_file() and f"report of the runs at correlation {CORRELATIONS[0]} (seed 0): {report}" in buf.getvalue()
    page = report.read_text()
    assert all(label in page for label in ("Shared-Bottom-seed0", "OMoE-seed0", "MMoE-seed0"))


# -- intervals, paired differences, within-noise marks --------------------------------------------
def test_confidence_interval_known_answer():
    from scipy.stats import t

    from polytask.compare import confidence_interval

    s = confidence_interval([1.0, 2.0, 3.0])
    half = t.ppf(0.975, 2) * 1.0 / 3 ** 0.5  # std of [1, 2, 3] is 1
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0) and s["n"] == 3
    assert s["ci"] == pytest.approx(half) and half == pytest.approx(2.4841, abs=1e-4)
    assert (s["low"], s["high"]) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    one = confidence_interval([5.0, float("nan")])  # NaN left out; one value has no interval
    assert one["n"] == 1 and one["mean"] == 5.0 and one["ci"] != one["ci"]


def _row(model, seed, auc, loss=0.5):
    return {"model": model, "seed": seed, "parameters": 10, "seconds_per_epoch": 1.0,
            "test": {"a": {"auc": auc, "logloss": loss}}}


def test_paired_delta_m_interval_and_within_noise():
    from scipy.stats import t

    from polytask.compare import within_noise

    # per-seed Delta-m of "up": +10, +10, +5 % (paired); of "same": +1, -1, 0 %
    stl = [0.50, 0.60, 0.80]
    rows = [_row("stl", s, v) for s, v in enumerate(stl)]
    rows += [_row("up", s, v * g) for s, (v, g) in enumerate(zip(stl, (1.10, 1.10, 1.05)))]
    rows += [_row("same", s, v * g) for s, (v, g) in enumerate(zip(stl, (1.01, 0.99, 1.00)))]
    s = summarize(rows, ["a"], {"a": ["auc", "logloss"]}, baseline="stl", delta_metrics={"a": ["auc"]})
    up = s["up"]["delta_m"]
    assert up["mean"] == pytest.approx(25 / 3)
    assert up["ci"] == pytest.approx(t.ppf(0.975, 2) * up["std"] / 3 ** 0.5)
    assert up["within_noise"] is False  # every seed gains: the interval excludes 0
    assert s["same"]["delta_m"]["within_noise"] is True
    # per metric: the paired difference's interval (model - stl, same seed)
    diff = s["up"]["a"]["auc"]["vs_baseline"]
    assert diff["mean"] == pytest.approx((0.05 + 0.06 + 0.04) / 3)
    assert diff["within_noise"] is False and diff["better"] is True
    assert s["same"]["a"]["auc"]["vs_baseline"]["within_noise"] is True
    # logloss identical to stl on every seed: a zero-width interval at 0 is within noise
    assert s["up"]["a"]["logloss"]["vs_baseline"]["within_noise"] is True
    assert "vs_baseline" not in s["stl"]["a"]["auc"]
    # unpaired means would not separate "up" from "stl" (seed spread 0.15): pairing does
    assert s["up"]["a"]["auc"]["ci"] > abs(diff["mean"])
    assert within_noise({"n": 1, "ci": float("nan"), "low": 0, "high": 0}) is None


def test_markdown_table_with_intervals_marks_each_difference():
    rows = [_row("stl", 0, 0.5), _row("stl", 1, 0.6), _row("stl", 2, 0.7),
            _row("up", 0, 0.6), _row("up", 1, 0.7), _row("up", 2, 0.8),
            _row("down", 0, 0.4), _row("down", 1, 0.5), _row("down", 2, 0.6),
            _row("noisy", 0, 0.6), _row("noisy", 1, 0.5), _row("noisy", 2, 0.71)]
    s = summarize(rows, ["a"], {"a": ["auc"]}, baseline="stl")
    table = markdown_table(s, ["a"], {"a": ["auc"]}, ci=True, baseline="stl")
    lines = {ln.split(" | ")[0][2:]: ln for ln in table.splitlines()[2:]}
    assert lines["up"].split(" | ")[1].endswith("▲")
    assert lines["down"].split(" | ")[1].endswith("▼")
    assert lines["noisy"].split(" | ")[1].endswith("≈")
    assert "[" in lines["stl"] and lines["stl"].split(" | ")[2] == "—"  # no Δm of the reference itself
    # the interval printed is the mean's: 0.6 ± t(0.975, 2) * 0.1 / sqrt(3) = [0.3516, 0.8484]
    assert "0.6000 ± 0.1000 [0.3516, 0.8484]" in lines["stl"]


# -- the compare job's pieces ---------------------------------------------------------------------
def test_plan_cells_adds_single_task_and_names_unknown_models_and_weightings():
    from polytask.compare import Cell, plan_cells
    from polytask.errors import ConfigError

    cells = plan_cells(["mmoe", "shared_bottom"], ["equal", "pcgrad"], ["lightgbm"])
    assert [c.label for c in cells] == ["single_task", "mmoe-equal", "mmoe-pcgrad", "shared_bottom-equal",
                                        "shared_bottom-pcgrad", "lightgbm"]
    assert cells[0] == Cell("single_task", "single_task", "equal")
    assert [c.label for c in plan_cells(["single_task", "mmoe"])] == ["single_task", "mmoe"]
    with pytest.raises(ConfigError, match=r"unknown model 'mmeo'; known: .*mmoe.*shared_bottom"):
        plan_cells(["mmeo"])
    with pytest.raises(ConfigError, match=r"unknown weighting 'pcgard'; known: .*pcgrad"):
        plan_cells(["mmoe"], ["pcgard"])


def test_cell_config_keeps_what_the_model_accepts_and_scoped_overrides():
    from polytask.compare import Cell, cell_config, split_overrides

    raw = {"data": {"dataset": "x"}, "model": {"name": "mmoe", "num_experts": 8, "tower_hidden": [8], "embedding_dim": 4},
           "weighting": {"name": "uncertainty", "init": 0.5}, "train": {"epochs": 3}}
    common, scoped = split_overrides(["train.epochs=2", "single_task.hidden=[64]", "mmoe.num_experts=4"])
    assert common == ["train.epochs=2"] and scoped == {"single_task": ["hidden=[64]"], "mmoe": ["num_experts=4"]}
    stl = cell_config(raw, Cell("single_task", "single_task", "equal"), scoped)
    assert stl["model"] == {"name": "single_task", "tower_hidden": [8], "embedding_dim": 4, "hidden": [64]}
    assert stl["weighting"] == {"name": "equal"} and stl["train"] == {"epochs": 3, "progress": False}
    mmoe = cell_config(raw, Cell("mmoe", "mmoe"), scoped)
    assert mmoe["model"]["num_experts"] == 4 and mmoe["weighting"] == {"name": "uncertainty", "init": 0.5}
    assert raw["model"]["num_experts"] == 8  # the caller's dict is not changed


def test_t_quantile_without_scipy_matches_scipy(monkeypatch):
    import sys

    from scipy.stats import t

    from polytask.compare import t_quantile

    expected = {df: t.ppf(0.975, df) for df in (1, 2, 4, 29, 30, 31, 60)}
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `import polytask.compare` must not need scipy
    for df, value in expected.items():
        assert t_quantile(0.975, df) == pytest.approx(value, abs=2e-4)
