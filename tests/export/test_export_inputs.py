"""Inputs beyond census's numeric and categorical groups export too, in both formats, and the
exported model equals ``Run.predict``: images (uint8 pixels in, the model normalises them; the
reference preprocessor takes decoded pixels), dense tensors read by convolutional columns, text read
by the ``tokens`` encoder's packed BiLSTM and by ``lstm`` columns (exported to ONNX by the
TorchScript-based exporter, since ``torch.export`` cannot capture packed sequences), behaviour
sequences (with empty histories) through DUPN's LSTM and property-gated cell, and the
recommendation feature options (hashing, per-feature widths, ``shared_with``, attention pooling)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from exported import run_exported
from PIL import Image

import polytask
from polytask.export import FORMATS, export_run
from polytask.export.reference import ReferencePreprocessor

pytestmark = pytest.mark.slow  # seven small trainings and fourteen exports: ~30 s on an idle 2-core machine

TEXT = {"sequence": [{"name": "text", "separator": " ", "max_len": 6}]}
BEHAVIOUR = {"sequence": [{"name": "text", "separator": " ", "max_len": 6}, {"name": "kind", "separator": " ", "max_len": 6}],
             "numeric": ["x"]}
CASES = {
    "image_cnn": ({"image": [{"name": "img", "channels": 1, "size": 24}], "numeric": ["x"]},
                  {"name": "shared_bottom", "encoder": "cnn", "bottom_hidden": [4]}),
    "dense_cnn_columns": ({"dense": [{"name": "vec", "shape": [1, 8, 8], "scale": "none"}]},
                          {"name": "cross_stitch", "columns": "cnn", "hidden": [4], "column_params": {"kernel_size": 3}}),
    "tokens_encoder": ({**TEXT, "numeric": ["x"]}, {"name": "mmoe", "encoder": "tokens", "encoder_params": {"dim": 8}}),
    "lstm_columns": (TEXT, {"name": "sluice", "columns": "lstm", "hidden": [4]}),
    # a behaviour sequence (item + property) through DUPN's LSTM, and through its property-gated cell
    "dupn_lstm": (BEHAVIOUR, {"name": "dupn", "hidden_size": 8, "attention_dim": 8, "embedding_dim": 4}),
    "dupn_property_gated": (BEHAVIOUR, {"name": "dupn", "hidden_size": 8, "attention_dim": 8, "embedding_dim": 4,
                                        "cell": "property_gated"}),
}


def table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"img": [], "vec": [], "x": [], "text": [], "kind": [], "y": []}
    for _ in range(n):
        pixels = rng.integers(0, 255, (24, 24), dtype=np.uint8)
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        rows["img"].append(png.getvalue())
        rows["vec"].append(rng.normal(size=64).tolist())
        rows["x"].append(float(rng.normal()))
        words = rng.integers(0, 9, rng.integers(0, 7))
        rows["text"].append(" ".join(f"w{j}" for j in words))
        rows["kind"].append(" ".join(rng.choice(["view", "buy"], len(words))))
        rows["y"].append(int(pixels.mean() > 127))
    return pa.table(rows)


@pytest.mark.parametrize("case", list(CASES))
def test_exports_match_predict(case, tmp_path):
    features, model = CASES[case]
    run = polytask.fit(train=table(64, 0), validation=table(32, 1), tasks=[{"name": "y"}], features=features, model=model,
                       epochs=1, batch_size=32, progress=False, device="cpu", seed=0, out=tmp_path / "run")
    test = table(23, 2)
    want = run.predict(test)["y"]
    data = test.to_pydict()
    if "image" in features:  # the reference preprocessor takes decoded pixels
        data["img"] = list(run.preprocessor.transform(test, "test", with_labels=False).features["dense:img"].numpy())
    for fmt in FORMATS:
        result = export_run(tmp_path / "run", tmp_path / fmt / f"model{FORMATS[fmt]}", fmt)
        got = run_exported(result, ReferencePreprocessor.load(str(result.preprocess))(data))["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{case} {fmt}")


def recsys(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    items = [f"i{j}" for j in range(30)]
    hist = [list(rng.choice(items, rng.integers(0, 7))) for _ in range(n)]
    cand = list(rng.choice(items, n))
    return pa.table({"user": rng.integers(0, 10**6, n), "cand": cand, "hist": hist, "x": rng.normal(size=n),
                     "click": [int(c in h) for c, h in zip(cand, hist)]})


def test_recommendation_feature_options_export(tmp_path):
    """Hashed ids, per-feature embedding widths, a history sharing the candidate's vocabulary and
    table (``shared_with``) and pooled by attention on it: the reference preprocessor gives
    polytask's arrays and both exports equal ``Run.predict``."""
    features = {"numeric": ["x"],
                "categorical": [{"name": "user", "hash_buckets": 64, "embedding_dim": 3}, {"name": "cand", "embedding_dim": 6}],
                "sequence": [{"name": "hist", "max_len": 6, "pooling": "attention", "target": "cand", "shared_with": "cand",
                              "embedding_dim": 6}]}
    run = polytask.fit(train=recsys(200, 0), validation=recsys(60, 1), tasks=[{"name": "click"}], features=features,
                       model={"name": "mmoe", "num_experts": 2, "expert_hidden": [8]}, epochs=1, progress=False,
                       device="cpu", seed=0, out=tmp_path / "run")
    test = recsys(40, 2)
    want = run.predict(test)["click"]
    encoded = run.preprocessor.transform(test, "test", with_labels=False).features
    for fmt in FORMATS:
        result = export_run(tmp_path / "run", tmp_path / fmt / f"model{FORMATS[fmt]}", fmt)
        inputs = ReferencePreprocessor.load(str(result.preprocess))(test.to_pydict())
        for i in result.inputs:
            np.testing.assert_array_equal(inputs[i["name"]], encoded[i["group"]].numpy())
        np.testing.assert_allclose(run_exported(result, inputs)["click"], want, rtol=1e-5, atol=1e-5, err_msg=fmt)
