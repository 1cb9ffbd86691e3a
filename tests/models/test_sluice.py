"""Sluice networks: the orthogonality penalty's known values, identity units equal independent
columns, the reference initialisation."""

from __future__ import annotations

import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model
from polytask.models.sluice import subspace_orthogonality


def test_orthogonality_penalty_is_zero_for_orthogonal_subspaces():
    q, _ = torch.linalg.qr(torch.randn(6, 6))  # orthonormal columns
    w = q[:, :4].unsqueeze(0)  # [1, in=6, C=4]: subspaces = columns {0,1} and {2,3}
    assert float(subspace_orthogonality(w, 2)) < 1e-10
    g = torch.randn(1, 6, 4)
    a, b = g[0, :, :2], g[0, :, 2:]
    torch.testing.assert_close(subspace_orthogonality(g, 2), (a.T @ b).square().sum())


def test_identity_alpha_and_last_layer_beta_equal_independent_columns():
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("sluice", SPEC, tasks, {"hidden": [8, 8], "subspaces": 2})
    with torch.no_grad():
        model.alpha.copy_(torch.eye(4).expand(2, -1, -1))
        model.beta.copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    batch = make_batch(SPEC, tasks, 6)
    out = model(batch.features)
    h = torch.stack([inp(batch.features) for inp in model.inputs])
    expected = model.heads(model.columns(h))
    for t in tasks:
        torch.testing.assert_close(out[t.name], expected[t.name])


def test_reference_initialisation_and_penalty_switch():
    tasks = make_tasks(3)
    model = create_model("sluice", SPEC, tasks, {"hidden": [4, 4, 4], "subspaces": 2})
    torch.testing.assert_close(model.alpha[0], torch.full((6, 6), 1 / 6))
    torch.testing.assert_close(model.beta[0], torch.tensor([0.05, 0.05, 0.9]))
    assert model.regularization() == {}
    on = create_model("sluice", SPEC, tasks, {"hidden": [4, 4], "orthogonality": 0.1})
    assert float(on.regularization()["sluice_orthogonality"].detach()) > 0


def test_alpha_mixes_subspaces_across_tasks():
    """With alpha sending task 1's first subspace into task 0's first subspace, task 0's layer
    output there equals task 1's."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("sluice", SPEC, tasks, {"hidden": [4], "subspaces": 2})
    swap = torch.eye(4)
    swap[0] = torch.tensor([0.0, 0.0, 1.0, 0.0])  # row i = output subspace i; subspace order: t0s0, t0s1, t1s0, t1s1
    with torch.no_grad():
        model.alpha.copy_(swap.unsqueeze(0))
        model.beta.fill_(1.0)
    batch = make_batch(SPEC, tasks, 5)
    h = model.columns.layers[0](torch.stack([inp(batch.features) for inp in model.inputs]))
    captured = {}
    model.heads.register_forward_pre_hook(lambda mod, args: captured.setdefault("x", args[0]))
    model(batch.features)
    torch.testing.assert_close(captured["x"][0, :, :2], h[1, :, :2])
    torch.testing.assert_close(captured["x"][0, :, 2:], h[0, :, 2:])
