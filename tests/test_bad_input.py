"""Bad input stops the CLI with exit code 2 and ONE error line naming the file, column or key,
before training starts and without leaving a run directory (neither ``out`` nor ``out.partial``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from polytask.cli import app

runner = CliRunner()

HEADER = ["uid", "age", "city", "score", "click", "buy", "spend"]

CONFIG = """\
data:
  train: {train}
  validation: {validation}
  features:
    numeric: [age, score]
    categorical: [city]
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
  epochs: 1
  batch_size: 64
  monitor: click.auc
  progress: false
"""


def rows(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        score = float(rng.normal())
        click = int(rng.random() < 0.5)
        buy = "" if not click or rng.random() < 0.1 else str(int(rng.random() < 0.4))
        out.append([str(i), str(int(rng.integers(18, 70))), str(rng.choice(["paris", "rome", "oslo"])),
                    f"{score:.4f}", str(click), buy, f"{rng.normal() + 3:.3f}"])
    return out


def write_csv(path: Path, header: list[str] | None, body: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        if header is not None:
            w.writerow(header)
        w.writerows(body)
    return path


def drop_column(body: list[list[str]], name: str, header=HEADER) -> tuple[list[str], list[list[str]]]:
    i = header.index(name)
    return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in body]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with good train.csv / valid.csv and a config using them (cwd: that folder)."""
    write_csv(tmp_path / "train.csv", HEADER, rows(300, 0))
    write_csv(tmp_path / "valid.csv", HEADER, rows(80, 1))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config(work: Path, train: str = "train.csv", validation: str = "valid.csv", text: str | None = None) -> Path:
    path = work / "config.yaml"
    path.write_text(text if text is not None else CONFIG.format(train=train, validation=validation))
    return path


@pytest.fixture
def spy(monkeypatch):
    """Records whether training started or anything was written into a run directory."""
    from polytask.run import Run
    from polytask.train.trainer import Trainer

    calls: list[str] = []
    fit, save_static = Trainer.fit, Run.save_static

    def fit_spy(self, *a, **k):
        calls.append("fit")
        return fit(self, *a, **k)

    def save_spy(self, *a, **k):
        calls.append("save")
        return save_static(self, *a, **k)

    monkeypatch.setattr(Trainer, "fit", fit_spy)
    monkeypatch.setattr(Run, "save_static", save_spy)
    return calls


def train(work: Path, cfg: Path, *extra: str, out: str = "run"):
    return runner.invoke(app, ["train", str(cfg), "--out", str(work / out), *extra])


def assert_refused(result, *needles: str, out: Path | None = None, spy: list | None = None) -> str:
    assert result.exit_code == 2, (
        f"exit code {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\nexc: {result.exception!r}"
    )
    text = result.stderr.strip()
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{text}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    if out is not None:
        assert not out.exists(), f"{out} was written"
        assert not out.with_name(out.name + ".partial").exists(), f"{out}.partial was written"
    if spy is not None:
        assert spy == [], f"training started or files were written: {spy}"
    return line


# -- data files ------------------------------------------------------------------------------------
def test_missing_feature_column_in_train_csv(work, spy):
    header, body = drop_column(rows(300, 0), "city")
    write_csv(work / "train_nocity.csv", header, body)
    result = train(work, config(work, train="train_nocity.csv"))
    assert_refused(result, "train_nocity.csv", "'city'", out=work / "run", spy=spy)


def test_declared_feature_missing_everywhere_names_the_train_file(work, spy):
    result = train(work, config(work), "--set", "data.features.numeric=[age, score, height]")
    line = assert_refused(result, "train.csv", "'height'", out=work / "run", spy=spy)
    assert "valid.csv" not in line


def test_missing_label_column_in_train_csv(work, spy):
    header, body = drop_column(rows(300, 0), "spend")
    write_csv(work / "train_nospend.csv", header, body)
    result = train(work, config(work, train="train_nospend.csv"))
    assert_refused(result, "train_nospend.csv", "'spend'", out=work / "run", spy=spy)


def test_binary_label_outside_0_1(work, spy):
    body = rows(300, 0)
    body[17][HEADER.index("click")] = "2"
    write_csv(work / "train_bad_label.csv", HEADER, body)
    result = train(work, config(work, train="train_bad_label.csv"))
    assert_refused(result, "train_bad_label.csv", "'click'", "0", "1", out=work / "run", spy=spy)


