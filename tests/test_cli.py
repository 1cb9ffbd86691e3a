"""The ``polytask`` command line end to end: train / evaluate / predict / list on a small slice of
the real census data (the one true subprocess check of the installed entry point trains it), and a
training run from CSV files with a custom config (inferred features, a ``where`` task, missing labels).

The census data must be found ($POLYTASK_DATA_DIR or ../shared/data): these tests fail, never skip,
when it is not.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import load_config

REPO = Path(__file__).resolve().parents[1]
CENSUS_CONFIG = REPO / "configs" / "census_mmoe.yaml"
SMALL = ["--set", "data.params.max_rows=3000", "--set", "train.epochs=2", "--set", "train.progress=false",
         # `polytask evaluate` loads runs on the CPU and must reproduce metrics.json to 1e-6: train there too
         "--set", "train.device=cpu"]
CENSUS_TASKS = ("income", "never_married")
RUN_FILES = ("config.yaml", "encoders.json", "model.pt", "metrics.jsonl", "metrics.json", "data.json", "manifest.json")

runner = CliRunner()


def invoke(*args: object, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def check_ok(result) -> None:
    assert result.exit_code == 0, (
        f"exit code {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}"
    )


def no_partial(out: Path) -> bool:
    return not out.with_name(out.name + ".partial").exists()


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir() -> Path:
    from polytask.data.paths import resolve_data_dir

    path = resolve_data_dir()  # raises (the test fails, it does not skip) when no data dir is found
    assert (path / "census_income_kdd").is_dir(), f"{path} has no census_income_kdd/ folder"
    return path


@pytest.fixture(scope="module")
def census_bundle(data_dir):
    """The same splits the small training run uses (max_rows=3000, split_seed=0)."""
    from polytask.data.datasets.census_income import census_income

    return census_income(data_dir, max_rows=3000, split_seed=0)


@pytest.fixture(scope="module")
def census_run(tmp_path_factory, data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """`polytask train configs/census_mmoe.yaml --out RUN` through the installed entry point."""
    exe = Path(sys.executable).with_name("polytask")
    assert exe.is_file(), f"the polytask entry point is not installed beside {sys.executable}"
    work = tmp_path_factory.mktemp("census")
    out = work / "run"
    env = {**os.environ, "POLYTASK_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [str(exe), "train", str(CENSUS_CONFIG), "--out", str(out), *SMALL],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"polytask train failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return out, proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- train ------------------------------------------------------------------------------------------
def test_train_writes_complete_run_directory(census_run):
    out, proc = census_run
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert no_partial(out)
    assert not list(out.parent.glob("*.partial"))
    # the final metrics are printed
    assert "income" in proc.stdout and "never_married" in proc.stdout


def test_config_yaml_is_resolved_and_reloadable(census_run):
    out, _ = census_run
    raw = yaml.safe_load((out / "config.yaml").read_text())
    # resolved: defaults are written out, not only what the user gave
    for section in ("data", "model", "weighting", "optimizer", "scheduler", "train"):
        assert section in raw, section
    assert raw["train"]["eval_batch_size"] == 8192 and raw["scheduler"]["name"] == "none"
    # the overrides are in it
    assert raw["data"]["params"]["max_rows"] == 3000
    assert raw["train"]["epochs"] == 2 and raw["train"]["progress"] is False
    reloaded = load_config(out / "config.yaml")
    expected = load_config(CENSUS_CONFIG, [s for s in SMALL if s != "--set"])
    got, want = reloaded.to_dict(), expected.to_dict()
    for section in ("data", "train"):
        assert got[section] == want[section], section
    # every hyperparameter is written out: what the config gave, and each component's defaults
    for section in ("model", "weighting", "optimizer", "scheduler"):
        assert want[section].items() <= got[section].items(), section
    assert reloaded.model.name == "mmoe"
    assert reloaded.model.params() == {"num_experts": 8, "expert_hidden": [16], "tower_hidden": [8], "embedding_dim": 4,
                                       "encoder": "tabular", "encoder_params": {}, "gate_bias": False,
                                       "activation": "relu", "dropout": 0.0}
    assert got["optimizer"]["betas"] == [0.9, 0.999] and got["optimizer"]["eps"] == 1e-8


def test_encoders_json_holds_census_features_and_tasks(census_run):
    from polytask.data.datasets.census_income import CATEGORICAL, LABEL_SOURCES, NUMERIC

    out, _ = census_run
    enc = json.loads((out / "encoders.json").read_text())
    types = {f["spec"]["name"]: f["spec"]["type"] for f in enc["features"]}
    assert types == {**{n: "numeric" for n in NUMERIC}, **{n: "categorical" for n in CATEGORICAL}}
    assert not set(types) & {*LABEL_SOURCES, "instance_weight", *CENSUS_TASKS}
    assert [t["name"] for t in enc["tasks"]] == list(CENSUS_TASKS)
    assert all(t["kind"] == "binary" for t in enc["tasks"])
    # fitted state is there (a vocabulary for a categorical column)
    by_name = {f["spec"]["name"]: f["state"] for f in enc["features"]}
    assert len(by_name["sex"]["vocab"]) == 2


def test_model_pt_is_a_loadable_checkpoint(census_run):
    import torch

    out, _ = census_run
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["model"] == "mmoe"
    assert ckpt["params"]["num_experts"] == 8
    assert ckpt["state_dict"] and all(torch.isfinite(v.float()).all() for v in ckpt["state_dict"].values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert ckpt["epoch"] == metrics["best_epoch"]


def test_metrics_jsonl_has_one_line_per_epoch(census_run):
    out, _ = census_run
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # train.epochs=2, patience 5: no early stop
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert set(r["train_loss"]) == set(CENSUS_TASKS)
        assert all(math.isfinite(v) and v > 0 for v in r["train_loss"].values())
        assert r["train_seconds"] > 0
        for task in CENSUS_TASKS:
            v = r["validation"][task]
            assert 0.0 <= v["auc"] <= 1.0 and v["logloss"] > 0
            assert v["count"] == 750
        assert "income.auc" in r["monitor"]


def test_metrics_json_is_validation_and_test_per_task(census_run):
    out, _ = census_run
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert set(CENSUS_TASKS) <= set(metrics[split])
        for task in CENSUS_TASKS:
            values = metrics[split][task]
            assert 0.0 <= values["auc"] <= 1.0
            assert 0.0 < values["logloss"] < 5.0
            assert values["count"] == 750
    # the saved validation numbers are those of the best epoch (the restored checkpoint)
    history = read_jsonl(out / "metrics.jsonl")
    best = history[metrics["best_epoch"] - 1]
    assert best["monitor"]["income.auc"] == max(r["monitor"]["income.auc"] for r in history)
    for task in CENSUS_TASKS:
        for metric in ("auc", "logloss"):
            assert metrics["validation"][task][metric] == pytest.approx(best["validation"][task][metric], abs=1e-6)


def test_data_json_says_where_splits_came_from(census_run):
    out, _ = census_run
    data = json.loads((out / "data.json").read_text())
    assert data["rows"] == {"train": 1500, "validation": 750, "test": 750}
    assert "census-income.test" in data["sources"]["test"]
    assert "max_rows=3000" in data["notes"] and "split_seed=0" in data["notes"]


# -- evaluate ---------------------------------------------------------------------------------------
def assert_same_metrics(got: dict, want: dict, tasks=CENSUS_TASKS) -> None:
    for task in tasks:
        for metric, value in want[task].items():
            assert got[task][metric] == pytest.approx(value, abs=1e-6), (task, metric)


def test_evaluate_reproduces_saved_metrics(census_run, data_dir):
    out, _ = census_run
    result = invoke("evaluate", out, "--json", "--data-dir", data_dir)
    check_ok(result)
    got = json.loads(result.stdout)
    saved = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert_same_metrics(got[split], saved[split])
    # the table form works too
    table = invoke("evaluate", out, "--data-dir", data_dir, env={"COLUMNS": "200"})
    check_ok(table)
    assert "validation" in table.stdout and "income" in table.stdout


def test_evaluate_on_labelled_csv(census_run, census_bundle, tmp_path):
    out, _ = census_run
    path = tmp_path / "validation.csv"
    pacsv.write_csv(census_bundle.validation, path)
    result = invoke("evaluate", out, "--data", path, "--json")
    check_ok(result)
    got = json.loads(result.stdout)
    assert list(got) == [str(path)]
    # the same rows as the run's validation split: the same numbers as metrics.json
    saved = json.loads((out / "metrics.json").read_text())
    assert_same_metrics(got[str(path)], saved["validation"])


# -- predict ----------------------------------------------------------------------------------------
def _features_only(table: pa.Table) -> pa.Table:
    table = table.drop_columns([t for t in CENSUS_TASKS if t in table.column_names])
    return table.append_column("row_id", pa.array(np.arange(table.num_rows) + 1000, pa.int64()))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def test_predict_csv_to_parquet(census_run, census_bundle, tmp_path):
    out, _ = census_run
    test = census_bundle.test
    inp = tmp_path / "input.csv"
    pacsv.write_csv(_features_only(test), inp)
    dest = tmp_path / "out.parquet"
    result = invoke("predict", out, inp, "-o", dest)
    check_ok(result)
    pred = pq.read_table(dest)
    assert pred.column_names == list(CENSUS_TASKS)
    assert pred.num_rows == test.num_rows
    for task in CENSUS_TASKS:
        assert pa.types.is_floating(pred.schema.field(task).type)
        p = pred.column(task).to_numpy()
        assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    # the columns are that task's P(y=1), in row order: they give the saved test AUC
    saved = json.loads((out / "metrics.json").read_text())
    for task in CENSUS_TASKS:
        auc = _auc(test.column(task).to_numpy(), pred.column(task).to_numpy())
        assert auc == pytest.approx(saved["test"][task]["auc"], abs=1e-4), task


def test_predict_parquet_to_csv_with_keep(census_run, census_bundle, tmp_path):
    out, _ = census_run
    table = _features_only(census_bundle.test)
    inp_csv, inp_pq = tmp_path / "input.csv", tmp_path / "input.parquet"
    pacsv.write_csv(table, inp_csv)
    pq.write_table(table, inp_pq)
    from_pq = tmp_path / "from_parquet.csv"
    result = invoke("predict", out, inp_pq, "-o", from_pq, "--keep", "row_id", "--keep", "sex")
    check_ok(result)
    pred = pacsv.read_csv(from_pq)
    assert pred.column_names == ["row_id", "sex", *CENSUS_TASKS]
    assert pred.num_rows == table.num_rows
    assert pred.column("row_id").to_pylist() == table.column("row_id").to_pylist()
    assert pred.column("sex").to_pylist() == table.column("sex").to_pylist()
    # CSV input and Parquet input give the same predictions
    from_csv = tmp_path / "from_csv.parquet"
    check_ok(invoke("predict", out, inp_csv, "-o", from_csv))
    ref = pq.read_table(from_csv)
    for task in CENSUS_TASKS:
        np.testing.assert_allclose(pred.column(task).to_numpy(), ref.column(task).to_numpy(), atol=1e-6)
        assert (pred.column(task).to_numpy() >= 0).all() and (pred.column(task).to_numpy() <= 1).all()


def test_predict_matches_python_api(census_run, census_bundle, tmp_path):
    from polytask.api import load_run

    out, _ = census_run
    table = _features_only(census_bundle.validation)
    inp = tmp_path / "input.parquet"
    pq.write_table(table, inp)
    dest = tmp_path / "pred.parquet"
    check_ok(invoke("predict", out, inp, "-o", dest))
    expected = load_run(out).predict(table)
    pred = pq.read_table(dest)
    for task in CENSUS_TASKS:
        np.testing.assert_allclose(pred.column(task).to_numpy(), expected[task], atol=1e-7)


# -- list -------------------------------------------------------------------------------------------
def test_list_prints_registries():
    result = invoke("list", env={"COLUMNS": "200"})
    check_ok(result)
    text = result.stdout
    for name in ("single_task", "shared_bottom", "omoe", "mmoe", "equal", "fixed", "census_income",
                 "synthetic_mmoe", "binary", "regression", "multiclass"):
        assert name in text, name
    for title in ("models", "weightings", "datasets", "encoders", "column families", "task kinds"):
        assert title in text, title
    # every registered encoder and column family with its one-line description (Registry.describe)
    from polytask.registry import COLUMNS, ENCODERS

    assert {"tabular", "cnn", "tokens"} <= set(ENCODERS.names())
    flat = " ".join(text.split())
    for reg in (ENCODERS, COLUMNS):
        for name in reg.names():
            assert name in text, name
            assert " ".join(reg.describe(name).split()[:4]) in flat, (name, reg.describe(name))
    # task kinds come with their metrics
    assert "auc, logloss" in text and "rmse, mae" in text


def test_list_verbose_shows_hyperparameters_with_defaults():
    result = invoke("list", "--verbose", env={"COLUMNS": "400"})
    check_ok(result)
    flat = "".join(result.stdout.split())  # rich wraps cells: compare without white space
    for shown in ("num_experts=8", "expert_hidden=[16]", "gate_bias=False",  # mmoe
                  "bottom_hidden=[113]",  # shared_bottom
                  "kind='lstm'", "max_len=512",  # the tokens encoder
                  "num_classes=None"):  # the multiclass task kind
        assert shown in flat, shown
    plain = invoke("list", env={"COLUMNS": "400"})
    assert "num_experts=8" not in "".join(plain.stdout.split())


# -- a run from CSV files with a custom config --------------------------------------------------------
def make_clicks(n: int, seed: int) -> pa.Table:
    """uid, age, city, score features; click (binary), buy (binary, only defined where click == 1,
    10% missing), spend (regression)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 70, n)
    city = rng.choice(["paris", "rome", "oslo"], n)
    score = rng.normal(size=n).round(4)
    click = (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(np.int64)
    buy = np.where(click == 1, (rng.random(n) < np.where(city == "rome", 0.7, 0.2)).astype(float), 0.0)
    buy[rng.random(n) < 0.1] = np.nan
    spend = (age * 0.1 + score + rng.normal(size=n) * 0.1).round(3)
    return pa.table({
        "uid": np.arange(n), "age": age, "city": city, "score": score, "click": click,
        "buy": pa.array([None if np.isnan(b) else int(b) for b in buy], pa.int64()),
        "spend": spend,
    })


CSV_CONFIG = """\
name: clicks
data:
  train: train.csv
  validation: valid.csv
  features:
    exclude: [uid]
  tasks:
    - name: click
    - name: buy
      where: "click == 1"
    - name: spend
      kind: regression
model:
  name: mmoe
  num_experts: 2
  expert_hidden: [8]
  tower_hidden: [4]
train:
  epochs: 2
  batch_size: 64
  monitor: click.auc
  progress: false
  device: cpu
"""


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("clicks")
    train, valid = make_clicks(400, 0), make_clicks(120, 1)
    pacsv.write_csv(train, work / "train.csv")
    pacsv.write_csv(valid, work / "valid.csv")
    (work / "config.yaml").write_text(CSV_CONFIG)
    old = Path.cwd()
    os.chdir(work)  # relative paths in the config, as a user would write them
    try:
        result = invoke("train", "config.yaml", "--out", "runs/clicks")
    finally:
        os.chdir(old)
    check_ok(result)
    return work, work / "runs" / "clicks", valid


def test_csv_run_writes_run_directory(csv_run):
    work, out, _ = csv_run
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert no_partial(out)
    assert len(read_jsonl(out / "metrics.jsonl")) == 2
    data = json.loads((out / "data.json").read_text())
    # no test file: 10% of train.csv is split off (seeded), validation is valid.csv
    assert data["rows"] == {"train": 360, "validation": 120, "test": 40}
    reloaded = load_config(out / "config.yaml")
    assert [t.name for t in reloaded.data.tasks] == ["click", "buy", "spend"]
    assert reloaded.data.tasks[1].where == "click == 1"


def test_csv_run_infers_features(csv_run):
    _, out, _ = csv_run
    enc = json.loads((out / "encoders.json").read_text())
    types = {f["spec"]["name"]: f["spec"]["type"] for f in enc["features"]}
    # uid excluded; click/buy/spend are labels (click is also the where column)
    assert types == {"age": "numeric", "city": "categorical", "score": "numeric"}
    assert set(enc["features"][1]["state"]["vocab"]) == {"paris", "rome", "oslo"}


def test_csv_run_masks_where_and_missing_labels(csv_run):
    _, out, valid = csv_run
    metrics = json.loads((out / "metrics.json").read_text())
    click = np.asarray(valid.column("click").to_pylist())
    buy = valid.column("buy").to_pylist()
    expected_buy = sum(1 for c, b in zip(click, buy) if c == 1 and b is not None)
    assert 0 < expected_buy < valid.num_rows
    assert metrics["validation"]["click"]["count"] == valid.num_rows
    assert metrics["validation"]["buy"]["count"] == expected_buy
    assert metrics["validation"]["spend"]["count"] == valid.num_rows
    assert {"rmse", "mae"} <= set(metrics["validation"]["spend"])
    assert {"auc", "logloss"} <= set(metrics["validation"]["buy"])
    assert set(metrics["test"]) >= {"click", "buy", "spend"}


def test_csv_run_evaluates_from_another_directory(csv_run, tmp_path, monkeypatch):
    """config.yaml is usable wherever `polytask evaluate RUN` is started from."""
    _, out, _ = csv_run
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate", out, "--json")
    check_ok(result)
    got = json.loads(result.stdout)
    saved = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert_same_metrics(got[split], saved[split], tasks=("click", "buy", "spend"))


def test_csv_run_evaluate_data_and_predict_without_labels(csv_run, tmp_path):
    work, out, valid = csv_run
    result = invoke("evaluate", out, "--data", work / "valid.csv", "--json")
    check_ok(result)
    got = json.loads(result.stdout)[str(work / "valid.csv")]
    saved = json.loads((out / "metrics.json").read_text())
    assert_same_metrics(got, saved["validation"], tasks=("click", "buy", "spend"))

    features = valid.drop_columns(["click", "buy", "spend"])  # labels are not needed to predict
    inp = tmp_path / "new.csv"
    pacsv.write_csv(features, inp)
    dest = tmp_path / "pred.csv"
    result = invoke("predict", out, inp, "--output", dest, "--keep", "uid")
    check_ok(result)
    pred = pacsv.read_csv(dest)
    assert pred.column_names == ["uid", "click", "buy", "spend"]
    assert pred.num_rows == valid.num_rows
    for task in ("click", "buy"):
        p = pred.column(task).to_numpy()
        assert (p >= 0).all() and (p <= 1).all()
    assert np.isfinite(pred.column("spend").to_numpy()).all()


def test_existing_out_is_refused_without_overwrite(csv_run, tmp_path, monkeypatch):
    work, _, _ = csv_run
    monkeypatch.chdir(work)
    out = tmp_path / "taken"
    out.mkdir()  # an existing empty directory is fine
    check_ok(invoke("train", "config.yaml", "--out", out, "--set", "train.epochs=1"))
    assert len(read_jsonl(out / "metrics.jsonl")) == 1
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    result = invoke("train", "config.yaml", "--out", out)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(out) in result.stderr and "--overwrite" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert no_partial(out)

    # --overwrite replaces it with the new run
    check_ok(invoke("train", "config.yaml", "--out", out, "--overwrite"))
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert len(read_jsonl(out / "metrics.jsonl")) == 2
    assert no_partial(out)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.num_experts=0", "model 'mmoe': num_experts must be >= 1"),
        ("model.expert_hidden=[]", "model 'mmoe': expert_hidden needs at least one layer"),
    ],
)
def test_a_value_the_architecture_refuses_is_one_line_and_exit_2(csv_run, tmp_path, monkeypatch, override, message):
    work, _, _ = csv_run
    monkeypatch.chdir(work)
    result = invoke("train", "config.yaml", "--out", tmp_path / "refused", "--set", override)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "refused").exists()


