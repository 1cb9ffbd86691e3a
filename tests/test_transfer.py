"""Transfer to a new task: ``train.init_from`` + ``train.freeze`` (polytask.transfer).

A source run is trained on two tasks; a second run on a task the source never saw starts from it.
With ``freeze: shared`` the shared representation must come out of training bit-identical to the
source's while the new task's tower trains; the optimiser must not even hold the frozen tensors.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

import polytask
from polytask.api import seed_everything
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.transfer import IN_MEMORY

FEATURES = {"sequence": [{"name": "hist", "max_len": 6}, {"name": "kind", "max_len": 6}], "categorical": ["cand"],
            "numeric": ["x"]}
OPTIONS = {"epochs": 3, "batch_size": 64, "progress": False, "seed": 0, "device": "cpu"}
DUPN = {"name": "dupn", "embedding_dim": 8, "hidden_size": 8, "attention_dim": 8, "tower_hidden": [8]}


def table(n: int = 1200, seed: int = 0) -> pa.Table:
    """y1: candidate in the history; y2: x > 0; y3 (the new task): candidate in the history at a
    step of kind k1."""
    rng = np.random.default_rng(seed)
    hist, kind, cand, y1, y3 = [], [], [], [], []
    for _ in range(n):
        length = int(rng.integers(0, 7))
        h = rng.choice(20, size=length, replace=False) + 1
        k = rng.integers(0, 2, size=length)
        c = int(h[rng.integers(length)]) if length and rng.random() < 0.5 else int(rng.integers(1, 21))
        hit = np.flatnonzero(h == c)
        hist.append([f"i{v}" for v in h])
        kind.append([f"k{v}" for v in k])
        cand.append(f"i{c}")
        y1.append(int(len(hit) > 0))
        y3.append(int(len(hit) > 0 and k[hit[0]] == 1))
    x = rng.normal(size=n).astype(np.float32)
    return pa.table({"hist": hist, "kind": kind, "cand": cand, "x": x, "y1": np.array(y1, np.int8),
                     "y2": (x > 0).astype(np.int8), "y3": np.array(y3, np.int8)})


def fit(tasks, model=DUPN, data=None, **options):
    t = data if data is not None else table()
    n = t.num_rows
    return polytask.fit(train=t.slice(0, int(n * 0.7)), validation=t.slice(int(n * 0.7), int(n * 0.15)),
                        test=t.slice(int(n * 0.85)), tasks=[{"name": k} for k in tasks], features=FEATURES,
                        model=model, **{**OPTIONS, **options})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "source"
    return fit(["y1", "y2"], out=out)


def shared_names(model) -> set[str]:
    ids = {id(p) for m in model.shared_modules() for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_frozen_representation_is_bit_identical_and_the_new_head_trains(source, tmp_path):
    seen: dict[str, set[int]] = {}

    def record_optimizer(trainer, record):
        seen["ids"] = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}

    run = fit(["y3"], init_from=str(source.directory), freeze="shared", out=tmp_path / "new",
              callbacks=[record_optimizer])
    src_state = source.model.state_dict()
    shared = shared_names(run.model)
    assert shared and {n.split(".")[0] for n in shared} == {"context", "behaviour", "rnn", "attention"}
    params = dict(run.model.named_parameters())
    for name in shared:
        assert torch.equal(params[name], src_state[name]), name  # bit-identical after training
        assert not params[name].requires_grad
        assert id(params[name]) not in seen["ids"], f"frozen {name} is in the optimiser"
    # the new task's tower: fresh (shapes differ from the source's two-task tower) and trained
    report = run.metrics["transfer"]
    assert set(report["loaded"]) == shared and set(report["frozen"]) == shared
    assert {m.split(":")[0] for m in report["shape_mismatch"]} == {n for n in params if n.startswith("heads.")}
    assert sorted(report["encoders"]["reused"]) == ["cand", "hist", "kind", "x"] and report["encoders"]["refit"] == []
    seed_everything(0)
    fresh = create_model("dupn", run.model.input_spec, run.tasks, run.config.model.params())
    for name, p in fresh.named_parameters():
        if name.startswith("heads."):
            assert params[name].requires_grad and not torch.equal(params[name], p), name
    assert run.metrics["test"]["y3"]["auc"] > 0.5
    # the run directory: report on disk, config names the source, loads and predicts on its own
    on_disk = json.loads((tmp_path / "new" / "metrics.json").read_text())
    assert on_disk["transfer"]["frozen"] == report["frozen"]
    cfg = yaml.safe_load((tmp_path / "new" / "config.yaml").read_text())
    assert cfg["train"]["init_from"] == str(source.directory.resolve()) and cfg["train"]["freeze"] == "shared"
    loaded = polytask.load_run(tmp_path / "new")
    data = table(50, seed=9)
    np.testing.assert_allclose(loaded.predict(data)["y3"], run.predict(data)["y3"], rtol=1e-6)


def test_source_encoders_are_reused(source):
    """Trained on a different slice, the new run still encodes with the source's vocabularies."""
    run = fit(["y3"], data=table(600, seed=5), init_from=source, freeze="loaded")
    for name in ("hist", "kind", "cand", "x"):
        assert run.preprocessor.encoders[name].state() == source.preprocessor.encoders[name].state()
    own = fit(["y3"], data=table(600, seed=5))
    assert own.preprocessor.encoders["hist"].state() != source.preprocessor.encoders["hist"].state()


