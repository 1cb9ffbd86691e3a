"""Shared blocks against independent reference computations: batched linear maps and MLPs vs loops
of nn.Linear, gates, the fused embedding (forward and its custom backward) vs the built-in
embedding, TabularInput layout and pooling, and task-head shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polytask.data.schema import InputSpec
from polytask.nn import MLP, FusedEmbedding, Gates, ParallelLinear, ParallelMLP, TabularInput, TaskHeads
from polytask.tasks import Task


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def linears_from(pl: ParallelLinear) -> list[nn.Linear]:
    """Independent nn.Linear modules holding the same weights as the members of ``pl``."""
    out = []
    for i in range(pl.n):
        lin = nn.Linear(pl.in_dim, pl.out_dim, bias=pl.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(pl.weight[i].T)
            if pl.bias is not None:
                lin.bias.copy_(pl.bias[i, 0])
        out.append(lin)
    return out


# -- ParallelLinear -----------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_parallel_linear_shared_input_equals_loop(bias):
    pl = ParallelLinear(3, 5, 4, bias=bias)
    x = torch.randn(7, 5)
    y = pl(x)
    assert y.shape == (3, 7, 4)
    for i, lin in enumerate(linears_from(pl)):
        torch.testing.assert_close(y[i], lin(x))


@pytest.mark.parametrize("bias", [True, False])
def test_parallel_linear_per_member_input_equals_loop(bias):
    pl = ParallelLinear(4, 3, 2, bias=bias)
    x = torch.randn(4, 6, 3)
    y = pl(x)
    assert y.shape == (4, 6, 2)
    for i, lin in enumerate(linears_from(pl)):
        torch.testing.assert_close(y[i], lin(x[i]))


def test_parallel_linear_gradients_equal_loop():
    pl = ParallelLinear(3, 4, 2)
    lins = linears_from(pl)
    x = torch.randn(4, 5, 4)
    target = torch.randn(3, 5, 2)
    (pl(x[:3]) - target).square().sum().backward()
    sum((lin(x[i]) - target[i]).square().sum() for i, lin in enumerate(lins)).backward()
    for i, lin in enumerate(lins):
        torch.testing.assert_close(pl.weight.grad[i], lin.weight.grad.T)
        torch.testing.assert_close(pl.bias.grad[i, 0], lin.bias.grad)


def test_parallel_linear_members_are_independent_and_init_like_linear():
    pl = ParallelLinear(2, 16, 8)
    assert not torch.equal(pl.weight[0], pl.weight[1])
    bound = 1 / 16 ** 0.5
    assert pl.weight.abs().max() <= bound and pl.bias.abs().max() <= bound


# -- ParallelMLP --------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("per_member", [False, True])
def test_parallel_mlp_equals_loop_of_mlps(act, per_member):
    n, d = 3, 5
    pm = ParallelMLP(n, d, [6, 4], act=act)
    assert pm.out_dim == 4
    x = torch.randn(n, 8, d) if per_member else torch.randn(8, d)
    y = pm(x)
    assert y.shape == (n, 8, 4)
    layers = [m for m in pm.layers if isinstance(m, ParallelLinear)]
    for i in range(n):
        ref = MLP(d, [6, 4], act=act)
        refs = [m for m in ref if isinstance(m, nn.Linear)]
        for pl, lin in zip(layers, refs):
            with torch.no_grad():
                lin.weight.copy_(pl.weight[i].T)
                lin.bias.copy_(pl.bias[i, 0])
        torch.testing.assert_close(y[i], ref(x[i] if per_member else x))


def test_parallel_mlp_without_hidden_layers_is_identity():
    pm = ParallelMLP(3, 5, [])
    x = torch.randn(4, 5)
    y = pm(x)
    assert y.shape == (3, 4, 5) and all(torch.equal(y[i], x) for i in range(3))
    x3 = torch.randn(3, 4, 5)
    assert torch.equal(pm(x3), x3)


def test_mlp_identity_and_unknown_activation():
    m = MLP(4, [])
    x = torch.randn(2, 4)
    assert m.out_dim == 4 and torch.equal(m(x), x)
    with pytest.raises(ValueError, match="swish2"):
        MLP(4, [3], act="swish2")


# -- Gates --------------------------------------------------------------------------------------
def test_gates_are_softmax_of_linear_map_and_rows_sum_to_one():
    g = Gates(6, num_experts=4, num_gates=3)
    x = torch.randn(10, 6)
    w = g(x)
    assert w.shape == (3, 10, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 10))
    assert (w >= 0).all()
    # gate k of row b is softmax(W_k x_b), W_k the k-th block of rows of the projection
    W = g.proj.weight.view(3, 4, 6)
    for k in range(3):
        torch.testing.assert_close(w[k], torch.softmax(x @ W[k].T, dim=-1))
    assert g.last is not None and torch.equal(g.last, w.detach()) and not g.last.requires_grad


def test_gates_mix_equals_explicit_weighted_sum():
    weights = torch.softmax(torch.randn(2, 5, 3), -1)  # [G, B, E]
    experts = torch.randn(3, 5, 7)  # [E, B, H]
    mixed = Gates.mix(weights, experts)
    assert mixed.shape == (2, 5, 7)
    for g in range(2):
        for b in range(5):
            expected = sum(weights[g, b, e] * experts[e, b] for e in range(3))
            torch.testing.assert_close(mixed[g, b], expected)


# -- FusedEmbedding -----------------------------------------------------------------------------
CARDS = [3, 5, 2]


def _ids(batch: int) -> torch.Tensor:
    return torch.stack([torch.randint(0, c, (batch,)) for c in CARDS], 1)


def test_fused_embedding_forward_equals_per_field_embedding():
    emb = FusedEmbedding(CARDS, 4)
    assert emb.weight.shape == (sum(CARDS), 4) and emb.out_dim == 12
    ids = _ids(9)
    out = emb(ids)
    assert out.shape == (9, 12)
    starts = [0, 3, 8]
    for f, (s, c) in enumerate(zip(starts, CARDS)):
        table = emb.weight[s : s + c]
        torch.testing.assert_close(out[:, f * 4 : (f + 1) * 4], F.embedding(ids[:, f], table))


def test_fused_embedding_gradient_equals_builtin_with_repeated_ids():
    emb = FusedEmbedding(CARDS, 4)
    ref_weight = emb.weight.detach().clone().requires_grad_(True)
    ids = _ids(64)  # 64 rows over tiny vocabularies: every id repeats many times
    ids[:5] = torch.tensor([1, 4, 0])  # and some rows are identical
    upstream = torch.randn(64, 12)
    (emb(ids) * upstream).sum().backward()
    ref = F.embedding(ids + torch.tensor([0, 3, 8]), ref_weight).reshape(64, 12)
    (ref * upstream).sum().backward()
    torch.testing.assert_close(emb.weight.grad, ref_weight.grad)
    # ids that never occur get exactly zero gradient
    used = torch.zeros(sum(CARDS), dtype=torch.bool)
    used[(ids + torch.tensor([0, 3, 8])).reshape(-1)] = True
    assert (emb.weight.grad[~used] == 0).all()


def test_fused_embedding_gradcheck():
    """The custom index_add_ backward against finite differences (double precision)."""
    from polytask.nn.embedding import _GatherRows

    index = torch.tensor([1, 4, 1, 2, 1, 4])  # repeated rows
    weight = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: _GatherRows.apply(w, index), (weight,))


# -- TabularInput -------------------------------------------------------------------------------
def test_tabular_input_out_dim_and_concatenation_order():
    spec = InputSpec(numeric_dim=3, cardinalities=[4, 6], sequences={"hist": 10, "tags": 5}, dense={"img": [2, 3]})
    ti = TabularInput(spec, embedding_dim=4)
    assert ti.out_dim == 3 + 2 * 4 + 2 * 4 + 6
    b = 5
    feats = {
        "numeric": torch.randn(b, 3),
        "categorical": torch.stack([torch.randint(0, 4, (b,)), torch.randint(0, 6, (b,))], 1),
        "seq:hist": torch.randint(1, 10, (b, 7)),
        "seq:tags": torch.randint(1, 5, (b, 2)),
        "dense:img": torch.randn(b, 2, 3),
    }
    out = ti(feats)
    assert out.shape == (b, ti.out_dim)
    torch.testing.assert_close(out[:, :3], feats["numeric"])
    torch.testing.assert_close(out[:, 3:11], ti.categorical(feats["categorical"]))
    torch.testing.assert_close(out[:, 11:15], ti.sequences["hist"](feats["seq:hist"]).mean(1))
    torch.testing.assert_close(out[:, 15:19], ti.sequences["tags"](feats["seq:tags"]).mean(1))
    torch.testing.assert_close(out[:, 19:], feats["dense:img"].reshape(b, 6))


def test_sequence_mean_pooling_ignores_padding():
    spec = InputSpec(sequences={"hist": 6})
    ti = TabularInput(spec, embedding_dim=3)
    with torch.no_grad():  # make the padding row non-zero: pooling must still ignore it
        ti.sequences["hist"].weight[0] = 100.0
    ids = torch.tensor([[2, 3, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0], [1, 1, 4, 4]])
    out = ti({"seq:hist": ids})
    w = ti.sequences["hist"].weight
    torch.testing.assert_close(out[0], (w[2] + w[3]) / 2)
    torch.testing.assert_close(out[1], w[5])
    torch.testing.assert_close(out[2], torch.zeros(3))  # an empty history pools to zero, not NaN
    torch.testing.assert_close(out[3], (2 * w[1] + 2 * w[4]) / 4)


def test_sequence_names_that_are_not_module_names():
    """Feature names with '.', or named like a ModuleDict method, get a hex key; others keep theirs."""
    from polytask.nn.embedding import module_key

    names = ["items", "user.clicks", "hist", "keys", "feature_x"]
    ti = TabularInput(InputSpec(sequences={n: 7 for n in names}), embedding_dim=2)
    assert module_key("hist") == "hist" and module_key("items") == "feature_" + b"items".hex()
    assert len({module_key(n) for n in names}) == len(names)
    ids = {f"seq:{n}": torch.tensor([[i + 1, 0], [0, 0]]) for i, n in enumerate(names)}
    out = ti(ids)
    for i, n in enumerate(names):  # each name reads its own table, in declaration order
        torch.testing.assert_close(out[0, 2 * i : 2 * i + 2], ti.sequences[module_key(n)].weight[i + 1])
    assert "sequences.hist.weight" in ti.state_dict()  # a plain name's saved parameter is unchanged
    again = TabularInput(InputSpec(sequences={n: 7 for n in names}), embedding_dim=2)
    again.load_state_dict(ti.state_dict())
    torch.testing.assert_close(again(ids), out)


def test_tabular_input_single_group_and_empty_spec():
    ti = TabularInput(InputSpec(numeric_dim=2))
    x = torch.randn(3, 2)
    assert ti.out_dim == 2 and torch.equal(ti({"numeric": x}), x)
    with pytest.raises(ValueError):
        TabularInput(InputSpec())


# -- TaskHeads ----------------------------------------------------------------------------------
TASKS = [Task("ctr"), Task("price", "regression"), Task("genre", "multiclass", num_classes=4)]


@pytest.mark.parametrize("hidden", [(), (8,)])
@pytest.mark.parametrize("per_task", [False, True])
def test_task_heads_output_shapes(hidden, per_task):
    heads = TaskHeads(TASKS, 6, hidden)
    x = torch.randn(3, 5, 6) if per_task else torch.randn(5, 6)
    out = heads(x)
    assert list(out) == ["ctr", "price", "genre"]
    assert out["ctr"].shape == (5,) and out["price"].shape == (5,) and out["genre"].shape == (5, 4)


def test_task_heads_batch_size_one_and_independent_tasks():
    heads = TaskHeads(TASKS, 6, (8,))
    out = heads(torch.randn(1, 6))
    assert out["ctr"].shape == (1,) and out["genre"].shape == (1, 4)
    # a loss on one task gives no gradient to another task's tower or output columns
    x = torch.randn(4, 6)
    heads(x)["ctr"].sum().backward()
    tower = heads.towers.layers[0]
    assert tower.weight.grad[0].abs().sum() > 0
    assert (tower.weight.grad[1:] == 0).all() and (heads.out.weight.grad[1:] == 0).all()
