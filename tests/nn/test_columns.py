"""Per-task column families (polytask.nn.columns), driven by the COLUMNS registry: shapes, gradients,
batch size 1, stacked parameters; the grouped convolution against T separate convolutions; the
LSTM's padding invariance and weight layout; cross-stitch, sluice and soft sharing on every family,
with identity units equal to each task's column run alone; a short learning test on images."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import SPEC, make_batch, make_tasks

from polytask.data.schema import InputSpec
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.nn.columns import ColumnFamily, make_columns
from polytask.registry import COLUMNS
from polytask.tasks import Task

IMAGE = InputSpec(numeric_dim=2, dense={"image": [1, 10, 10]}, numeric_names=["a", "b"])
TEXT = InputSpec(numeric_dim=2, cardinalities=[3], sequences={"text": 9}, numeric_names=["a", "b"],
                 categorical_names=["u"])
LENGTHS = [3, 0, 5, 1, 4, 2]  # an example without tokens and one without padding (L = 5)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_features(b: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"dense:image": torch.randn(b, 1, 10, 10, generator=g), "numeric": torch.randn(b, 2, generator=g)}


def text_features(b: int, seed: int = 0, length: int = 5, pad: int = 0) -> dict[str, torch.Tensor]:
    """Left-aligned token ids (0 = padding), ``pad`` extra padding columns."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(b, length + pad, dtype=torch.long)
    for i in range(b):
        n = LENGTHS[i % len(LENGTHS)]
        ids[i, :n] = torch.randint(1, 9, (n,), generator=g)
    return {"seq:text": ids, "numeric": torch.randn(b, 2, generator=g),
            "categorical": torch.randint(0, 3, (b, 1), generator=g)}


@dataclass
class Case:
    spec: InputSpec
    hidden: list[int]  # equal widths, so sluice runs on the same case
    params: dict[str, Any]
    features: Callable[..., dict[str, torch.Tensor]]
    extra: dict[str, Any] = field(default_factory=dict)


CASES = {
    "mlp": Case(SPEC, [6, 6], {}, lambda b, seed=0: make_batch(SPEC, [], b, seed).features),
    "cnn": Case(IMAGE, [4, 4], {"kernel_size": 3, "pool": 2, "dim": 5}, image_features),
    "lstm": Case(TEXT, [4, 4], {"word_dim": 3}, text_features),
}


def build(name: str, num_tasks: int = 3) -> ColumnFamily:
    case = CASES[name]
    return make_columns(name, case.spec, num_tasks, case.hidden, embedding_dim=3, params=case.params)


def rows(fam: ColumnFamily, features: dict[str, torch.Tensor]) -> int:
    b = next(iter(features.values())).shape[0]
    if fam.position_feature is None:
        return b
    return b * (features[f"seq:{fam.position_feature}"].shape[1] + 1)


def model_params(name: str, **more: Any) -> dict[str, Any]:
    case = CASES[name]
    return {"columns": name, "hidden": case.hidden, "column_params": case.params, "embedding_dim": 3,
            "tower_hidden": [], **more}


# -- moving one task's column between a T-task family and a one-task family ---------------------
PER_TASK_LISTS = re.compile(r"\b(inputs|rest|lstms)\.0\.")  # module lists with one entry per task


def family_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The family's state with family-relative names (a model registers mlp inputs as its own)."""
    state = model.state_dict()
    return {k.removeprefix("columns."): v for k, v in state.items() if k.startswith(("columns.", "inputs."))}


def task_slice(state: dict[str, torch.Tensor], key: str, value: torch.Tensor, t: int) -> torch.Tensor:
    """Task ``t``'s part of the T-task tensor that ``key`` names in a one-task family."""
    source = PER_TASK_LISTS.sub(lambda m: f"{m.group(1)}.{t}.", key)
    full = state[source]
    if source != key:
        return full
    k = value.shape[0]  # stacked on the first axis: [T * k, ...]
    return full[t * k:(t + 1) * k]


def column_alone(name: str, model: torch.nn.Module, t: int) -> ColumnFamily:
    """A one-task family holding task ``t``'s column of ``model`` (the same weights)."""
    single = build(name, num_tasks=1)
    state = family_state(model)
    single.load_state_dict({k: task_slice(state, k, v, t) for k, v in single.state_dict().items()})
    return single