def test_in_memory_run_and_fine_tuning():
    src = fit(["y1", "y2"])  # no directory
    run = fit(["y1", "y3"], init_from=src)  # freeze: none, everything fine-tuned
    assert run.config.train.init_from == IN_MEMORY and run.metrics["transfer"]["source"] == IN_MEMORY
    assert run.metrics["transfer"]["frozen"] == []
    assert all(p.requires_grad for p in run.model.parameters())
    # the representation started from the source's and moved
    moved = [n for n in shared_names(run.model)
             if not torch.equal(dict(run.model.named_parameters())[n], src.model.state_dict()[n])]
    assert moved
    # two-task towers of the same shapes are loaded too
    assert "heads.out.weight" in run.metrics["transfer"]["loaded"]


def test_generic_model_freeze_loaded():
    model = {"name": "shared_bottom", "bottom_hidden": [16], "tower_hidden": [4]}
    src = fit(["y1", "y2"], model=model)
    run = fit(["y3"], model=model, init_from=src, freeze="loaded")
    rep = run.metrics["transfer"]
    assert set(rep["frozen"]) == set(rep["loaded"]) == {n for n, _ in run.model.named_parameters()
                                                       if n.startswith(("input.", "bottom."))}
    for name in rep["frozen"]:
        assert torch.equal(dict(run.model.named_parameters())[name], src.model.state_dict()[name])


def test_errors(source, tmp_path):
    with pytest.raises(ConfigError, match="train.freeze.*needs train.init_from"):
        fit(["y3"], freeze="shared")
    with pytest.raises(ConfigError, match="train.freeze"):
        fit(["y3"], init_from=source, freeze="everything")
    with pytest.raises(ConfigError, match="train.init_from: cannot load"):
        fit(["y3"], init_from=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="train.init_from: <in-memory run>"):
        fit(["y3"], init_from=IN_MEMORY)
    # a different LSTM width: the recurrent layer cannot be loaded, so it must not be frozen
    with pytest.raises(ConfigError, match="not loaded.*rnn"):
        fit(["y3"], model={**DUPN, "hidden_size": 12}, init_from=source, freeze="shared", out=tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    with pytest.raises(ConfigError, match="no parameter"):
        fit(["y3"], model={"name": "mmoe", "num_experts": 2}, init_from=source)
