"""DRN / MRN: the prior's penalty and the covariance update against explicit Kronecker algebra;
the learned task covariance reflects related tasks."""

from __future__ import annotations

import torch
from conftest import SPEC, make_tasks

from polytask.models import create_model
from polytask.models.drn import covariance_update, tensor_normal_penalty


def _spd(n, g):
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T + n * torch.eye(n, dtype=torch.float64)


def test_penalty_and_updates_match_the_kronecker_closed_form():
    g = torch.Generator().manual_seed(0)
    t, d1, d2 = 3, 4, 2
    w = torch.randn(t, d1, d2, generator=g, dtype=torch.float64)
    p1, p2, p3 = _spd(d1, g), _spd(d2, g), _spd(t, g)
    # vec ordering: i (D1) fastest, then j (D2), then t
    v = w.permute(0, 2, 1).reshape(-1)
    explicit = v @ torch.kron(p3, torch.kron(p2, p1)) @ v
    torch.testing.assert_close(tensor_normal_penalty(w, p1, p2, p3), explicit)
    eps = 1e-3
    w3 = w.permute(0, 2, 1).reshape(t, d2 * d1)  # mode-3 unfolding, same column order
    sigma3 = w3 @ torch.kron(p2, p1) @ w3.T / (d1 * d2) + eps * torch.eye(t, dtype=torch.float64)
    torch.testing.assert_close(covariance_update(w, p1, p2, p3, 3, eps), sigma3)
    w1 = w.permute(1, 0, 2).reshape(d1, t * d2)  # mode-1 unfolding: columns (t, j) with j fastest
    sigma1 = w1 @ torch.kron(p3, p2) @ w1.T / (d2 * t) + eps * torch.eye(d1, dtype=torch.float64)
    torch.testing.assert_close(covariance_update(w, p1, p2, p3, 1, eps), sigma1)
    w2 = w.permute(2, 0, 1).reshape(d2, t * d1)  # mode-2 unfolding: columns (t, i) with i fastest
    sigma2 = w2 @ torch.kron(p3, p1) @ w2.T / (d1 * t) + eps * torch.eye(d2, dtype=torch.float64)
    torch.testing.assert_close(covariance_update(w, p1, p2, p3, 2, eps), sigma2)


def test_task_covariance_sees_identical_task_layers_as_correlated():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("drn", SPEC, tasks, {"task_hidden": [6], "cov_update_every": 1})
    with torch.no_grad():
        w = model.columns.layers[0].linear.weight
        w[1] = w[0]  # tasks 0 and 1 have identical layers, task 2 independent
    model.train()
    model.regularization()  # one step -> one closed-form update
    corr = model.diagnostics()["task_correlation"]
    assert corr[0][1] > 0.99
    assert abs(corr[0][2]) < 0.5


def test_updates_follow_the_schedule_and_penalty_is_reported():
    tasks = make_tasks(2)
    model = create_model("drn", SPEC, tasks, {"cov_update_every": 3})
    model.train()
    before = model.prec3_0.clone()
    model.regularization()
    model.regularization()
    torch.testing.assert_close(model.prec3_0, before)  # not yet
    reg = model.regularization()
    assert not torch.equal(model.prec3_0, before)  # third step updated it
    assert float(reg["drn_prior"].detach()) > 0
    model.eval()
    with torch.no_grad():
        model.regularization()  # evaluation does not advance the schedule
    assert int(model.steps) == 3


def test_covariance_scale_is_fixed_so_the_penalty_shrinks_with_the_weights():
    """tr(Sigma3) = T after an update, so the prior behaves like a (task-correlated) L2 penalty:
    doubling the weights quadruples it. Without the fixed scale it would not change at all."""
    torch.manual_seed(0)
    tasks = make_tasks(3)
    penalties = []
    for factor in (1.0, 2.0):
        torch.manual_seed(0)
        model = create_model("drn", SPEC, tasks, {"task_hidden": [6], "cov_update_every": 1})
        with torch.no_grad():
            model.columns.layers[0].linear.weight.mul_(factor)
        model.train()
        penalties.append(float(model.regularization()["drn_prior"].detach()))
        torch.testing.assert_close(model.task_covariance().diagonal().sum(), torch.tensor(3.0))
    assert abs(penalties[1] / penalties[0] - 4.0) < 1e-3