def heads_input(model: torch.nn.Module, features: dict[str, torch.Tensor]) -> torch.Tensor:
    captured = {}
    handle = model.heads.register_forward_pre_hook(lambda mod, args: captured.setdefault("x", args[0]))
    model(features)
    handle.remove()
    return captured["x"]


# -- the families alone -----------------------------------------------------------------------
def test_every_registered_family_has_a_case():
    assert set(COLUMNS.names()) == set(CASES), "add a Case for the new column family"


@pytest.mark.parametrize("name", COLUMNS.names())
@pytest.mark.parametrize("batch_size", [1, 4])
def test_shapes_gradients_and_stacked_parameters(name, batch_size):
    torch.manual_seed(0)
    case, fam = CASES[name], build(name)
    features = case.features(batch_size)
    h = fam.stem(features)
    assert h.shape[:2] == (3, batch_size)
    for i in range(len(fam.layers)):
        h = fam.run_layer(i, h, features)
        assert h.shape[:2] == (3, batch_size) and h.shape[fam.channel_dim] == fam.widths[i], (name, i, h.shape)
        w = fam.layer_weights(i)
        assert w.dim() == 3 and w.shape[0] == 3
    out = fam(features)
    assert out.shape == (3, rows(fam, features), fam.out_dim)
    torch.testing.assert_close(fam.read_out(h, features), out)
    out.square().sum().backward()
    for pname, p in fam.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient at {pname}"
    # every parameter is in the stacked list exactly once, each stacked [T, ...], and differentiably
    stacked = fam.stacked_parameters()
    assert all(p.shape[0] == 3 for p in stacked)
    assert sum(p.numel() for p in stacked) == sum(p.numel() for p in fam.parameters())
    fam.zero_grad()
    sum(p.square().sum() for p in stacked).backward()
    for pname, p in fam.named_parameters():
        torch.testing.assert_close(p.grad, 2 * p.detach(), msg=f"{name}: stacked view of {pname}")


@pytest.mark.parametrize("name", COLUMNS.names())
def test_columns_are_independent(name):
    """Task 0's rows reach only task 0's parameters (its entry of a per-task module list, or its
    slice of a parameter stacked on the first axis)."""
    torch.manual_seed(0)
    fam = build(name)
    fam(CASES[name].features(4))[0].sum().backward()
    for pname, p in fam.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        owner = re.search(r"\b(?:inputs|rest|lstms)\.(\d+)\.", pname)
        others = (grad if int(owner.group(1)) != 0 else grad[:0]) if owner else grad[p.shape[0] // 3:]
        assert others.abs().sum() == 0, f"{name}: task 0 reaches another task's part of {pname}"
        mine = grad if owner else grad[:p.shape[0] // 3]
        assert owner and int(owner.group(1)) != 0 or mine.abs().sum() > 0, f"{name}: task 0 misses {pname}"


def test_grouped_convolution_equals_separate_convolutions():
    torch.manual_seed(0)
    fam = build("cnn")
    for i, layer in enumerate(fam.layers):
        c_in = 1 if i == 0 else fam.widths[i - 1]
        h = torch.randn(3, 2, c_in, 9, 9)  # a different input per task
        out = layer(h)
        w, b = layer.weight, layer.conv.bias.view(3, -1)
        assert w.shape == (3, fam.widths[i], c_in, 3, 3)
        for t in range(3):
            expected = F.relu(F.max_pool2d(F.conv2d(h[t], w[t], b[t]), 2))
            torch.testing.assert_close(out[t], expected)
        # layer_weights: [T, C_in*k*k, C_out], the convolution as a matrix on unfolded patches
        patches = F.unfold(h[1], 3).transpose(1, 2)  # [B, positions, C_in*k*k]
        conv = F.conv2d(h[1], w[1], b[1]).flatten(2).transpose(1, 2)
        torch.testing.assert_close(patches @ fam.layer_weights(i)[1] + b[1], conv)


def test_lstm_weight_matrix_is_channel_major():
    """One step from a zero state: gates = [x, 0] @ layer_weights, columns (channel, gate)."""
    torch.manual_seed(0)
    fam = build("lstm")
    layer = fam.layers[0]
    with torch.no_grad():
        for lstm in layer.lstms:
            for pname, p in lstm.named_parameters():
                if pname.startswith("bias"):
                    p.zero_()
    x = torch.randn(3, 2, 1, 3)  # [T, B, L=1, E]
    out = layer(x, torch.ones(2, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool))
    w = fam.layer_weights(0)  # [T, E + H, 4 * C]
    assert w.shape == (3, 3 + 2, 16)
    z = torch.cat([x[:, :, 0], torch.zeros(3, 2, 2)], dim=2) @ w  # [T, B, 4C]
    i, f, g, o = z.view(3, 2, 4, 4).unbind(-1)
    torch.testing.assert_close(out[:, :, 0], torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g)))


