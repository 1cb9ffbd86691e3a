"""``--with-encoders``: the numeric and categorical encoders inside the ONNX graph. Fed the table's
columns (numeric float64 with NaN, categorical text with "" for missing), onnxruntime gives what
``Run.predict`` gives (1e-5), on census through the command and on a generated table with a log1p
feature, missing values (imputed, with the indicator column) and unseen categories; what cannot go
into a graph is refused with one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.errors import ExportError
from polytask.export import export_run
from polytask.export.onnx_encoders import column_arrays, encoder_model, sample_columns
from polytask.export.reference import ReferencePreprocessor
from polytask.run import Run

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def table(n: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1.5, n)
    amount[rng.random(n) < 0.2] = np.nan  # missing: imputed, with an indicator column
    cities = ["paris", "rome", "oslo", "lima"] + (["tokyo"] if unseen else [])
    city = rng.choice(cities, n).astype(object)
    city[rng.random(n) < 0.1] = None
    shop = rng.integers(0, 6 if not unseen else 9, n)  # integer categories: text "3", not "3.0"
    score = rng.normal(size=n)
    click = (rng.random(n) < 1 / (1 + np.exp(-(score + (city == "rome") - 0.3 * (shop == 2))))).astype(np.int64)
    return pd.DataFrame({"amount": amount, "score": score, "city": city, "shop": shop, "click": click,
                         "spend": np.nan_to_num(np.log1p(amount)) + rng.normal(size=n) * 0.1})


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    work = tmp_path_factory.mktemp("baked")
    features = {"numeric": [{"name": "amount", "log1p": True}, "score"], "categorical": ["city", "shop"]}
    polytask.fit(train=table(400, 0), validation=table(100, 1), features=features,
                 tasks=[{"name": "click"}, {"name": "spend", "kind": "regression"}],
                 model={"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]},
                 epochs=2, progress=False, device="cpu", seed=0, out=work / "run")
    result = export_run(work / "run", work / "serve" / "model.onnx", "onnx", with_encoders=True)
    return work, result


def test_columns_in_predictions_out_equal_run_predict(baked):
    work, result = baked
    run = Run.load(work / "run")
    data = pa.Table.from_pandas(table(120, 2, unseen=True).drop(columns=["click", "spend"]), preserve_index=False)
    sess = session(result.model)
    assert [(i.name, i.type) for i in sess.get_inputs()] == [
        ("amount", "tensor(double)"), ("score", "tensor(double)"), ("city", "tensor(string)"), ("shop", "tensor(string)")]
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, column_arrays(data, result.spec))))
    want = run.predict(data)
    for name in ("click", "spend"):
        np.testing.assert_allclose(got[name], want[name], **TOLERANCE, err_msg=name)
    spec = json.loads(result.preprocess.read_text())
    assert spec["model"]["encoders_in_graph"] is True
    assert [c["name"] for c in spec["columns"]] == ["amount", "score", "city", "shop"]


def test_the_encoder_graph_alone_equals_the_preprocessor(baked):
    """Numeric values (log1p, imputed, scaled; the indicator column) and ids, exactly."""
    import onnxruntime

    work, result = baked
    run = Run.load(work / "run")
    data = pa.Table.from_pandas(table(90, 3, unseen=True).drop(columns=["click", "spend"]), preserve_index=False)
    model = encoder_model(result.spec, 18, 10)
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, column_arrays(data, result.spec))))
    want = run.preprocessor.transform(data, "input", with_labels=False).features
    assert got["numeric"].shape == (90, 3)  # amount, its missing indicator, score
    np.testing.assert_allclose(got["numeric"], want["numeric"].numpy(), rtol=1e-6, atol=1e-6)  # log1p vs log(1 + x)
    np.testing.assert_array_equal(got["categorical"], want["categorical"].numpy())
    assert (got["categorical"] == 0).any()  # unseen and missing values: the unknown id


def test_generated_columns_agree_with_the_reference_preprocessor(baked):
    """The check the export itself runs: the baked graph on generated columns = the plain model on
    the reference preprocessor's arrays."""
    _, result = baked
    columns = sample_columns(result.spec, 50, seed=9)
    encoded = ReferencePreprocessor(result.spec)({k: list(v) for k, v in columns.items()})
    sess = session(result.model)
    got = sess.run(None, columns)
    import onnxruntime

    plain = encoder_model(result.spec, 18, 10)
    enc = onnxruntime.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    numeric, categorical = enc.run(["numeric", "categorical"], columns)
    np.testing.assert_allclose(numeric, encoded["numeric"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(categorical, encoded["categorical"])
    assert all(np.isfinite(g).all() for g in got)


def test_the_command_on_census_equals_polytask_predict(tmp_path):
    from polytask.data.datasets.census_income import census_income
    from polytask.data.paths import resolve_data_dir

    polytask.fit(dataset="census_income", dataset_params={"max_rows": 600, "group": 1, "split_seed": 0},
                 model={"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]},
                 epochs=1, progress=False, device="cpu", seed=0, out=tmp_path / "run")
    test = census_income(resolve_data_dir(), max_rows=600, split_seed=0).test.drop_columns(["income", "never_married"])
    pacsv.write_csv(test, tmp_path / "input.csv")
    runner = CliRunner()
    out = runner.invoke(app, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "serve" / "model.onnx"), "--with-encoders"])
    assert out.exit_code == 0, out.stdout
    assert "7 float64 columns [batch]: age," in out.stdout and "31 string columns [batch]: class_worker," in out.stdout
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), str(tmp_path / "input.csv"), "-o", str(tmp_path / "p.parquet")])
    assert predicted.exit_code == 0, predicted.stdout
    want = pq.read_table(tmp_path / "p.parquet")
    spec = json.loads((tmp_path / "serve" / "preprocess.json").read_text())
    got = session(tmp_path / "serve" / "model.onnx").run(None, column_arrays(pacsv.read_csv(tmp_path / "input.csv"), spec))
    for name, value in zip(["income", "never_married"], got):
        np.testing.assert_allclose(value, want.column(name).to_numpy(), **TOLERANCE, err_msg=name)


def test_what_cannot_go_into_a_graph_is_one_line(tmp_path):
    frame = table(200, 0)
    frame["history"] = ["a|b", "c", "", "b|c|a"] * 50
    polytask.fit(train=frame, validation=frame, tasks=[{"name": "click"}],
                 features={"numeric": ["score"], "categorical": [{"name": "shop", "hash_buckets": 50}]},
                 model={"name": "shared_bottom", "bottom_hidden": [4]}, epochs=1, progress=False, seed=0,
                 out=tmp_path / "hashed")
    polytask.fit(train=frame, validation=frame, tasks=[{"name": "click"}],
                 features={"numeric": ["score"], "sequence": ["history"]},
                 model={"name": "shared_bottom", "bottom_hidden": [4]}, epochs=1, progress=False, seed=0,
                 out=tmp_path / "sequence")
    with pytest.raises(ExportError, match="'shop' is hashed"):
        export_run(tmp_path / "hashed", tmp_path / "a.onnx", "onnx", with_encoders=True)
    with pytest.raises(ExportError, match="only numeric and categorical features go into the graph; this run also has seq"):
        export_run(tmp_path / "sequence", tmp_path / "b.onnx", "onnx", with_encoders=True)
    with pytest.raises(ExportError, match="use --format onnx"):
        export_run(tmp_path / "hashed", tmp_path / "c.pt", "torchscript", with_encoders=True)
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()
