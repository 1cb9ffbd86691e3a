"""FAFS: widening keeps the function, groups identical tasks together and unrelated ones apart
on trained synthetic data, and the widened tree survives saving and loading."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import SPEC, make_batch, make_tasks

import polytask
from polytask.models import create_model
from polytask.tasks import Task


def test_widening_copies_weights_so_outputs_do_not_change():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("fafs", SPEC, tasks, {"hidden": [8, 6]}).eval()
    batch = make_batch(SPEC, tasks, 16)
    before = model(batch.features)
    affinity = torch.tensor([[1.0, 0.95, 0.5], [0.95, 1.0, 0.5], [0.5, 0.5, 1.0]])
    assert model.widen_layer(1, affinity)
    assert model.branch_tree() == [[["t0", "t1", "t2"]], [["t0", "t1"], ["t2"]]]
    assert model.widen_layer(0, affinity)  # junction above layer 0: branches {t0,t1} and {t2}
    assert model.branch_tree() == [[["t0", "t1"], ["t2"]], [["t0", "t1"], ["t2"]]]
    after = model(batch.features)
    for t in tasks:
        torch.testing.assert_close(after[t.name], before[t.name])
    # the copies are separate parameters now, and the input embedding is still shared
    assert model.layers[1][0][0].weight is not model.layers[1][1][0].weight
    assert model.shared_modules() == [model.input]


def test_shared_representation_is_the_last_layer_all_tasks_share_after_widening():
    """Representation-mode weightings (MGDA-UB) need share() on a tensor every task reads, also
    once the top layers have branched: the output of the deepest still-shared layer, then the input."""
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("fafs", SPEC, tasks, {"hidden": [8, 6]})
    batch = make_batch(SPEC, tasks, 16)
    affinity = torch.tensor([[1.0, 0.95, 0.5], [0.95, 1.0, 0.5], [0.5, 0.5, 1.0]])
    model.capture_representation = True
    for layer, width in ((1, 8), (0, model.input.out_dim)):
        model.widen_layer(layer, affinity)
        out = model(batch.features)
        rep = model.representation
        assert rep is not None and rep.shape[-1] == width
        for t in tasks:
            grad = torch.autograd.grad(out[t.name].sum(), rep, retain_graph=True)[0]
            assert grad.abs().sum() > 0, (layer, t.name)
    # and a representation-mode weighting trains the branched model
    from polytask.weighting import StepContext, create_weighting

    weighting = create_weighting("mgda", tasks, {"mode": "representation"})
    weighting.setup(model)
    out = model(batch.features)
    losses = {t.name: t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks}
    weighting.backward(losses, {}, StepContext(model=model, masks=batch.masks))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.input.parameters())


def test_given_tree_is_validated_and_built():
    tasks = make_tasks(3)
    model = create_model("fafs", SPEC, tasks, {"hidden": [8, 6], "branches": [[[0, 1, 2]], [[2], [0, 1]]]})
    assert [len(m) for m in model.layers] == [1, 2]
    assert model.active is None  # a given widened tree is final
    with pytest.raises(ValueError, match="exactly once"):
        create_model("fafs", SPEC, tasks, {"hidden": [8, 6], "branches": [[[0, 1]], [[0, 1], [2]]]})
    with pytest.raises(ValueError, match="inside one branch"):
        create_model("fafs", SPEC, tasks, {"hidden": [8, 6], "branches": [[[0], [1, 2]], [[0, 1], [2]]]})


def _three_tasks(n: int, seed: int = 0) -> pa.Table:
    """a and b are the same task (same logit, independent label noise); c depends on other inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    z_ab = 3 * x[:, 0] + 2 * x[:, 1]
    z_c = 3 * x[:, 3] - 2 * x[:, 4]
    p_ab, p_c = 1 / (1 + np.exp(-z_ab)), 1 / (1 + np.exp(-z_c))
    cols = {f"x{i}": x[:, i] for i in range(6)}
    cols |= {"a": (rng.random(n) < p_ab).astype(np.int8), "b": (rng.random(n) < p_ab).astype(np.int8),
             "c": (rng.random(n) < p_c).astype(np.int8)}
    return pa.table(cols)


def test_training_groups_identical_tasks_and_separates_unrelated_ones(tmp_path):
    t = _three_tasks(4000)
    out = tmp_path / "run"
    run = polytask.fit(
        train=t.slice(0, 3000), validation=t.slice(3000, 1000), tasks=["a", "b", "c"],
        model={"name": "fafs", "hidden": [16, 16], "warmup_epochs": 3, "widen_every": 2, "lam": 5.0},
        epochs=9, batch_size=128, optimizer={"name": "adam", "lr": 0.01}, progress=False, seed=0, out=out,
        patience=None,
    )
    model = run.model
    # top layer first: a and b share a branch, c gets its own; the bottom layer then splits the same way
    assert model.branch_tree() == [[["a", "b"], ["c"]], [["a", "b"], ["c"]]]
    structures = [r["structure"] for r in run.history if "structure" in r]
    assert [s["branches"] for s in structures] == [[[[0, 1, 2]], [[0, 1], [2]]], [[[0, 1], [2]], [[0, 1], [2]]]]
    assert run.history[-1]["diagnostics"]["branches"] == model.branch_tree()
    for task in "abc":
        assert run.metrics["validation"][task]["auc"] > 0.85
    # the saved checkpoint rebuilds the widened network
    loaded = polytask.load_run(out)
    assert loaded.model.branch_tree() == model.branch_tree()
    frame = t.slice(3000, 50)
    np.testing.assert_allclose(loaded.predict(frame)["c"], run.predict(frame)["c"], rtol=1e-5)


def test_new_branches_are_trained_after_widening():
    """The trainer rebuilds its optimiser: the copied branches move apart from each other."""
    t = _three_tasks(2000)
    run = polytask.fit(
        train=t.slice(0, 1500), validation=t.slice(1500, 500),
        tasks=["a", "c"], model={"name": "fafs", "hidden": [8], "warmup_epochs": 1, "lam": 100.0},
        epochs=3, batch_size=128, optimizer={"name": "adam", "lr": 0.01}, progress=False, patience=None,
    )
    layer = run.model.layers[0]
    assert len(layer) == 2
    assert not torch.allclose(layer[0][0].weight, layer[1][0].weight)


def test_single_task_and_no_widening():
    model = create_model("fafs", SPEC, [Task("y")], {"hidden": [4]})
    assert not model.adapt(5, lambda: torch.zeros(10, 1))  # nothing to group
    frozen = create_model("fafs", SPEC, make_tasks(2), {"hidden": [4], "widen": False})
    assert not frozen.adapt(10, lambda: torch.zeros(10, 2))
