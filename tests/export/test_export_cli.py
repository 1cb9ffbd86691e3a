"""``polytask export`` end to end on a small census run: export, then onnxruntime on the reference
preprocessor's arrays for a CSV file equals the file ``polytask predict`` writes for it (1e-5); and
a bad run directory or an unknown format is one ``error:`` line and exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.export.reference import ReferencePreprocessor

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def census_run(tmp_path_factory):
    """A one-epoch MMoE run on 600 census rows and a CSV of its test rows' features."""
    from polytask.data.datasets.census_income import census_income
    from polytask.data.paths import resolve_data_dir

    work = tmp_path_factory.mktemp("export_cli")
    polytask.fit(dataset="census_income", dataset_params={"max_rows": 600, "group": 1, "split_seed": 0},
                 model={"name": "mmoe", "num_experts": 3, "expert_hidden": [8], "tower_hidden": [4]},
                 epochs=1, progress=False, device="cpu", seed=0, out=work / "run")
    test = census_income(resolve_data_dir(), max_rows=600, split_seed=0).test
    pacsv.write_csv(test.drop_columns(["income", "never_married"]), work / "input.csv")
    return work


def test_export_then_onnxruntime_equals_polytask_predict(census_run):
    import onnxruntime

    work = census_run
    result = invoke("export", work / "run", "--format", "onnx", "-o", work / "serve" / "model.onnx")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"wrote {work / 'serve' / 'model.onnx'} (onnx, ")
    assert "numeric: float32 [batch, 7]" in result.stdout and "categorical: int32 [batch, 31]" in result.stdout
    assert "income: float32 [batch]  (binary)" in result.stdout and "never_married: float32 [batch]" in result.stdout
    assert {p.name for p in (work / "serve").iterdir()} == {"model.onnx", "preprocess.json", "polytask_preprocess.py"}
    assert json.loads((work / "serve" / "preprocess.json").read_text())["model"]["file"] == "model.onnx"

    predicted = invoke("predict", work / "run", work / "input.csv", "-o", work / "preds.parquet")
    assert predicted.exit_code == 0, predicted.stdout + predicted.stderr
    want = pq.read_table(work / "preds.parquet")

    pre = ReferencePreprocessor.load(str(work / "serve" / "preprocess.json"))
    session = onnxruntime.InferenceSession(str(work / "serve" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, pre(pacsv.read_csv(work / "input.csv").to_pylist()))  # records, as a service receives them
    for name, value in zip(["income", "never_married"], got):
        np.testing.assert_allclose(value, want.column(name).to_numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_torchscript_and_raw_through_the_command(census_run):
    work = census_run
    result = invoke("export", work / "run", "-f", "torchscript", "--raw", "-o", work / "ts" / "model.pt")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "(torchscript, torch.jit.trace" in result.stdout and "outputs (raw: logits):" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["{work}/nowhere", "-o", "{work}/x/model.onnx"], "run directory not found"),
    (["{work}/run", "-f", "tflite", "-o", "{work}/x/model.tflite"], "unknown export format 'tflite' (known: onnx, torchscript)"),
    (["{work}", "-o", "{work}/x/model.onnx"], "not a run directory"),
])
def test_bad_input_is_one_error_line(census_run, args, message):
    result = invoke("export", *(a.format(work=census_run) for a in args))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ") and message in result.stderr
