"""MMoE / OMoE properties beyond the contract (Ma et al., KDD 2018)."""

from __future__ import annotations

import torch
from conftest import SPEC, make_batch, make_tasks

from polytask.models import create_model


def test_gates_are_distributions_and_exposed_per_task():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("mmoe", SPEC, tasks, {"num_experts": 5})
    batch = make_batch(SPEC, tasks, 11)
    model(batch.features)
    gates = model.gates.last  # [T, B, E]
    assert gates.shape == (3, 11, 5)
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 11))
    diag = model.diagnostics()["gates"]
    assert set(diag) == {t.name for t in tasks}
    for t_i, t in enumerate(tasks):
        torch.testing.assert_close(torch.tensor(diag[t.name]), gates[t_i].mean(0))
    entropy = model.diagnostics()["gate_entropy"]
    for t_i, t in enumerate(tasks):  # per row, then averaged: not the entropy of the mean gate
        rows = [-(g * g.log()).sum() for g in gates[t_i]]
        assert abs(entropy[t.name] - float(sum(rows) / len(rows))) < 1e-5


def test_gate_entropy_known_answers():
    from polytask.nn.experts import gate_entropy

    uniform = torch.full((1, 3, 4), 0.25)
    one_hot = torch.eye(4)[:3].unsqueeze(0)  # every row picks one expert, the mean gate is spread
    torch.testing.assert_close(gate_entropy(uniform), torch.tensor([torch.log(torch.tensor(4.0)).item()]))
    torch.testing.assert_close(gate_entropy(one_hot), torch.zeros(1))


def test_mmoe_output_matches_the_paper_equation():
    """y_k = h_k(sum_i softmax(W_gk x)_i f_i(x)), computed by hand from the model's weights."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("mmoe", SPEC, tasks, {"num_experts": 3, "expert_hidden": [4], "tower_hidden": [2]})
    batch = make_batch(SPEC, tasks, 6)
    out = model(batch.features)
    x = model.input(batch.features)
    lin = model.experts.layers[0]
    experts = [torch.relu(x @ lin.weight[i] + lin.bias[i]) for i in range(3)]
    wg = model.gates.proj.weight.view(2, 3, -1)
    for k, t in enumerate(tasks):
        g = torch.softmax(x @ wg[k].T, dim=-1)
        f = sum(g[:, i : i + 1] * experts[i] for i in range(3))
        tower = model.heads.towers.layers[0]
        h = torch.relu(f @ tower.weight[k] + tower.bias[k])
        y = h @ model.heads.out.weight[k] + model.heads.out.bias[k]
        expected = y[:, 0] if t.output_dim == 1 else y[:, : t.output_dim]
        torch.testing.assert_close(out[t.name], expected, rtol=1e-5, atol=1e-5)


def test_omoe_uses_one_gate_for_all_tasks():
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("omoe", SPEC, tasks, {"num_experts": 4})
    model(make_batch(SPEC, tasks, 9).features)
    assert model.gates.last.shape[0] == 1
    assert list(model.diagnostics()["gates"]) == ["shared"]
    assert any(p is model.gates.proj.weight for p in model.shared_parameters())


def test_mmoe_with_one_expert_is_a_shared_bottom():
    """With a single expert every gate outputs 1, so MMoE reduces to hard sharing."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    mmoe = create_model("mmoe", SPEC, tasks, {"num_experts": 1, "expert_hidden": [6], "tower_hidden": [3]})
    sb = create_model("shared_bottom", SPEC, tasks, {"bottom_hidden": [6], "tower_hidden": [3]})
    sb.input.load_state_dict(mmoe.input.state_dict())
    sb.bottom[0].weight.data = mmoe.experts.layers[0].weight[0].T.clone()
    sb.bottom[0].bias.data = mmoe.experts.layers[0].bias[0, 0].clone()
    sb.heads.load_state_dict(mmoe.heads.state_dict())
    batch = make_batch(SPEC, tasks, 8)
    a, b = mmoe(batch.features), sb(batch.features)
    for t in tasks:
        torch.testing.assert_close(a[t.name], b[t.name])


def test_experts_are_one_batched_op():
    """No Python loop over experts: a single parameter tensor holds all experts of a layer."""
    tasks = make_tasks(2)
    model = create_model("mmoe", SPEC, tasks, {"num_experts": 8, "expert_hidden": [16, 4]})
    weights = [p for n, p in model.named_parameters() if n.startswith("experts") and n.endswith("weight")]
    assert [tuple(w.shape[:1]) for w in weights] == [(8,), (8,)]