def test_lstm_padding_changes_nothing():
    """Extra padding columns, and batching with longer rows, leave every example's rows unchanged:
    the backward direction starts at the last real token."""
    torch.manual_seed(0)
    fam = build("lstm").eval()
    a = fam(text_features(6)).view(3, 6, 6, -1)  # L = 5: 6 rows per example
    b = fam(text_features(6, pad=4)).view(3, 6, 10, -1)
    torch.testing.assert_close(b[:, :, :6], a)
    assert b[:, :, 6:, :4].abs().sum() == 0  # token vectors at padding are zero
    for i, n in enumerate(LENGTHS):  # each example alone, cut to its own length
        alone = {k: v[i:i + 1] for k, v in text_features(6).items()}
        alone["seq:text"] = alone["seq:text"][:, :n]
        torch.testing.assert_close(fam(alone).view(3, n + 1, -1), a[:, i, :n + 1])
    assert a[:, 1, :, :4].abs().sum() == 0  # the example without tokens: zero sentence and tokens


def test_lstm_forward_only_and_widths():
    fam = make_columns("lstm", TEXT, 2, [3, 5], params={"bidirectional": False})
    assert fam(text_features(2)).shape == (2, 2 * 6, 5 + fam.rest.out_dim)
    with pytest.raises(ValueError, match="model.hidden.*even"):
        make_columns("lstm", TEXT, 2, [3], params={"bidirectional": True})


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.columns: unknown column family 'rnn'"):
        make_columns("rnn", SPEC, 2, [4])
    with pytest.raises(ConfigError, match="model.column_params.nope"):
        make_columns("cnn", IMAGE, 2, [4], params={"nope": 1})
    with pytest.raises(ValueError, match="model.encoder: column family 'cnn' reads"):
        create_model("cross_stitch", IMAGE, make_tasks(2), {"columns": "cnn", "encoder": "cnn"})
    with pytest.raises(ValueError, match="model.encoder: column family 'lstm' reads"):
        create_model("soft_sharing", TEXT, make_tasks(2), {"columns": "lstm", "encoder_params": {"dim": 3}})
    with pytest.raises(ValueError, match="columns 'cnn' need exactly one dense feature"):
        make_columns("cnn", SPEC, 2, [4])
    with pytest.raises(ValueError, match="model.column_params.feature: 'u' is not a sequence feature"):
        make_columns("lstm", TEXT, 2, [4], params={"feature": "u"})
    with pytest.raises(ValueError, match="model.hidden: image 'image'.*too small"):
        make_columns("cnn", IMAGE, 2, [4, 4, 4], params={"kernel_size": 3})


def test_mlp_columns_take_any_encoder():
    torch.manual_seed(0)
    tasks = make_tasks(2)
    encoder_params = {"channels": [2], "kernel_size": 3, "dim": 5}
    model = create_model("cross_stitch", IMAGE, tasks, {"hidden": [4], "encoder": "cnn", "encoder_params": encoder_params})
    out = model(image_features(3))
    assert out["t0"].shape == (3,) and out["t1"].shape == (3,)
    assert type(model.inputs[0]).__name__ == "ImageEncoder"


# -- cross-stitch -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", COLUMNS.names())
@pytest.mark.parametrize("per_channel", [False, True])
def test_cross_stitch_identity_units_equal_columns_run_alone(name, per_channel):
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("cross_stitch", CASES[name].spec, tasks, model_params(name, per_channel=per_channel))
    features = CASES[name].features(4)
    mixed = heads_input(model, features)
    with torch.no_grad():
        for unit in model.units.values():
            unit.alpha.copy_(torch.eye(3).expand_as(unit.alpha))
    independent = heads_input(model, features)
    for t in range(3):
        torch.testing.assert_close(independent[t], column_alone(name, model, t)(features)[0])
    assert (mixed - independent).abs().max() > 1e-4  # the paper's initialisation does mix


