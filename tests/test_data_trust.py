"""Data the library must not trust (issue 11): non-finite values, tasks that can never train,
rows named in the file's numbering, feature inference, dense scaling and column patterns,
standardised regression targets, and files that used to crash instead of giving one line.

CLI cases check the contract of tests/test_bad_input.py: exit 2, one ``error:`` line naming the
culprit, no run directory left behind."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from polytask.cli import app
from polytask.data.io import file_rows, read_table
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec
from polytask.data.sources import describe_inference, infer_features, load_splits, split_table
from polytask.errors import ConfigError, DataError
from polytask.tasks import Task

runner = CliRunner()

HEADER = ["age", "score", "city", "click", "spend"]

CONFIG = """\
data:
  train: {train}
  validation: {validation}
  split: {{validation: 0.2, test: 0.0, seed: 3}}
  features:
{features}
  tasks:
{tasks}
model: {{name: mmoe, num_experts: 2, expert_hidden: [8], tower_hidden: [4]}}
train: {{epochs: 1, batch_size: 64, progress: false}}
"""
FEATURES = "    numeric: [age, score]\n    categorical: [city]"
TASKS = "    - name: click\n    - {name: spend, kind: regression}"


def rows(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [
        [str(int(rng.integers(18, 70))), f"{rng.normal():.4f}", str(rng.choice(["paris", "rome", "oslo"])),
         str(int(rng.random() < 0.5)), f"{rng.normal() * 100 + 500:.3f}"]
        for _ in range(n)
    ]


def write_csv(path: Path, body: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(body)
    return path


def run_cli(tmp_path: Path, *, train: str = "train.csv", validation: str = "valid.csv", features: str = FEATURES,
            tasks: str = TASKS, text: str | None = None):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text or CONFIG.format(train=train, validation=validation, features=features, tasks=tasks))
    return runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])


def refused(result, tmp_path: Path, *needles: str) -> str:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}\n{result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch):
    write_csv(tmp_path / "train.csv", rows(120, 0))
    write_csv(tmp_path / "valid.csv", rows(40, 1))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- 1. non-finite values ----------------------------------------------------------------------------
@pytest.mark.parametrize("column, value", [("score", "inf"), ("score", "-inf"), ("spend", "inf")])
def test_cli_refuses_inf_in_a_feature_or_a_regression_label(work, column, value):
    body = rows(120, 0)
    body[17][HEADER.index(column)] = value
    write_csv(work / "train_inf.csv", body)
    refused(run_cli(work, train="train_inf.csv"), work, "train_inf.csv", f"'{column}'", "row 17", value)


def test_inf_in_the_validation_file_is_refused_before_training(work):
    body = rows(40, 1)
    body[5][HEADER.index("score")] = "inf"
    write_csv(work / "valid_inf.csv", body)
    refused(run_cli(work, validation="valid_inf.csv"), work, "valid_inf.csv", "'score'", "row 5")


def _pre(tasks=None, features=None) -> Preprocessor:
    return Preprocessor(features or [FeatureSpec("x")], tasks or [Task("y", "regression")])


def test_predict_time_inf_feature_is_refused_nan_is_imputed():
    pre = _pre().fit(pa.table({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]}), "train")
    with pytest.raises(DataError, match=r"new\.csv: numeric column 'x' holds inf at row 1"):
        pre.transform(pa.table({"x": [1.0, float("inf")]}), "new.csv", with_labels=False)
    out = pre.transform(pa.table({"x": [1.0, float("nan")]}), "new.csv", with_labels=False)
    assert torch.isfinite(out.features["numeric"]).all()


@pytest.mark.parametrize(
    "task, table",
    [
        (Task("y", "regression"), {"x": [1.0, 2.0, 3.0], "y": [1.0, float("-inf"), 3.0]}),
        (Task("y", "ranking", group="q"), {"x": [1.0, 2.0, 3.0], "y": [1.0, 0.0, float("inf")], "q": ["a", "a", "b"]}),
        (Task("y", "regression", weight_column="w"), {"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "w": [1.0, float("inf"), 1.0]}),
    ],
    ids=["regression", "ranking-relevance", "weight"],
)
def test_non_finite_labels_and_weights_are_refused_for_every_kind(task, table):
    pre = _pre([task])
    with pytest.raises(DataError, match=r"f\.csv: .*'[yw]'.* row [12]") as err:
        pre.fit(pa.table(table), "f.csv")
    assert err.value.row in (1, 2)


def test_nan_label_stays_a_missing_label():
    pre = _pre().fit(pa.table({"x": [1.0, 2.0, 3.0], "y": [1.0, float("nan"), 3.0]}), "t")
    t = pre.transform(pa.table({"x": [1.0, 2.0, 3.0], "y": [1.0, float("nan"), 3.0]}), "t")
    assert t.masks["y"].tolist() == [True, False, True]


# -- 2. tasks that can never train ---------------------------------------------------------------------
def test_cli_refuses_an_empty_label_column_in_the_training_split(work):
    body = rows(120, 0)
    for r in body:
        r[HEADER.index("spend")] = ""
    write_csv(work / "train_nospend.csv", body)
    refused(run_cli(work, train="train_nospend.csv"), work, "task 'spend'", "train_nospend.csv", "no label")


def test_cli_refuses_a_where_that_selects_no_training_row(work):
    tasks = TASKS + '\n    - {name: rich, kind: regression, label: spend, where: "age > 500"}'
    refused(run_cli(work, tasks=tasks), work, "task 'rich'", "train.csv", "selects no row")


def test_fit_refuses_where_rows_without_labels():
    task = Task("b", where="x > 1")
    table = pa.table({"x": [1.0, 2.0, 3.0], "b": [1.0, None, None]})
    with pytest.raises(DataError, match=r"task 'b': t: no row selected by where 'x > 1' holds a label"):
        _pre([task]).fit(table, "t")


# -- 3. rows of the file, not of the shuffled split ----------------------------------------------------
def test_split_parts_know_their_file_rows():
    table = pa.table({"i": np.arange(50)})
    parts = split_table(table, [0.2, 0.1], seed=7)
    for part in parts:
        np.testing.assert_array_equal(file_rows(part), part.column("i").to_numpy())
    assert file_rows(table) is None


def test_errors_in_a_carved_split_name_the_file_row():
    n = 60
    x = [str(float(i)) for i in range(n)]
    bad = 41
    x[bad] = "oops"
    table = pa.table({"x": pa.array(x), "y": pa.array(np.arange(n, dtype=float))})
    pre = _pre([Task("y", "regression")])
    parts = split_table(table, [0.5], seed=1)
    train, valid = parts
    holder = train if bad in file_rows(train) else valid
    assert file_rows(holder).tolist().index(bad) != bad  # the split index differs from the file row
    clean = train if holder is valid else valid
    pre.fit(clean, "f.csv") if holder is valid else None
    with pytest.raises(DataError, match=rf"must be numeric but row {bad} holds 'oops'") as err:
        if holder is valid:
            pre.transform(holder, "f.csv")
        else:
            pre.fit(holder, "f.csv")
    assert err.value.row == bad


def test_cli_names_the_file_row_of_a_value_in_the_carved_validation_split(work):
    body = rows(200, 0)
    bad = 123
    body[bad][HEADER.index("score")] = "inf"
    write_csv(work / "carve.csv", body)
    text = CONFIG.format(train="carve.csv", validation="null", features=FEATURES, tasks=TASKS)
    refused(run_cli(work, text=text), work, "carve.csv", "'score'", f"row {bad}")


def test_data_error_row_rewrite():
    e = DataError("f: column 'x' holds 'a' at row 3", row=3).at_file_row(17)
    assert str(e) == "f: column 'x' holds 'a' at row 17" and e.row == 17
    parsed = DataError("f: bad value at row 4").at_file_row(9)
    assert str(parsed) == "f: bad value at row 9"
    assert str(DataError("f: no row named").at_file_row(2)) == "f: no row named"


# -- 4. feature inference ---------------------------------------------------------------------------------
def _inference_table(n: int = 40) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({
        "user_id": pa.array(np.arange(n)),
        "session": pa.array([f"s{i:04d}" for i in range(n)]),
        "age": pa.array(rng.integers(18, 70, n)),
        "city": pa.array(rng.choice(["a", "b"], n)),
        "history": pa.array(["|".join(rng.choice(["x", "y", "z"], 3)) for _ in range(n)]),
        "q": pa.array(rng.choice(["q1", "q2", "q3"], n)),
        "rel": pa.array(rng.integers(0, 3, n).astype(float)),
        "click": pa.array(rng.integers(0, 2, n)),
        "w": pa.array(np.ones(n)),
        "seg": pa.array(rng.integers(0, 3, n)),
    })


def test_inference_excludes_every_task_column_ids_and_finds_sequences():
    tasks = [Task("rank", "ranking", label="rel", group="q"), Task("click", where="seg == 1", weight_column="w")]
    specs, decisions = infer_features(_inference_table(), tasks, exclude=[], source="f.csv")
    kinds = {s.name: s.type for s in specs}
    assert kinds == {"age": "numeric", "city": "categorical", "history": "sequence"}
    why = {c: (d, r) for c, d, r in decisions}
    assert [c for c, _, _ in decisions] == _inference_table().column_names  # every column, file order
    assert why["user_id"][0] == "skipped" and "identifier" in why["user_id"][1]
    assert why["session"][0] == "skipped" and "identifier" in why["session"][1]
    assert why["q"] == ("label", "label column of task 'rank'")
    assert why["w"][0] == "skipped" and "weight" in why["w"][1]
    assert why["seg"][0] == "skipped" and "where" in why["seg"][1]
    lines = describe_inference(decisions)
    assert len(lines) == len(decisions) and lines[0].startswith("user_id") and "skipped (identifier" in lines[0]


def test_words_ending_in_id_are_not_identifiers():
    n = 30
    table = pa.table({"paid": np.arange(n), "valid": np.arange(n), "orderId": np.arange(n), "y": np.arange(n) % 2})
    _, decisions = infer_features(table, [Task("y")], [])
    assert {c: d for c, d, _ in decisions} == {"paid": "numeric", "valid": "numeric", "orderId": "skipped", "y": "label"}


def test_small_tables_keep_their_unique_strings():
    specs, _ = infer_features(pa.table({"city": ["a", "b", "c"], "y": [1, 0, 1]}), [Task("y")], [])
    assert [(s.name, s.type) for s in specs] == [("city", "categorical")]


def test_load_splits_exposes_the_inference(tmp_path):
    from polytask.config import DataConfig

    path = tmp_path / "f.csv"
    write_csv(path, rows(50))
    splits = load_splits(DataConfig(train=str(path), tasks=[{"name": "click"}]))
    assert [(c, d) for c, d, _ in splits.inferred] == [
        ("age", "numeric"), ("score", "numeric"), ("city", "categorical"), ("click", "label"), ("spend", "numeric")
    ]
    declared = load_splits(DataConfig(train=str(path), tasks=[{"name": "click"}], features={"numeric": ["age"]}))
    assert declared.inferred == []


# -- 5. column patterns ------------------------------------------------------------------------------------
def _fp_file(tmp_path: Path) -> Path:
    path = tmp_path / "fp.csv"
    header = ["fp_2", "a", "fp_10", "fpx", "y"]
    write_csv(path, [[str(i), str(i), str(i), str(i), str(i % 2)] for i in range(30)], header)
    return path


@pytest.mark.parametrize(
    "entry, expected",
    [("fp*", ["fp_2", "fp_10", "fpx"]), ("re:fp_\\d+", ["fp_2", "fp_10"]), ({"name": "re:^fp_\\d+$", "scale": "none"}, ["fp_2", "fp_10"])],
)
def test_feature_patterns_expand_in_file_order(tmp_path, entry, expected):
    from polytask.config import DataConfig

    cfg = DataConfig(train=str(_fp_file(tmp_path)), tasks=[{"name": "y"}], features={"numeric": [entry], "categorical": ["a"]})
    specs = load_splits(cfg).features
    assert [s.name for s in specs if s.type == "numeric"] == expected
    if isinstance(entry, dict):
        assert all(s.scale == "none" for s in specs if s.type == "numeric")


def test_a_pattern_matching_nothing_is_an_error(tmp_path):
    from polytask.config import DataConfig

    cfg = DataConfig(train=str(_fp_file(tmp_path)), tasks=[{"name": "y"}], features={"numeric": ["zz*"]})
    with pytest.raises(DataError, match=r"fp\.csv: data\.features\.numeric\.0: pattern 'zz\*' matches no column"):
        load_splits(cfg)
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        load_splits(DataConfig(train=str(_fp_file(tmp_path)), tasks=[{"name": "y"}], features={"numeric": ["re:("]}))


# -- 6. regression targets in standard units, reported in raw units -----------------------------------
def test_regression_end_to_end_predicts_and_reports_raw_units(tmp_path):
    import polytask

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = 1000.0 + 200.0 * x[:, 0]
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})
    run = polytask.fit(train=table, validation=table, test=table, tasks=[{"name": "y", "kind": "regression"}],
                       model={"name": "single_task"}, epochs=30, batch_size=64, progress=False,
                       optimizer={"name": "adam", "lr": 0.01})
    task = run.tasks[0]
    assert task.spec.mean == pytest.approx(y.mean()) and task.spec.std == pytest.approx(y.std())
    pred = run.predict(table)["y"]
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    assert rmse < 60.0  # raw units, and learned (y's std is 200)
    metrics = run.evaluate(table)
    assert metrics["y"]["rmse"] == pytest.approx(rmse, rel=1e-3)


# -- 7. files and options that used to crash -----------------------------------------------------------
def test_cli_invalid_utf8_names_the_file_column_and_row(work):
    path = work / "latin.csv"
    write_csv(path, rows(120, 0))
    lines = path.read_bytes().split(b"\n")
    lines[8] = lines[8].replace(b"paris", b"p\xe2ris").replace(b"rome", b"r\xf4me").replace(b"oslo", b"\xf6slo")
    path.write_bytes(b"\n".join(lines))
    refused(run_cli(work, train="latin.csv"), work, "latin.csv", "'city'", "invalid UTF-8", "row 7", "line 9")


def test_cli_duplicate_column_names_the_file_and_column(work):
    write_csv(work / "dup.csv", [r + [r[0]] for r in rows(120, 0)], HEADER + ["age"])
    refused(run_cli(work, train="dup.csv"), work, "dup.csv", "'age'", "2 times")


def test_cli_misspelled_feature_option_is_one_line(work):
    features = "    numeric: [age, {name: score, scal: none}]\n    categorical: [city]"
    refused(run_cli(work, features=features), work, "data.features.numeric.1", "'scal'", "accepted: name, scale")


def test_cli_one_row_training_file_is_refused_for_the_split_carve(work):
    write_csv(work / "one.csv", rows(1, 0))
    text = CONFIG.format(train="one.csv", validation="null", features=FEATURES, tasks=TASKS)
    refused(run_cli(work, text=text), work, "one.csv", "too few", "validation")


def test_one_row_training_file_with_its_own_validation_file_trains():
    """The carve is what a one-row file cannot take; given validation/test files it trains."""
    import polytask

    t = pa.table({"a": [1.0], "b": ["x"], "y": [1], "r": [3.0]})
    run = polytask.fit(train=t, validation=t, test=t, tasks=[{"name": "y"}, {"name": "r", "kind": "regression"}],
                       epochs=1, progress=False)
    assert np.isfinite(run.predict(t)["r"]).all()


def test_read_table_duplicate_and_utf8_unit(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match=r"d\.csv: column 'a' appears 2 times"):
        read_table(p)
    q = tmp_path / "u.csv"
    q.write_bytes(b"a,b\n1,x\n2,\xff\n")
    with pytest.raises(DataError, match=r"u\.csv: column 'b' holds invalid UTF-8 at row 1"):
        read_table(q)
