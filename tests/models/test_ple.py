"""CGC / PLE properties beyond the contract (Tang et al., RecSys 2020)."""

from __future__ import annotations

import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model


def test_ple_with_one_level_equals_cgc():
    tasks = make_tasks(3)
    params = {"specific_experts": 2, "shared_experts": 3, "expert_hidden": [6], "tower_hidden": [4]}
    torch.manual_seed(0)
    cgc = create_model("cgc", SPEC, tasks, params)
    torch.manual_seed(0)
    ple = create_model("ple", SPEC, tasks, {**params, "num_levels": 1})
    assert cgc.state_dict().keys() == ple.state_dict().keys()
    batch = make_batch(SPEC, tasks, 9)
    a, b = cgc(batch.features), ple(batch.features)
    for t in tasks:
        torch.testing.assert_close(a[t.name], b[t.name])
    assert ple.levels[0].shared_gate is None  # the last level has no shared gate


def test_cgc_matches_the_paper_equation():
    """g^k(x) = w^k(x)^T S^k(x): task k mixes only its own and the shared experts."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("cgc", SPEC, tasks, {"specific_experts": 2, "shared_experts": 1, "expert_hidden": [5],
                                              "tower_hidden": [3]})
    batch = make_batch(SPEC, tasks, 7)
    out = model(batch.features)
    x = model.input(batch.features)
    layer = model.levels[0]
    lin = layer.experts.layers[0]
    experts = [torch.relu(x @ lin.weight[i] + lin.bias[i]) for i in range(5)]  # t0: 0,1  t1: 2,3  shared: 4
    for k, t in enumerate(tasks):
        own = [2 * k, 2 * k + 1, 4]
        w = torch.softmax(x @ layer.task_gates.weight[k], dim=-1)  # [B, 3]
        g = sum(w[:, i : i + 1] * experts[e] for i, e in enumerate(own))
        tower = model.heads.towers.layers[0]
        h = torch.relu(g @ tower.weight[k] + tower.bias[k])
        y = h @ model.heads.out.weight[k] + model.heads.out.bias[k]
        expected = y[:, 0] if t.output_dim == 1 else y[:, : t.output_dim]
        torch.testing.assert_close(out[t.name], expected, rtol=1e-5, atol=1e-5)


def test_a_task_never_reaches_another_tasks_specific_experts():
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("ple", SPEC, tasks, {"num_levels": 2, "specific_experts": 1, "shared_experts": 1})
    batch = make_batch(SPEC, tasks, 8)
    out = model(batch.features)
    tasks[0].loss(out["t0"], batch.labels["t0"], batch.masks["t0"]).backward()
    last = model.levels[-1].experts.layers[0].weight.grad  # experts: [t0, t1, shared]
    assert last[0].abs().sum() > 0 and last[2].abs().sum() > 0
    assert last[1].abs().sum() == 0
    # at level 0, task 1's expert feeds the shared gate, so task 0 does reach it through level 1's shared expert
    first = model.levels[0].experts.layers[0].weight.grad
    assert first[1].abs().sum() > 0


def test_ple_gate_diagnostics_per_level():
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("ple", SPEC, tasks, {"num_levels": 2, "specific_experts": 2, "shared_experts": 1})
    model(make_batch(SPEC, tasks, 5).features)
    gates = model.diagnostics()["gates"]
    assert set(gates) == {"level0", "level1"}
    for level in gates.values():
        for weights in level.values():
            assert len(weights) == 3 and abs(sum(weights) - 1) < 1e-5
    entropy = model.diagnostics()["gate_entropy"]
    assert set(entropy) == {"level0", "level1"}
    for j, level in enumerate(model.levels):
        w = level.last_gates  # [T, B, 3]
        expected = -(w * w.log()).sum(-1).mean(-1)
        torch.testing.assert_close(torch.tensor([entropy[f"level{j}"][t.name] for t in tasks]), expected)
