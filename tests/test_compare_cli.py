"""``polytask compare`` end to end on a small generated CSV (two binary tasks): the grid as run
directories `polytask report` can read, compare.md/json/html with the right cells, --resume,
--jobs, the baselines' refusal on non-tabular features, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from polytask.cli import app
from polytask.run import is_run_directory

runner = CliRunner()
MODELS = "shared_bottom,mmoe"


def write_config(tmp: Path, n: int = 600, **extra_features) -> Path:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["p", "q", "r"], size=n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "c": c, "y": ((x1 + (c == "p")) > 0.3).astype(int),
                       "z": ((x1 + x2) > 0).astype(int), **extra_features})
    df.to_csv(tmp / "rows.csv", index=False)
    features = {"numeric": ["x1", "x2"], "categorical": ["c"]}
    if extra_features:
        features["sequence"] = list(extra_features)
    config = {"data": {"train": str(tmp / "rows.csv"), "features": features, "tasks": ["y", "z"],
                       "split": {"validation": 0.2, "test": 0.2}},
              "model": {"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]},
              "train": {"epochs": 1, "batch_size": 128, "monitor": "mean.auc"}}
    path = tmp / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(*args: object):
    return runner.invoke(app, ["compare", *map(str, args)])


def test_compare_writes_the_grid_and_the_tables(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "out"
    result = invoke(config, "--models", MODELS, "--seeds", 2, "-o", out)
    assert result.exit_code == 0, result.output
    labels = ["single_task", "shared_bottom", "mmoe"]
    for label in labels:
        for seed in (0, 1):
            assert is_run_directory(out / "runs" / f"{label}-seed{seed}")  # a normal run `polytask report` reads
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(f"{m}-seed{s}" for m in labels for s in (0, 1))
    # one plain progress line per finished run (the output is not a terminal)
    assert "[1/10] single_task seed 0" in result.output and "[10/10] linear seed 1" in result.output
    payload = json.loads((out / "compare.json").read_text())
    assert list(payload["summary"]) == [*labels, "lightgbm", "linear"]
    assert payload["tasks"] == ["y", "z"] and payload["metrics"] == {"y": ["auc", "logloss"], "z": ["auc", "logloss"]}
    assert payload["delta_metrics"] == {"y": ["auc"], "z": ["auc"]}
    assert len(payload["rows"]) == 10 and {r["seed"] for r in payload["rows"]} == {0, 1}
    for label in ["shared_bottom", "mmoe", "lightgbm", "linear"]:
        entry = payload["summary"][label]
        assert entry["y"]["auc"]["n"] == 2 and "ci" in entry["y"]["auc"]
        assert entry["y"]["auc"]["vs_baseline"]["within_noise"] in (True, False)
        assert entry["delta_m"]["n"] == 2 and entry["delta_m"]["within_noise"] in (True, False)
    # the run's own metrics.json is what the table summarises
    saved = json.loads((out / "runs" / "mmoe-seed1" / "metrics.json").read_text())
    row = next(r for r in payload["rows"] if r["model"] == "mmoe" and r["seed"] == 1)
    assert row["test"]["y"]["auc"] == pytest.approx(saved["test"]["y"]["auc"])
    assert payload["cells"]["single_task"]["config"]["model"]["name"] == "single_task"
    assert payload["cells"]["single_task"]["weighting"] == "equal"
    markdown = (out / "compare.md").read_text()
    for label in [*labels, "lightgbm", "linear"]:
        assert f"\n| {label} | " in markdown
    assert "| model | y auc | y logloss | z auc | z logloss | Δm % (vs single_task) [95% CI] | params |" in markdown
    assert "≈" in markdown and "Δm averages y auc, z auc" in markdown
    assert markdown.split("\n\n")[1] in result.output  # the table is printed at the end
    page = (out / "compare.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert page.count("<tr>") == 1 + 5 and "<td>mmoe</td>" in page and "<td>lightgbm</td>" in page


def test_resume_skips_finished_runs(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "out"
    args = [config, "--models", "shared_bottom", "--seeds", 2, "--no-baselines", "-o", out]
    assert invoke(*args).exit_code == 0
    runs = out / "runs"
    stamps = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in runs.iterdir()}
    first = json.loads((out / "compare.json").read_text())["rows"]
    import shutil

    shutil.rmtree(runs / "shared_bottom-seed1")  # as if the comparison had stopped before it
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert result.output.count("(resumed)") == 3
    assert "shared_bottom seed 1:" in result.output and "shared_bottom seed 1 (resumed)" not in result.output
    again = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in runs.iterdir()}
    assert {k for k in stamps if again[k] != stamps[k]} == {"shared_bottom-seed1"}  # only that one trained
    rows = json.loads((out / "compare.json").read_text())["rows"]
    # the retrained run is the same seeded run: same numbers
    assert [r["test"]["y"]["auc"] for r in rows] == pytest.approx([r["test"]["y"]["auc"] for r in first], abs=1e-6)


def test_parallel_jobs_give_the_same_runs(tmp_path):
    config = write_config(tmp_path)
    one = invoke(config, "--models", "shared_bottom", "--seeds", 1, "--no-baselines", "-o", tmp_path / "one")
    two = invoke(config, "--models", "shared_bottom", "--seeds", 1, "--no-baselines", "--jobs", 2, "-o", tmp_path / "two")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    rows = [json.loads((tmp_path / d / "compare.json").read_text())["rows"] for d in ("one", "two")]
    assert [r["model"] for r in rows[1]] == ["single_task", "shared_bottom"]
    assert [r["test"]["z"]["auc"] for r in rows[1]] == pytest.approx([r["test"]["z"]["auc"] for r in rows[0]], abs=1e-4)


def test_bad_input_is_one_line(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "out"
    result = invoke(config, "--models", "mmoe,mmeo", "-o", out)
    assert result.exit_code == 2 and "unknown model 'mmeo'; known: " in result.output and "shared_bottom" in result.output
    result = invoke(config, "--models", "mmoe", "--weightings", "equal,pcgard", "-o", out)
    assert result.exit_code == 2 and "unknown weighting 'pcgard'; known: " in result.output
    assert len(result.output.strip().splitlines()) == 1
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = invoke(config, "--models", "mmoe", "-o", out)
    assert result.exit_code == 2 and f"-o {out}: the directory already holds notes.txt" in result.output
    assert sorted(os.listdir(out)) == ["notes.txt"]  # nothing written
    result = invoke(config, "--models", "mmoe", "--seeds", 0, "-o", tmp_path / "other")
    assert result.exit_code == 2 and "--seeds must be >= 1" in result.output


def test_baselines_refused_on_non_tabular_features(tmp_path):
    config = write_config(tmp_path, words=["a|b", "b|c", "c"] * 200)
    result = invoke(config, "--models", "shared_bottom", "--seeds", 1, "--baselines", "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "--baselines: the baselines read numeric and categorical features only; feature(s) words (sequence)" in result.output
    assert not (tmp_path / "out").exists()
    # by default they are left out, and the networks still compared
    result = invoke(config, "--models", "shared_bottom", "--seeds", 1, "-o", tmp_path / "auto")
    assert result.exit_code == 0, result.output
    assert list(json.loads((tmp_path / "auto" / "compare.json").read_text())["summary"]) == ["single_task", "shared_bottom"]


def test_resume_refuses_runs_trained_with_another_config(tmp_path):
    config, out = write_config(tmp_path), tmp_path / "out"
    args = [config, "--models", "shared_bottom", "--seeds", 1, "--no-baselines", "-o", out]
    assert invoke(*args).exit_code == 0
    result = invoke(*args, "--resume", "--set", "shared_bottom.bottom_hidden=[7]")
    assert result.exit_code == 2
    assert "shared_bottom-seed0 was trained with model.bottom_hidden=[113], the comparison now asks [7]" in result.output