def test_drn_on_a_frozen_pretrained_resnet_trunk_trains_its_task_layers_under_the_prior(tmp_path):
    """``drn`` over a ``resnet`` encoder whose trunk comes from a ``weights:`` file, with
    ``train.freeze: ["input.trunk.*"]``: the trunk (weights and BatchNorm statistics) comes out of
    training bit-identical to the file, the task layers move, the ``drn_prior`` penalty is in the
    loss, and its gradient reaches the task-layer weights while no gradient reaches the trunk."""
    import numpy as np
    import pyarrow as pa

    from polytask import fit
    from polytask.encoders.resnet import ResNetTrunk

    small = {"stem": "small", "blocks": [1, 1], "widths": [4, 8]}
    g = torch.Generator().manual_seed(3)
    weights = {k: (torch.randint(1, 9, (), generator=g) if k.endswith("num_batches_tracked")
                   else torch.rand(v.shape, generator=g) + 0.5 if k.endswith("running_var")
                   else torch.randn(v.shape, generator=g))
               for k, v in ResNetTrunk(1, small["blocks"], small["widths"], stem="small").state_dict().items()}
    torch.save(weights, tmp_path / "trunk.pth")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (96, 1, 8, 8)).astype(np.float32)
    table = pa.table({"image": [r.reshape(-1).tolist() for r in x],
                      "a": (x[:, 0, :, :4].mean((1, 2)) > 0).astype(np.float32), "b": x[:, 0, :4].mean((1, 2))})
    snapshots = []
    run = fit(train=table.slice(0, 64), validation=table.slice(64), tasks=[{"name": "a", "kind": "binary"},
                                                                             {"name": "b", "kind": "regression"}],
              features={"dense": [{"name": "image", "shape": [1, 8, 8], "scale": "none"}]},
              model={"name": "drn", "encoder": "resnet", "encoder_params": {**small, "weights": str(tmp_path / "trunk.pth")},
                     "shared_hidden": [6], "task_hidden": [4], "trade_off": 0.1, "cov_update_every": 2},
              freeze=["input.trunk.*"], epochs=3, batch_size=16, patience=None, progress=False,
              callbacks=[lambda tr, record: snapshots.append({k: v.clone() for k, v in tr.model.state_dict().items()})])
    model = run.model
    for state in [*snapshots, model.state_dict()]:
        for k, v in weights.items():
            assert torch.equal(state[f"input.trunk.{k}"], v), k
    columns = [k for k in snapshots[0] if k.startswith("columns.") and k.endswith("weight")]
    assert columns and all(not torch.equal(snapshots[0][k], snapshots[-1][k]) for k in columns)
    assert all(record["regularization"]["drn_prior"] > 0 for record in run.history)
    assert run.metrics["transfer"]["frozen"] == [n for n, _ in model.named_parameters() if n.startswith("input.trunk.")]

    model.train()
    model.zero_grad(set_to_none=True)
    features = {"dense:image": torch.from_numpy(x[:16])}
    out = model(features)
    prior = model.regularization()["drn_prior"]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(prior, [p for _, p in trainable], allow_unused=True, retain_graph=True)
    reached = {n for (n, _), gr in zip(trainable, grads) if gr is not None and gr.abs().sum() > 0}
    assert reached == {n for n, _ in trainable if n.startswith("columns.") and n.endswith("weight")}
    (out["b"].square().mean() + prior).backward()
    for n, p in model.named_parameters():
        if n.startswith("input.trunk."):
            assert not p.requires_grad and p.grad is None, n
        elif n.startswith("columns.") and n.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, n
