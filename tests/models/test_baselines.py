"""Single-task and Shared-Bottom properties."""

from __future__ import annotations

import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model


def test_single_task_networks_are_independent():
    """The loss of one task sends no gradient into another task's parameters."""
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("single_task", SPEC, tasks)
    assert model.shared_parameters() == []
    batch = make_batch(SPEC, tasks, 10)
    out = model(batch.features)
    tasks[1].loss(out["t1"], batch.labels["t1"], batch.masks["t1"]).backward()
    emb = [m.categorical.weight.grad for m in model.inputs]
    assert emb[0] is None or emb[0].abs().sum() == 0
    assert emb[1].abs().sum() > 0
    w = model.body.layers[0].weight.grad
    assert w[0].abs().sum() == 0 and w[2].abs().sum() == 0 and w[1].abs().sum() > 0


def test_shared_bottom_parameter_count_matches_the_paper_baseline():
    """MMoE paper Sec. 5.1: with d=100, 8 experts x 16 and towers of 8 have 13,056 weights in
    experts+towers; the matched Shared-Bottom has a 113-unit bottom (100*113 + 113*8*2 = 13,108)."""
    from polytask.data.schema import InputSpec

    spec = InputSpec(numeric_dim=100)
    tasks = make_tasks(2)[:1] + [make_tasks(1)[0].__class__("t1", kind="binary")]
    mmoe = create_model("mmoe", spec, tasks)
    sb = create_model("shared_bottom", spec, tasks)
    expert_w = mmoe.experts.layers[0].weight.numel()
    tower_w = mmoe.heads.towers.layers[0].weight.numel()
    assert expert_w + tower_w == 13_056
    assert sb.bottom[0].weight.numel() + sb.heads.towers.layers[0].weight.numel() == 100 * 113 + 113 * 8 * 2
