"""Random Loss Weighting (Lin et al., 2022): softmax of normal draws over the labelled tasks,
redrawn every step, reproducible from the seed."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tasks
from torch import nn

from polytask.weighting import StepContext, create_weighting

TASKS = make_tasks(4)
NAMES = [t.name for t in TASKS]


def _step(w, masked=()):
    masks = {n: torch.full((3,), n not in masked) for n in NAMES}
    losses = {n: torch.tensor(1.0 + i, requires_grad=True) for i, n in enumerate(NAMES)}
    weights = w.backward(losses, {}, StepContext(model=nn.Module(), masks=masks))
    for n in NAMES:  # the loss's gradient is its weight
        assert float(losses[n].grad) == pytest.approx(float(weights[n]))
    return torch.stack([weights[n] for n in NAMES])


def test_weights_are_positive_and_sum_to_one():
    w = create_weighting("rlw", TASKS)
    for _ in range(5):
        v = _step(w)
        assert (v > 0).all()
        assert float(v.sum()) == pytest.approx(1.0)


def test_masked_task_gets_weight_zero_and_the_rest_sum_to_one():
    w = create_weighting("rlw", TASKS)
    v = _step(w, masked=("t1",))
    assert float(v[1]) == 0.0
    assert (v[[0, 2, 3]] > 0).all()
    assert float(v.sum()) == pytest.approx(1.0)
    assert float(_step(w, masked=tuple(NAMES)).sum()) == 0.0  # nothing labelled: no weight, no NaN


def test_redrawn_every_step_and_reproducible_with_the_seed():
    w1, w2, w3 = (create_weighting("rlw", TASKS, {"seed": s}) for s in (3, 3, 4))
    s1 = [_step(w1) for _ in range(3)]
    s2 = [_step(w2) for _ in range(3)]
    s3 = [_step(w3) for _ in range(3)]
    assert not torch.allclose(s1[0], s1[1]) and not torch.allclose(s1[1], s1[2])
    for x, y in zip(s1, s2):
        torch.testing.assert_close(x, y)
    assert not torch.allclose(s1[0], s3[0])


def test_masking_does_not_shift_the_random_stream():
    w1, w2 = create_weighting("rlw", TASKS), create_weighting("rlw", TASKS)
    _step(w1)
    _step(w2, masked=("t0",))
    full, part = _step(w1), _step(w2, masked=("t2",))
    # same draw: the unmasked tasks keep their relative weights
    torch.testing.assert_close(part[[0, 1, 3]] / part[[0, 1, 3]].sum(), full[[0, 1, 3]] / full[[0, 1, 3]].sum())


def test_mean_weight_is_one_over_k():
    w = create_weighting("rlw", TASKS)
    mean = torch.stack([_step(w) for _ in range(2000)]).mean(0)
    torch.testing.assert_close(mean, torch.full((4,), 0.25), atol=0.02, rtol=0)
