"""Soft sharing (L2-constrained): the penalty's known values and its pull toward shared weights."""

from __future__ import annotations

import itertools

import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model
from polytask.models.soft_sharing import pairwise_sq_distance


def test_pairwise_distance_matches_the_explicit_sum():
    x = torch.randn(4, 3, 5)
    explicit = sum((x[i] - x[j]).square().sum() for i, j in itertools.combinations(range(4), 2))
    torch.testing.assert_close(pairwise_sq_distance(x), explicit)


def test_penalty_is_zero_for_identical_networks_and_positive_otherwise():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("soft_sharing", SPEC, tasks, {"alpha": 0.5})
    assert float(model.regularization()["soft_sharing_l2"].detach()) > 0
    with torch.no_grad():
        for p in list(model.columns.parameters()) + list(model.heads.towers.parameters()):
            p.copy_(p[:1].expand_as(p))
        for inp in model.inputs[1:]:
            inp.load_state_dict(model.inputs[0].state_dict())
    assert abs(float(model.regularization()["soft_sharing_l2"].detach())) < 1e-9


def test_penalty_gradient_pulls_the_task_networks_together():
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("soft_sharing", SPEC, tasks, {"alpha": 1.0})
    before = float(model.regularization()["soft_sharing_l2"].detach())
    model.regularization()["soft_sharing_l2"].backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.01 * p.grad
    assert float(model.regularization()["soft_sharing_l2"].detach()) < before


def test_penalty_is_logged_as_its_own_term(tmp_path):
    import polytask

    run = polytask.fit(dataset="synthetic_mmoe", dataset_params={"n_train": 300, "n_validation": 100, "n_test": 100},
                       model={"name": "soft_sharing", "alpha": 0.01, "hidden": [8]}, epochs=1, progress=False)
    assert run.history[0]["regularization"]["soft_sharing_l2"] > 0


def test_alpha_zero_means_no_penalty():
    model = create_model("soft_sharing", SPEC, make_tasks(2), {"alpha": 0.0})
    assert model.regularization() == {}
    model(make_batch(SPEC, make_tasks(2), 3).features)
