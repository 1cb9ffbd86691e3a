"""The export contract over every registered architecture (parametrised from the registry, so a new
model is covered without a line here): each exports to ONNX and TorchScript, and onnxruntime's and
TorchScript's outputs on the reference preprocessor's arrays equal ``Run.predict`` (binary tasks:
probabilities, so |difference| <= 1e-5 + 1e-5 x |value|) on a small census run; or the model
declares that it cannot (``export_refusal``) and the export is refused with that one line. Text-only
architectures (JMT, ``conftest.TEXT_ONLY_MODELS``) get a generated sentence table instead of census,
with a tagging and a binary task. Each architecture is trained once per module (one epoch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import TEXT_ONLY_MODELS
from exported import run_exported

import polytask
from polytask.errors import ExportError
from polytask.export import FORMATS, export_run
from polytask.export.reference import ReferencePreprocessor
from polytask.registry import MODELS
from polytask.run import Run

pytestmark = pytest.mark.slow

#: architectures that give named tasks structural roles get census tasks in those roles
ROLES = {"esmm": {"ctr_task": "income", "ctcvr_task": "never_married"}}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def census(data_dir_path):
    from polytask.data.datasets.census_income import census_income

    return census_income(data_dir_path, max_rows=600, split_seed=0)


@pytest.fixture(scope="module")
def data_dir_path() -> Path:
    from polytask.data.paths import resolve_data_dir

    return resolve_data_dir()  # raises (the test fails, not skips) when there is no data directory


def sentences(n: int, seed: int) -> pa.Table:
    """Space-separated sentences of 2..7 words (and a second sentence), a tag per word and a binary label."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"text": [], "text_b": [], "tag": [], "long": []}
    for _ in range(n):
        a, b = rng.integers(0, 12, rng.integers(2, 8)), rng.integers(0, 12, rng.integers(2, 8))
        rows["text"].append(" ".join(f"w{i}" for i in a))
        rows["text_b"].append(" ".join(f"w{i}" for i in b))
        rows["tag"].append(" ".join(f"T{i % 3}" for i in a))
        rows["long"].append(int(len(a) > 4))
    return pa.table(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, census):
    """``trained(name) -> (run directory, input table)``, each architecture trained once."""
    cache: dict[str, tuple[Path, pa.Table]] = {}
    root = tmp_path_factory.mktemp("export_matrix")

    def get(name: str) -> tuple[Path, pa.Table]:
        if name not in cache:
            out = root / name
            common = {"epochs": 1, "progress": False, "device": "cpu", "seed": 0, "out": out}
            if name in TEXT_ONLY_MODELS:
                seq = {"separator": " ", "max_len": 8}
                polytask.fit(train=sentences(120, 0), validation=sentences(40, 1),
                             features={"sequence": [{"name": "text", "char_ngrams": [2, 3], **seq},
                                                    {"name": "text_b", "char_ngrams": [2, 3], "vocabulary": "text", **seq}]},
                             tasks=[{"name": "tag", "kind": "tagging", "tokens": "text"}, {"name": "long"}],
                             model={"name": name, **TEXT_ONLY_MODELS[name]}, batch_size=32, **common)
                cache[name] = (out, sentences(50, 2))
            else:
                polytask.fit(dataset="census_income", dataset_params={"max_rows": 600, "group": 1, "split_seed": 0},
                             model={"name": name, **ROLES.get(name, {})}, **common)
                cache[name] = (out, census.test)
        return cache[name]

    return get


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", MODELS.names())
def test_every_architecture_exports_and_matches_predict_or_refuses(name, fmt, trained, tmp_path):
    run_dir, table = trained(name)
    run = Run.load(run_dir)
    refusal = run.model.export_refusal(fmt)
    if refusal is not None:
        with pytest.raises(ExportError) as caught:
            export_run(run_dir, tmp_path / f"model{FORMATS[fmt]}", fmt)
        message = str(caught.value)
        assert message == f"{name} cannot be exported to {fmt}: {refusal}" and "\n" not in message
        return
    result = export_run(run_dir, tmp_path / f"model{FORMATS[fmt]}", fmt)
    assert [o["name"] for o in result.outputs] == [t.name for t in run.tasks]
    inputs = ReferencePreprocessor.load(str(result.preprocess))(table.to_pydict())
    got = run_exported(result, inputs)
    want = run.predict(table)
    for task in run.tasks:
        assert got[task.name].shape == want[task.name].shape, (name, fmt, task.name)
        np.testing.assert_allclose(got[task.name], want[task.name], **TOLERANCE, err_msg=f"{name} {fmt} {task.name}")