def test_inferred_features_are_printed_before_training_and_recorded(csv_run, tmp_path, monkeypatch):
    work, _, _ = csv_run
    monkeypatch.chdir(work)
    out = tmp_path / "inferred"
    result = invoke("train", "config.yaml", "--out", out, "--set", "train.epochs=1")
    check_ok(result)
    lines = result.stdout.splitlines()
    start = lines.index("features inferred from the training file (declare data.features to choose them):")
    shown = "\n".join(lines[start + 1 : start + 9])
    assert "uid    skipped (data.features.exclude)" in shown
    assert "label (label column of task 'click')" in shown and "numeric" in shown
    recorded = json.loads((out / "data.json").read_text())["inferred_features"]
    assert {r["column"]: r["decision"] for r in recorded}["age"] == "numeric"


def test_unset_removes_a_section_before_set_so_another_model_can_be_named(csv_run, tmp_path, monkeypatch):
    work, _, _ = csv_run
    monkeypatch.chdir(work)
    # the config's model section holds mmoe's keys; naming another model needs them gone
    refused = invoke("train", "config.yaml", "--out", tmp_path / "a", "--set", "model.name=shared_bottom")
    assert refused.exit_code == 2 and "model.num_experts: unknown key" in refused.stderr
    result = invoke("train", "config.yaml", "--out", tmp_path / "b", "--unset", "model",
                    "--set", "model.name=shared_bottom", "--set", "train.epochs=1")
    check_ok(result)
    assert "shared_bottom" in (tmp_path / "b" / "config.yaml").read_text()
    missing = invoke("train", "config.yaml", "--out", tmp_path / "c", "--unset", "model.nope")
    assert missing.exit_code == 2 and "model.nope" in missing.stderr
