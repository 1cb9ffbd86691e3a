"""The ``tabular`` encoder's sequence pooling (``pooling: mean | sum | max``), by hand and end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
from polytask.data.schema import FeatureSpec, InputSpec
from polytask.encoders.tabular import TabularInput, pool
from polytask.errors import ConfigError


def test_pool_known_answers_leave_padding_out():
    items = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]],
                          [[-1.0, -5.0], [9.0, 9.0], [9.0, 9.0]]])
    present = torch.tensor([[True, True, False], [True, False, False]])
    torch.testing.assert_close(pool(items, present, "mean"), torch.tensor([[2.0, 1.0], [-1.0, -5.0]]))
    torch.testing.assert_close(pool(items, present, "sum"), torch.tensor([[4.0, 2.0], [-1.0, -5.0]]))
    torch.testing.assert_close(pool(items, present, "max"), torch.tensor([[3.0, 4.0], [-1.0, -5.0]]))
    empty = torch.zeros(1, 3, dtype=torch.bool)
    for how in ("mean", "sum", "max"):  # no item: zeros, never -inf or NaN
        torch.testing.assert_close(pool(items[:1], empty, how), torch.zeros(1, 2))


def test_the_encoder_pools_each_sequence_feature_its_own_way():
    spec = InputSpec(sequences={"a": 5, "b": 5}, pooling={"b": "max"})
    enc = TabularInput(spec, embedding_dim=3)
    ids = torch.tensor([[2, 3, 0], [0, 0, 0]])
    out = enc({"seq:a": ids, "seq:b": ids})
    ea, eb = enc.sequences["a"].weight, enc.sequences["b"].weight
    torch.testing.assert_close(out[0, :3], (ea[2] + ea[3]) / 2)
    torch.testing.assert_close(out[0, 3:], torch.maximum(eb[2], eb[3]))
    torch.testing.assert_close(out[1], torch.zeros(6))
    out.sum().backward()  # gradients reach the items that were pooled, and not padding
    assert eb.grad[0].abs().sum() == 0 and eb.grad[2].abs().sum() + eb.grad[3].abs().sum() > 0


def test_pooling_is_saved_with_the_run_and_refused_elsewhere(tmp_path):
    rng = np.random.default_rng(0)
    hist = ["|".join(map(str, rng.integers(0, 9, rng.integers(0, 5)))) for _ in range(200)]
    y = np.array([int("7" in h.split("|")) for h in hist])
    data = pd.DataFrame({"hist": hist, "x": rng.normal(size=200), "y": y})
    features = {"numeric": ["x"], "sequence": [{"name": "hist", "pooling": "max", "max_len": 5}]}
    run = polytask.fit(train=data, validation=data, features=features, tasks=[{"name": "y"}], model="shared_bottom",
                       epochs=30, patience=None, batch_size=32, progress=False, device="cpu", out=tmp_path / "run",
                       optimizer={"name": "adam", "lr": 0.03})
    assert run.preprocessor.input_spec().pooling == {"hist": "max"}
    assert run.metrics["validation"]["y"]["auc"] > 0.95  # "has item 7" is one max-pooled dimension away
    again = polytask.load_run(tmp_path / "run")
    np.testing.assert_allclose(again.predict(data)["y"], run.predict(data)["y"], rtol=1e-6)
    with pytest.raises(ConfigError, match="feature 'x': pooling applies to sequence features only"):
        FeatureSpec("x", "numeric", pooling="max")
    with pytest.raises(ConfigError, match="pooling"):
        polytask.fit(train=data, features={"sequence": [{"name": "hist", "pooling": "median"}]}, tasks=[{"name": "y"}],
                     model="shared_bottom", epochs=1, progress=False)
