"""The Python API: ``polytask.fit`` on in-memory tables (no files), ``Run.predict`` and
``history``, saving with ``out=`` and ``polytask.load_run``, and a light ``import polytask``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import polytask
from polytask.errors import ConfigError, DataError

TASKS = [
    {"name": "click"},
    {"name": "buy", "where": "click == 1"},  # sample space: clicked rows only
    {"name": "spend", "kind": "regression"},
]
MODEL = {"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}
# on the CPU: runs with the same seed are compared for equal predictions
OPTIONS = {"epochs": 2, "batch_size": 64, "progress": False, "seed": 0, "device": "cpu"}


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    city = rng.choice(["paris", "rome", "oslo"], n)
    click = (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(np.int64)
    buy = np.where(click == 1, (rng.random(n) < np.where(city == "rome", 0.7, 0.2)).astype(float), 0.0)
    buy[rng.random(n) < 0.1] = np.nan  # some labels missing
    age = rng.integers(18, 70, n)
    return pd.DataFrame({
        "age": age, "city": city, "score": score, "click": click, "buy": buy,
        "spend": age * 0.05 + score + rng.normal(size=n) * 0.1,
    })


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame(600, 0)


@pytest.fixture(scope="module")
def memory_run(frame, tmp_path_factory):
    import os

    work = tmp_path_factory.mktemp("in_memory")
    old = os.getcwd()
    os.chdir(work)
    try:
        run = polytask.fit(train=frame, tasks=TASKS, model=MODEL, **OPTIONS)
    finally:
        os.chdir(old)
    assert list(work.iterdir()) == []  # nothing written
    return run


def test_fit_in_memory_returns_run_without_directory(memory_run):
    assert memory_run.directory is None
    assert [t.name for t in memory_run.tasks] == ["click", "buy", "spend"]
    assert memory_run.config.model.name == "mmoe"
    assert memory_run.config.model.params()["num_experts"] == 2


def test_predict_shapes_and_ranges(memory_run, frame):
    pred = memory_run.predict(frame)
    assert set(pred) == {"click", "buy", "spend"}
    for name, values in pred.items():
        assert isinstance(values, np.ndarray) and values.shape == (len(frame),), name
        assert np.isfinite(values).all()
    for name in ("click", "buy"):
        assert (pred[name] >= 0).all() and (pred[name] <= 1).all()
    # labels are not needed; a pyarrow table or a dict of columns gives the same numbers
    features = frame.drop(columns=["click", "buy", "spend"])
    for other in (features, pa.Table.from_pandas(features), {c: features[c].to_numpy() for c in features}):
        again = memory_run.predict(other)
        for name in pred:
            np.testing.assert_allclose(again[name], pred[name], atol=1e-6)
    # row order is kept
    head = memory_run.predict(frame.iloc[10:20])
    for name in pred:
        np.testing.assert_allclose(head[name], pred[name][10:20], atol=1e-6)


def test_predict_table_has_a_named_column_per_task(memory_run, frame):
    table = memory_run.predict_table(frame.assign(uid=np.arange(len(frame))), keep=["uid"])
    assert table.column_names == ["uid", "click", "buy", "spend"]
    assert table.num_rows == len(frame)
    assert table.column("uid").to_pylist() == list(range(len(frame)))


def test_history_has_a_record_per_epoch(memory_run):
    history = memory_run.history
    assert [r["epoch"] for r in history] == [1, 2]
    for r in history:
        assert set(r["train_loss"]) == {"click", "buy", "spend"}
        assert all(np.isfinite(v) for v in r["train_loss"].values())
        assert r["train_seconds"] > 0
        assert {"auc", "logloss"} <= set(r["validation"]["click"])
        assert {"rmse", "mae"} <= set(r["validation"]["spend"])


def test_metrics_respect_where_and_missing_labels(memory_run, frame):
    """The validation/test splits are a seeded 10%/10% split of train; buy counts only clicked rows
    with a label."""
    from polytask.data.sources import split_table

    _, validation, test = split_table(pa.Table.from_pandas(frame), [0.1, 0.1], seed=0)
    for name, part in (("validation", validation), ("test", test)):
        df = part.to_pandas()
        metrics = memory_run.metrics[name]
        assert metrics["click"]["count"] == len(df) == 60
        assert metrics["buy"]["count"] == int(((df["click"] == 1) & df["buy"].notna()).sum())
        assert metrics["buy"]["count"] < len(df)
        assert metrics["spend"]["count"] == len(df)


def test_fit_with_arrow_tables_and_out_then_load_run(frame, memory_run, tmp_path):
    train = pa.Table.from_pandas(frame)
    out = tmp_path / "run"
    run = polytask.fit(train=train, tasks=TASKS, model=MODEL, out=out, **OPTIONS)
    assert run.directory == out
    assert not (tmp_path / "run.partial").exists()
    for name in ("config.yaml", "encoders.json", "model.pt", "metrics.jsonl", "metrics.json", "data.json"):
        assert (out / name).is_file(), name

    loaded = polytask.load_run(out)
    new = make_frame(50, 9)
    a, b = run.predict(new), loaded.predict(new)
    assert set(a) == set(b) == {"click", "buy", "spend"}
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    # same data, same seed: the same model as the in-memory run (pandas vs arrow input)
    c = memory_run.predict(new)
    for name in a:
        np.testing.assert_allclose(a[name], c[name], atol=1e-5)

    assert [r["epoch"] for r in loaded.history] == [r["epoch"] for r in run.history] == [1, 2]
    saved = json.loads((out / "metrics.json").read_text())
    assert loaded.metrics == saved
    for task in ("click", "buy", "spend"):
        for metric, value in run.metrics["validation"][task].items():
            assert saved["validation"][task][metric] == pytest.approx(value, abs=1e-9)
    assert loaded.evaluate(frame)["click"]["count"] == len(frame)


def test_fit_with_validation_table_and_config_dict(frame):
    train, validation = frame.iloc[:500], frame.iloc[500:]
    run = polytask.fit(
        {"model": MODEL, "train": {"epochs": 1, "progress": False}},
        train=train, validation=validation, tasks=TASKS, monitor="buy.auc", batch_size=128,
    )
    assert len(run.history) == 1
    assert run.config.train.monitor == "buy.auc" and run.config.train.batch_size == 128
    assert run.metrics["validation"]["click"]["count"] == 100


def test_fit_rejects_bad_in_memory_data(frame, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DataError, match="'spend'"):
        polytask.fit(train=frame.drop(columns=["spend"]), tasks=TASKS, model=MODEL, out=out, **OPTIONS)
    assert not out.exists() and not (tmp_path / "run.partial").exists()
    with pytest.raises(DataError, match="no rows"):
        polytask.fit(train=frame.iloc[:0], tasks=TASKS, model=MODEL, **OPTIONS)
    with pytest.raises(ConfigError, match="model.num_expertz"):
        polytask.fit(train=frame, tasks=TASKS, model={**MODEL, "num_expertz": 3}, out=out, **OPTIONS)
    assert not out.exists()


def test_import_polytask_does_not_import_torch():
    code = (
        "import polytask, sys\n"
        "assert 'torch' not in sys.modules, 'import polytask imported torch'\n"
        "assert polytask.__version__\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