def test_binary_label_text_outside_0_1(work, spy):
    body = rows(80, 1)
    body[3][HEADER.index("click")] = "yes"
    write_csv(work / "valid_bad_label.csv", HEADER, body)
    result = train(work, config(work, validation="valid_bad_label.csv"))
    assert_refused(result, "valid_bad_label.csv", "'click'", "'yes'", out=work / "run", spy=spy)


def test_empty_file(work, spy):
    (work / "empty.csv").write_text("")
    result = train(work, config(work, train="empty.csv"))
    assert_refused(result, "empty.csv", "empty", out=work / "run", spy=spy)


def test_header_only_csv(work, spy):
    write_csv(work / "header_only.csv", HEADER, [])
    result = train(work, config(work, train="header_only.csv"))
    assert_refused(result, "header_only.csv", "no rows", out=work / "run", spy=spy)


def test_missing_train_file(work, spy):
    result = train(work, config(work, train="nowhere.csv"))
    assert_refused(result, "nowhere.csv", "not found", out=work / "run", spy=spy)


def test_non_numeric_value_in_declared_numeric_column(work, spy):
    body = rows(300, 0)
    body[42][HEADER.index("age")] = "abc"
    write_csv(work / "train_bad_age.csv", HEADER, body)
    result = train(work, config(work, train="train_bad_age.csv"))
    assert_refused(result, "train_bad_age.csv", "'age'", "'abc'", out=work / "run", spy=spy)


def test_non_numeric_value_in_regression_label(work, spy):
    body = rows(80, 1)
    body[5][HEADER.index("spend")] = "lots"
    write_csv(work / "valid_bad_spend.csv", HEADER, body)
    result = train(work, config(work, validation="valid_bad_spend.csv"))
    assert_refused(result, "valid_bad_spend.csv", "'spend'", "'lots'", out=work / "run", spy=spy)


def test_missing_column_in_validation_file(work, spy):
    header, body = drop_column(rows(80, 1), "city")
    write_csv(work / "valid_nocity.csv", header, body)
    result = train(work, config(work, validation="valid_nocity.csv"))
    assert_refused(result, "valid_nocity.csv", "'city'", out=work / "run", spy=spy)


def test_missing_where_column_in_validation_file(work, spy):
    # click is both a label and the where column of buy
    header, body = drop_column(rows(80, 1), "click")
    write_csv(work / "valid_noclick.csv", header, body)
    result = train(work, config(work, validation="valid_noclick.csv"))
    assert_refused(result, "valid_noclick.csv", "'click'", out=work / "run", spy=spy)


# -- configuration ---------------------------------------------------------------------------------
def test_unknown_model_name(work, spy):
    result = train(work, config(work), "--set", "model.name=mmoe_plus")
    line = assert_refused(result, "mmoe_plus", "mmoe", out=work / "run", spy=spy)
    assert not line.startswith('error: "'), line  # the message, not a KeyError repr


def test_unknown_model_parameter(work, spy):
    result = train(work, config(work), "--set", "model.num_expertz=3")
    assert_refused(result, "model.num_expertz", out=work / "run", spy=spy)


def test_wrong_model_parameter_type(work, spy):
    result = train(work, config(work), "--set", "model.num_experts=many")
    assert_refused(result, "model.num_experts", out=work / "run", spy=spy)


def test_unknown_weighting_name(work, spy):
    result = train(work, config(work), "--set", "weighting.name=uncertaintyy")
    assert_refused(result, "uncertaintyy", out=work / "run", spy=spy)


@pytest.mark.parametrize(
    "override, key",
    [("foo=1", "foo"), ("train.epochz=3", "train.epochz"), ("data.split.valid=0.2", "data.split.valid"),
     ("data.features.numerc=[age]", "data.features.numerc")],
)
def test_unknown_config_key_via_set(work, spy, override, key):
    result = train(work, config(work), "--set", override)
    assert_refused(result, key, "unknown", out=work / "run", spy=spy)


def test_unknown_config_keys_in_yaml_file(work, spy):
    text = CONFIG.format(train="train.csv", validation="valid.csv") + "trainer:\n  epochs: 3\n"
    result = train(work, config(work, text=text))
    assert_refused(result, "config.yaml", "trainer", out=work / "run", spy=spy)
    text = CONFIG.format(train="train.csv", validation="valid.csv").replace("    - name: click\n", "    - name: click\n      kindd: binary\n")
    result = train(work, config(work, text=text))
    assert_refused(result, "config.yaml", "data.tasks.0.kindd", out=work / "run", spy=spy)


