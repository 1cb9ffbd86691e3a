"""Cross-stitch: identity units equal independent columns, the paper's initialisation, the units'
learning-rate multiplier."""

from __future__ import annotations

import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model
from polytask.train.trainer import Trainer


def _independent(model, features):
    h = torch.stack([inp(features) for inp in model.inputs])
    return model.heads(model.columns(h))


def test_identity_units_equal_independent_networks():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("cross_stitch", SPEC, tasks, {"hidden": [8, 6]})
    with torch.no_grad():
        for unit in model.units.values():
            unit.alpha.copy_(torch.eye(3))
    batch = make_batch(SPEC, tasks, 5)
    a, b = model(batch.features), _independent(model, batch.features)
    for t in tasks:
        torch.testing.assert_close(a[t.name], b[t.name])


def test_paper_initialisation_and_mixing():
    tasks = make_tasks(3)
    model = create_model("cross_stitch", SPEC, tasks, {"hidden": [4]})
    alpha = model.units["0"].alpha
    torch.testing.assert_close(alpha.diagonal(), torch.full((3,), 0.9))
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))  # convex combination at initialisation
    h = torch.randn(3, 2, 4)
    torch.testing.assert_close(model.units["0"](h)[0], 0.9 * h[0] + 0.05 * h[1] + 0.05 * h[2])


def test_per_channel_units():
    tasks = make_tasks(2)
    model = create_model("cross_stitch", SPEC, tasks, {"hidden": [4], "per_channel": True})
    unit = model.units["0"]
    assert unit.alpha.shape == (4, 2, 2)
    with torch.no_grad():
        unit.alpha[1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # channel 1 swaps the tasks
    h = torch.randn(2, 3, 4)
    out = unit(h)
    torch.testing.assert_close(out[0, :, 1], h[1, :, 1])
    torch.testing.assert_close(out[0, :, 0], 0.9 * h[0, :, 0] + 0.1 * h[1, :, 0])


def test_units_learn_with_their_own_learning_rate():
    tasks = make_tasks(2)
    model = create_model("cross_stitch", SPEC, tasks, {"stitch_lr_scale": 100.0})
    trainer = Trainer(model, tasks, lr=1e-3, progress=False)
    lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
    assert lrs == [1e-3, 1e-1]
    unit_params = {id(p) for p in model.units.parameters()}
    fast = [g for g in trainer.optimizer.param_groups if g["lr"] == 1e-1][0]
    assert {id(p) for p in fast["params"]} == unit_params


def test_stitch_after_selects_layers():
    model = create_model("cross_stitch", SPEC, make_tasks(2), {"hidden": [8, 6, 4], "stitch_after": [1]})
    assert list(model.units) == ["1"]
    import pytest

    from polytask.errors import ConfigError

    with pytest.raises((ValueError, ConfigError), match="stitch_after"):
        create_model("cross_stitch", SPEC, make_tasks(2), {"hidden": [8], "stitch_after": [3]})