@pytest.mark.parametrize("name", COLUMNS.names())
def test_per_channel_units_mix_on_the_channel_axis(name):
    torch.manual_seed(0)
    model = create_model("cross_stitch", CASES[name].spec, make_tasks(2), model_params(name, per_channel=True))
    features = CASES[name].features(3)
    h = model.columns.run_layer(0, model.columns.stem(features), features)
    unit, cd = model.units["0"], model.columns.channel_dim
    with torch.no_grad():
        unit.alpha.copy_(torch.eye(2).expand_as(unit.alpha))
        unit.alpha[1] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # channel 1: both tasks read task 1
    out = unit(h)
    torch.testing.assert_close(out.select(cd, 1)[0], h.select(cd, 1)[1])
    torch.testing.assert_close(out.select(cd, 1)[1], h.select(cd, 1)[1])
    torch.testing.assert_close(out.select(cd, 0)[0], h.select(cd, 0)[0])
    torch.testing.assert_close(out.select(cd, 2)[1], h.select(cd, 2)[1])


@pytest.mark.parametrize("name", COLUMNS.names())
def test_per_layer_units_mix_tasks_row_by_row(name):
    """``h~_t = sum_s alpha[t, s] h_s`` (Misra et al., Eq. 1) with an asymmetric alpha."""
    torch.manual_seed(0)
    model = create_model("cross_stitch", CASES[name].spec, make_tasks(2), model_params(name))
    features = CASES[name].features(3)
    h = model.columns.run_layer(0, model.columns.stem(features), features)
    unit = model.units["0"]
    with torch.no_grad():
        unit.alpha.copy_(torch.tensor([[0.2, 0.8], [0.0, 1.0]]))
    out = unit(h)
    torch.testing.assert_close(out[0], 0.2 * h[0] + 0.8 * h[1])
    torch.testing.assert_close(out[1], h[1])


def test_lstm_padding_id_is_a_zero_vector_without_gradient():
    torch.manual_seed(0)
    fam = build("lstm")
    features = text_features(6)
    features["seq:text"][0, 1] = 0  # a padding id inside the valid prefix (malformed, but harmless)
    x = fam.stem(features)
    assert x[:, 0, 1].abs().sum() == 0 and x[:, 0, 0].abs().sum() > 0
    fam(features).sum().backward()
    assert fam.words.grad[:, 0].abs().sum() == 0 and fam.words.grad.abs().sum() > 0


def test_lstm_columns_give_token_level_tasks_token_outputs():
    torch.manual_seed(0)
    tasks = [Task("row", "binary"), Task("tag", "tagging", tokens="text", num_classes=3)]
    model = create_model("cross_stitch", TEXT, tasks, model_params("lstm"))
    assert model.position_feature == "text"
    out = model(text_features(4))
    assert out["row"].shape == (4,) and out["tag"].shape == (4, 5, 3)
    with pytest.raises(ValueError, match="token-level task"):
        create_model("cross_stitch", TEXT, tasks, model_params("mlp"))


def test_cross_stitch_on_cnn_columns_learns_a_small_image_task():
    """Two tasks on 10x10 images with one bright 3x3 square and noise: is it in the left half; is
    it in the top half. Test accuracy after a few epochs is above 0.9 for both tasks."""
    from polytask.data.table import TensorTable
    from polytask.train.trainer import Trainer

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n = 900
    images = 0.3 * torch.randn(n, 1, 10, 10, generator=g)
    rows_, cols = torch.randint(0, 8, (n,), generator=g), torch.randint(0, 8, (n,), generator=g)
    for i in range(n):
        images[i, 0, rows_[i]:rows_[i] + 3, cols[i]:cols[i] + 3] += 1.0
    labels = {"left": (cols + 1 < 5).float(), "top": (rows_ + 1 < 5).float()}
    tasks = [Task("left", "binary"), Task("top", "binary")]
    spec = InputSpec(dense={"image": [1, 10, 10]})
    model = create_model("cross_stitch", spec, tasks, {"columns": "cnn", "hidden": [6, 8], "tower_hidden": [],
                                                       "column_params": {"kernel_size": 3, "dim": 16}})
    ones = torch.ones(n, dtype=torch.bool)
    train = TensorTable({"dense:image": images[:700]}, {k: v[:700] for k, v in labels.items()},
                        {k: ones[:700] for k in labels})
    start = time.perf_counter()
    Trainer(model, tasks, lr=3e-3, epochs=5, batch_size=50, progress=False, seed=0).fit(train)
    model.eval()
    with torch.no_grad():
        out = model({"dense:image": images[700:]})
    accuracy = {k: float(((out[k] > 0).float() == labels[k][700:]).float().mean()) for k in labels}
    print(f"cnn cross-stitch accuracy {accuracy}, {time.perf_counter() - start:.1f}s")
    assert min(accuracy.values()) > 0.9, accuracy