def test_wrong_type(work, spy):
    result = train(work, config(work), "--set", "train.epochs=abc")
    assert_refused(result, "train.epochs", "abc", out=work / "run", spy=spy)


@pytest.mark.parametrize("monitor, needle", [("clik.auc", "clik"), ("click.rmse", "rmse"), ("auc", "auc")])
def test_monitor_unknown_task_or_metric(work, spy, monitor, needle):
    result = train(work, config(work), "--set", f"train.monitor={monitor}")
    assert_refused(result, "train.monitor", needle, out=work / "run", spy=spy)


def test_bad_optimizer_value(work, spy):
    result = train(work, config(work), "--set", "optimizer.eps=-1")
    assert_refused(result, "optimizer", out=work / "run", spy=spy)


def test_unknown_device(work, spy):
    result = train(work, config(work), "--set", "train.device=tpu9")
    assert_refused(result, "train.device", out=work / "run", spy=spy)


def test_dataset_parameter_value(work, spy):
    cfg = config(work, text="data:\n  dataset: census_income\n  params:\n    group: 5\ntrain:\n  progress: false\n")
    assert_refused(train(work, cfg), "group", "data.params", out=work / "run", spy=spy)
    assert_refused(train(work, cfg, "--set", "data.params.groups=1"), "data.params.groups", out=work / "run", spy=spy)


def test_config_file_not_found_and_not_yaml(work, spy):
    assert_refused(train(work, work / "nope.yaml"), "nope.yaml", out=work / "run", spy=spy)
    bad = config(work, text="data: [unclosed\n")
    assert_refused(train(work, bad), "config.yaml", out=work / "run", spy=spy)


def test_out_is_a_file(work, spy):
    (work / "run").write_text("not a directory")
    result = train(work, config(work))
    assert_refused(result, str(work / "run"), spy=spy)
    assert (work / "run").read_text() == "not a directory"
    assert not (work / "run.partial").exists()


# -- predict and evaluate ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("bad_input_run")
    write_csv(work / "train.csv", HEADER, rows(300, 0))
    write_csv(work / "valid.csv", HEADER, rows(80, 1))
    (work / "config.yaml").write_text(CONFIG.format(train=work / "train.csv", validation=work / "valid.csv"))
    result = runner.invoke(app, ["train", str(work / "config.yaml"), "--out", str(work / "run")])
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}\n{result.exception!r}"
    return work / "run"


def test_predict_on_file_missing_a_feature_column(trained_run, tmp_path):
    header, body = drop_column(rows(50, 2), "score")
    inp = write_csv(tmp_path / "new_rows.csv", header, body)
    dest = tmp_path / "pred.parquet"
    result = runner.invoke(app, ["predict", str(trained_run), str(inp), "-o", str(dest)])
    assert_refused(result, "new_rows.csv", "'score'")
    assert not dest.exists()
    assert os.listdir(tmp_path) == ["new_rows.csv"]


def test_predict_keep_column_not_in_input(trained_run, tmp_path):
    inp = write_csv(tmp_path / "new_rows.csv", HEADER, rows(50, 2))
    dest = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(trained_run), str(inp), "-o", str(dest), "--keep", "user_id"])
    assert_refused(result, "new_rows.csv", "'user_id'")
    assert not dest.exists()


def test_predict_on_empty_file(trained_run, tmp_path):
    inp = write_csv(tmp_path / "header_only.csv", HEADER, [])
    dest = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(trained_run), str(inp), "-o", str(dest)])
    assert_refused(result, "header_only.csv", "no rows")
    assert not dest.exists()


def test_evaluate_on_directory_that_is_not_a_run(tmp_path):
    notrun = tmp_path / "not_a_run"
    notrun.mkdir()
    (notrun / "metrics.json").write_text("{}")
    result = runner.invoke(app, ["evaluate", str(notrun)])
    assert_refused(result, str(notrun), "not a run directory")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing")])
    assert_refused(result, str(tmp_path / "missing"))


def test_evaluate_data_missing_label_column(trained_run, tmp_path):
    header, body = drop_column(rows(50, 2), "buy")
    inp = write_csv(tmp_path / "labelled.csv", header, body)
    result = runner.invoke(app, ["evaluate", str(trained_run), "--data", str(inp)])
    assert_refused(result, "labelled.csv", "'buy'")
