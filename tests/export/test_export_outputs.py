"""What an exported model returns, on a small generated table with a binary, a multiclass and a
regression task: predictions equal ``Run.predict`` (probabilities, class probabilities, values in
the label's units; |difference| <= 1e-5 + 1e-5 x |value|), ``raw=True`` gives the model's raw
outputs, any batch size works (1 and 37 rows), and a model that declares it cannot be exported, or
whose export does not reproduce it, is refused with one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import make_frame
from exported import run_exported

import polytask
from polytask.errors import ExportError
from polytask.export import FORMATS, export_run
from polytask.export.reference import ReferencePreprocessor
from polytask.models.shared_bottom import SharedBottom
from polytask.run import Run
from polytask.train.evaluation import predict_raw

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
TASKS = [{"name": "click"}, {"name": "segment", "kind": "multiclass"}, {"name": "spend", "kind": "regression"}]


@pytest.fixture(scope="module")
def kinds_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "run"
    polytask.fit(train=make_frame(300, 0), validation=make_frame(100, 1), tasks=TASKS,
                 features={"numeric": ["age", "score"], "categorical": ["city"]},
                 model={"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]},
                 epochs=2, progress=False, device="cpu", seed=0, out=out)
    return out, pa.Table.from_pandas(make_frame(80, 2).drop(columns=["click", "segment", "spend"]), preserve_index=False)


@pytest.fixture(scope="module")
def exports(kinds_run, tmp_path_factory):
    """``{(format, raw): ExportResult}``, each exported once."""
    run_dir, _ = kinds_run
    root = tmp_path_factory.mktemp("kinds_export")
    return {(fmt, raw): export_run(run_dir, root / f"{fmt}{'_raw' if raw else ''}" / f"model{FORMATS[fmt]}", fmt, raw=raw)
            for fmt in FORMATS for raw in (False, True)}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_predictions_of_every_kind_equal_run_predict(kinds_run, exports, fmt):
    run_dir, table = kinds_run
    run = Run.load(run_dir)
    result = exports[(fmt, False)]
    got = run_exported(result, ReferencePreprocessor.load(str(result.preprocess))(table.to_pydict()))
    want = run.predict(table)
    assert got["segment"].shape == (80, 3) and got["click"].shape == got["spend"].shape == (80,)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], **TOLERANCE, err_msg=name)
    np.testing.assert_allclose(got["segment"].sum(1), 1.0, atol=1e-6)
    assert abs(float(got["spend"].mean()) - float(make_frame(300, 0)["spend"].mean())) < 1.0  # in the label's units


def test_preprocess_json_describes_inputs_and_outputs(exports):
    spec = json.loads(exports[("onnx", False)].preprocess.read_text())
    assert [(i["name"], i["dtype"], i["shape"]) for i in spec["inputs"]] == [
        ("numeric", "float32", ["batch", 2]), ("categorical", "int32", ["batch", 1])]
    assert [(o["name"], o["kind"], o["shape"]) for o in spec["outputs"]] == [
        ("click", "binary", ["batch"]), ("segment", "multiclass", ["batch", 3]), ("spend", "regression", ["batch"])]
    assert spec["outputs"][1]["classes"] == ["high", "low", "mid"]
    assert spec["model"]["format"] == "onnx" and spec["model"]["opset"] >= 17 and spec["model"]["raw"] is False


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_raw_gives_the_model_outputs(kinds_run, exports, fmt):
    run_dir, table = kinds_run
    run = Run.load(run_dir)
    result = exports[(fmt, True)]
    got = run_exported(result, ReferencePreprocessor.load(str(result.preprocess))(table.to_pydict()))
    raw = predict_raw(run.model, run.preprocessor.transform(table, "input", with_labels=False), [t.name for t in run.tasks])
    for name, value in raw.items():
        np.testing.assert_allclose(got[name], value.numpy(), **TOLERANCE, err_msg=name)
    assert got["click"].min() < 0 or got["click"].max() > 1 or not np.allclose(got["click"], run.predict(table)["click"])
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(got["segment"]), 1).numpy(), run.predict(table)["segment"],
                               **TOLERANCE)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("rows", [1, 37])
def test_any_batch_size(kinds_run, exports, fmt, rows):
    run_dir, table = kinds_run
    part = table.slice(3, rows)
    result = exports[(fmt, False)]
    got = run_exported(result, ReferencePreprocessor.load(str(result.preprocess))(part.to_pydict()))
    want = Run.load(run_dir).predict(part)
    for name in want:
        assert got[name].shape[0] == rows
        np.testing.assert_allclose(got[name], want[name], **TOLERANCE, err_msg=name)


def test_a_model_that_declares_a_refusal_is_refused_with_its_line(kinds_run, tmp_path, monkeypatch):
    monkeypatch.setattr(SharedBottom, "export_refusal", lambda self, fmt: f"no {fmt} for this one", raising=True)
    with pytest.raises(ExportError) as caught:
        export_run(kinds_run[0], tmp_path / "model.onnx", "onnx")
    assert str(caught.value) == "shared_bottom cannot be exported to onnx: no onnx for this one"
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_an_export_that_does_not_reproduce_the_model_is_refused(kinds_run, tmp_path, monkeypatch, fmt):
    forward = SharedBottom.forward

    def batch_dependent(self, features):  # a Python branch on the batch size: a trace keeps one side
        out = forward(self, features)
        return {k: v + 1 for k, v in out.items()} if features["numeric"].shape[0] == 37 else out

    monkeypatch.setattr(SharedBottom, "forward", batch_dependent)
    with warnings.catch_warnings(), pytest.raises(ExportError, match="differs from PyTorch") as caught:
        warnings.simplefilter("ignore")
        export_run(kinds_run[0], tmp_path / f"model{FORMATS[fmt]}", fmt)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / f"model{FORMATS[fmt]}").exists()


def test_a_task_name_that_cannot_name_an_output_is_refused(tmp_path):
    polytask.fit(train=make_frame(60, 0), tasks=[{"name": "will click", "label": "click"}], features={"numeric": ["age"]},
                 model={"name": "shared_bottom", "bottom_hidden": [4]}, epochs=1, progress=False, device="cpu",
                 out=tmp_path / "run")
    with pytest.raises(ExportError, match=r"^task 'will click': its name cannot name an exported output \(spaces"):
        export_run(tmp_path / "run", tmp_path / "model.onnx", "onnx")


def test_the_torchscript_file_carries_its_inputs_and_outputs(exports):
    extra = {"preprocess.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(exports[("torchscript", False)].model), _extra_files=extra)
    carried = json.loads(extra["preprocess.json"])
    assert [o["name"] for o in carried["outputs"]] == ["click", "segment", "spend"]
    assert [i["name"] for i in carried["inputs"]] == ["numeric", "categorical"]


def test_the_onnx_file_passes_the_checker_with_a_symbolic_batch_axis(exports):
    import onnx

    model = onnx.load(str(exports[("onnx", False)].model))
    onnx.checker.check_model(model)
    graph = model.graph
    assert [i.name for i in graph.input] == ["numeric", "categorical"]
    assert [o.name for o in graph.output] == ["click", "segment", "spend"]
    for value in [*graph.input, *graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.HasField("dim_value"), value.name