# -- sluice and soft sharing on every family ----------------------------------------------------
@pytest.mark.parametrize("name", COLUMNS.names())
def test_sluice_runs_and_identity_alpha_equals_columns_run_alone(name):
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model("sluice", CASES[name].spec, tasks, model_params(name, orthogonality=0.1))
    features = CASES[name].features(3)
    loss = sum(y.square().sum() for y in model(features).values())
    (loss + model.regularization()["sluice_orthogonality"]).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient at {pname}"
    with torch.no_grad():
        model.alpha.copy_(torch.eye(4).expand_as(model.alpha))
        model.beta.copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    x = heads_input(model, features)
    for t in range(2):
        torch.testing.assert_close(x[t], column_alone(name, model, t)(features)[0])


@pytest.mark.parametrize("name", COLUMNS.names())
def test_sluice_subspaces_split_the_channel_axis(name):
    torch.manual_seed(0)
    model = create_model("sluice", CASES[name].spec, make_tasks(2), model_params(name))
    features = CASES[name].features(3)
    h = model.columns.run_layer(0, model.columns.stem(features), features)
    swap = torch.eye(4)
    swap[0] = torch.tensor([0.0, 0.0, 1.0, 0.0])  # task 0's first subspace <- task 1's first subspace
    out, cd, half = model.mix_subspaces(h, swap), model.columns.channel_dim, CASES[name].hidden[0] // 2
    torch.testing.assert_close(out[0].narrow(cd - 1, 0, half), h[1].narrow(cd - 1, 0, half))
    torch.testing.assert_close(out[0].narrow(cd - 1, half, half), h[0].narrow(cd - 1, half, half))
    torch.testing.assert_close(out[1], h[1])


def test_sluice_beta_on_cnn_columns_pools_earlier_maps_to_the_last_size():
    torch.manual_seed(0)
    model = create_model("sluice", IMAGE, make_tasks(2), model_params("cnn"))
    with torch.no_grad():
        model.alpha.copy_(torch.eye(4).expand_as(model.alpha))
        model.beta.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # the first layer only
    features = image_features(3)
    h0 = model.columns.run_layer(0, model.columns.stem(features), features)  # [T, B, 4, 4, 4]
    pooled = h0.mean(dim=(3, 4), keepdim=True)  # the last layer's maps are 1x1: a global average
    torch.testing.assert_close(heads_input(model, features), model.columns.read_out(pooled, features))


@pytest.mark.parametrize("name", COLUMNS.names())
def test_soft_sharing_penalty_on_every_family(name):
    torch.manual_seed(0)
    tasks = make_tasks(3)
    model = create_model("soft_sharing", CASES[name].spec, tasks, model_params(name, alpha=0.5))
    model(CASES[name].features(2))
    penalty = model.regularization()["soft_sharing_l2"]
    assert float(penalty.detach()) > 0
    penalty.backward()
    for pname, p in model.named_parameters():
        if pname.startswith("heads.out"):
            continue  # output layers are left out of the distance
        assert p.grad is not None, f"{name}: the distance does not reach {pname}"
    # every task's network a copy of task 0's: distance zero
    single = column_alone(name, model, 0)
    state = family_state(model)
    with torch.no_grad():
        for t in range(1, 3):
            for k, v in single.state_dict().items():
                task_slice(state, k, v, t).copy_(v)
        for p in model.heads.towers.parameters():
            p.copy_(p[:1].expand_as(p))
    assert abs(float(model.regularization()["soft_sharing_l2"].detach())) < 1e-9
