"""The ``cnn`` input encoder: the LeNet-style default against a functional reference and a
known-answer seed check (the MultiMNIST benchmark depends on both), the depth/width settings
(``width``, ``padding``, ``batch_norm``, ``hidden``), the encoder factory ``make_input`` and models
built with ``encoder: cnn``; the ``tabular`` default keeps its layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polytask.data.schema import InputSpec
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.encoders import ImageEncoder, PerTaskInputs, TabularInput, make_input
from polytask.tasks import Task

IMAGE = InputSpec(dense={"image": [1, 28, 28]})
TASKS = [Task("left", "multiclass", num_classes=10), Task("right", "multiclass", num_classes=10)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_default_layout_is_lenet_and_matches_a_functional_reference():
    enc = ImageEncoder(IMAGE)
    assert enc.flat_dim == 320 and enc.out_dim == 50 and enc.rest is None
    conv1, conv2 = (m for m in enc.conv if isinstance(m, torch.nn.Conv2d))
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (1, 10, (5, 5))
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (10, 20, (5, 5))
    x = torch.rand(6, 1, 28, 28)
    h = F.relu(F.max_pool2d(F.conv2d(x, conv1.weight, conv1.bias), 2))
    h = F.relu(F.max_pool2d(F.conv2d(h, conv2.weight, conv2.bias), 2))
    fc = enc.fc[0]
    expected = F.relu(h.reshape(6, 320) @ fc.weight.T + fc.bias)
    out = enc({"dense:image": x})
    assert out.shape == (6, 50)
    torch.testing.assert_close(out, expected)


def test_gradients_reach_every_parameter_and_the_input():
    enc = ImageEncoder(IMAGE)
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    enc({"dense:image": x}).square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_configurable_sizes_non_square_multichannel():
    spec = InputSpec(dense={"rgb": [3, 20, 24]})
    enc = ImageEncoder(spec, channels=[4, 6, 8], kernel_size=3, pool=1, dim=7)
    assert enc.flat_dim == 8 * 14 * 18  # three 3x3 convolutions without pooling
    assert enc({"dense:rgb": torch.rand(2, 3, 20, 24)}).shape == (2, 7)
    enc = ImageEncoder(spec, channels=[4], kernel_size=3, pool=2)
    assert enc.flat_dim == 4 * 9 * 11
    assert enc({"dense:rgb": torch.rand(5, 3, 20, 24)}).shape == (5, 50)


def test_default_keeps_its_parameter_names_and_seeded_initialisation():
    """Known answer recorded from the encoder before the depth/width settings existed: same names,
    same weights for seed 0, same output (the MultiMNIST benchmark's runs depend on it)."""
    enc = ImageEncoder(IMAGE)
    assert list(enc.state_dict()) == ["conv.0.weight", "conv.0.bias", "conv.3.weight", "conv.3.bias",
                                      "fc.0.weight", "fc.0.bias"]
    sums = {k: v.double().sum().item() for k, v in enc.state_dict().items()}
    expected = {"conv.0.weight": -2.1416590955050196, "conv.0.bias": -0.5021588262170553,
                "conv.3.weight": -2.5312264387102914, "conv.3.bias": 0.19093997543677688,
                "fc.0.weight": 7.435538602073848, "fc.0.bias": 0.08801380143268034}
    assert sums == pytest.approx(expected, rel=1e-5)
    x = torch.linspace(0, 1, 2 * 784).reshape(2, 1, 28, 28)
    out = enc({"dense:image": x}).double().sum(1)
    torch.testing.assert_close(out, torch.tensor([1.1646201382391155, 1.4902976546436548], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


def convs(enc):
    return [m for m in enc.conv if isinstance(m, torch.nn.Conv2d)]


def test_width_multiplies_every_channel_count():
    enc = ImageEncoder(IMAGE, width=2.0)
    assert [c.out_channels for c in convs(enc)] == [20, 40] and enc.flat_dim == 40 * 4 * 4
    assert enc({"dense:image": torch.rand(3, 1, 28, 28)}).shape == (3, 50)
    thin = ImageEncoder(IMAGE, channels=[3, 8], width=0.25)  # rounded, at least one channel
    assert [c.out_channels for c in convs(thin)] == [1, 2]
    assert thin({"dense:image": torch.rand(2, 1, 28, 28)}).shape == (2, 50)


def test_same_padding_keeps_the_size_so_deeper_stacks_fit():
    enc = ImageEncoder(IMAGE, channels=[4, 4, 4], padding="same", kernel_size=3)
    assert enc.flat_dim == 4 * 3 * 3  # 28 -> 14 -> 7 -> 3 by pooling only
    x = torch.rand(2, 1, 28, 28)
    assert enc({"dense:image": x}).shape == (2, 50)
    h = x
    for conv in convs(enc):  # zero padding of 1 around a 3x3 kernel
        h = F.relu(F.max_pool2d(F.conv2d(h, conv.weight, conv.bias, padding=1), 2))
    torch.testing.assert_close(enc.conv(x), h)
    with pytest.raises(ValueError, match="too small"):  # valid padding cannot fit three 5x5 blocks
        ImageEncoder(IMAGE, channels=[4, 4, 4])
    with pytest.raises(ValueError, match="too small"):  # 28 -> 14 -> 7 -> 3 -> 1 -> 0
        ImageEncoder(IMAGE, channels=[2] * 5, padding="same", kernel_size=3)


def test_batch_norm_after_every_convolution():
    enc = ImageEncoder(IMAGE, batch_norm=True)
    kinds = [type(m).__name__ for m in enc.conv]
    assert kinds == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"] * 2
    x = torch.rand(4, 1, 28, 28)
    assert enc({"dense:image": x}).shape == (4, 50)
    enc.eval()  # running statistics were updated by the training-mode pass
    bn = enc.conv[1]
    assert bn.num_batches_tracked == 1 and not torch.allclose(bn.running_mean, torch.zeros(10))
    assert enc({"dense:image": x[:1]}).shape == (1, 50)


def test_hidden_fully_connected_layers_before_the_output():
    enc = ImageEncoder(IMAGE, hidden=[32, 16], dim=8)
    linears = [m for m in enc.fc if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(320, 32), (32, 16), (16, 8)]
    out = enc({"dense:image": torch.rand(3, 1, 28, 28)})
    assert out.shape == (3, 8) and enc.out_dim == 8 and (out >= 0).all()  # ReLU after the output layer too


@pytest.mark.parametrize(
    ("params", "match"),
    [({"width": 0.0}, "width"), ({"padding": "full"}, "padding"), ({"hidden": [8, 0]}, "hidden"),
     ({"kernel_size": 0}, "kernel_size")],
)
def test_bad_settings_are_clear_value_errors(params, match):
    with pytest.raises(ValueError, match=match):
        ImageEncoder(IMAGE, **params)


def test_settings_are_checked_as_encoder_params():
    enc = make_input(IMAGE, "cnn", params={"width": 0.5, "padding": "same", "batch_norm": True, "hidden": [12]})
    assert enc({"dense:image": torch.rand(2, 1, 28, 28)}).shape == (2, 50)
    with pytest.raises(ConfigError, match=r"model\.encoder_params\.padding"):
        make_input(IMAGE, "cnn", params={"padding": "full"})


def test_other_features_are_concatenated_after_the_image():
    spec = InputSpec(numeric_dim=2, cardinalities=[5], dense={"image": [1, 28, 28], "vec": [3]})
    enc = ImageEncoder(spec, embedding_dim=4)
    assert enc.out_dim == 50 + 2 + 4 + 3
    feats = {
        "dense:image": torch.rand(3, 1, 28, 28),
        "dense:vec": torch.randn(3, 3),
        "numeric": torch.randn(3, 2),
        "categorical": torch.randint(0, 5, (3, 1)),
    }
    out = enc(feats)
    assert out.shape == (3, enc.out_dim)
    torch.testing.assert_close(out[:, :50], enc.fc(enc.conv(feats["dense:image"]).flatten(1)))
    torch.testing.assert_close(out[:, 50:52], feats["numeric"])
    torch.testing.assert_close(out[:, -3:], feats["dense:vec"])


@pytest.mark.parametrize(
    ("spec", "params", "match"),
    [
        (InputSpec(numeric_dim=3), {}, "exactly one dense feature"),
        (InputSpec(dense={"a": [1, 8, 8], "b": [1, 8, 8]}), {}, "exactly one dense feature"),
        (InputSpec(dense={"vec": [784]}), {}, "exactly one dense feature"),
        (InputSpec(dense={"vec": [784], "img": [1, 28, 28]}), {"feature": "vec"}, "3 dimensions"),
        (IMAGE, {"feature": "nope"}, "not a dense feature"),
        (InputSpec(dense={"image": [1, 10, 10]}), {}, "too small"),
        (IMAGE, {"channels": []}, "channels"),
    ],
)
def test_bad_specs_are_clear_value_errors(spec, params, match):
    with pytest.raises(ValueError, match=match):
        ImageEncoder(spec, **params)


def test_named_feature_among_several_images():
    spec = InputSpec(dense={"a": [1, 28, 28], "b": [2, 16, 16]})
    enc = ImageEncoder(spec, feature="b", channels=[3], kernel_size=3)
    assert enc.feature == "b" and enc.rest is not None  # "a" is flattened by the TabularInput
    assert enc.out_dim == 50 + 28 * 28


def test_make_input():
    spec = InputSpec(numeric_dim=2, cardinalities=[3])
    assert type(make_input(spec)) is TabularInput
    enc = make_input(IMAGE, "cnn", params={"channels": [6, 16], "dim": 32})
    assert isinstance(enc, ImageEncoder) and enc.out_dim == 32
    with pytest.raises(ValueError, match="unknown encoder 'vit'"):
        make_input(IMAGE, "vit")
    with pytest.raises(ValueError, match="takes no encoder_params"):
        make_input(spec, "tabular", params={"dim": 3})
    with pytest.raises(ConfigError, match=r"model\.encoder_params\.chanels: unknown key"):
        make_input(IMAGE, "cnn", params={"chanels": [3]})
    with pytest.raises(ConfigError, match=r"model\.encoder_params\.dim"):
        make_input(IMAGE, "cnn", params={"dim": "wide"})


def test_per_task_inputs_with_cnn_are_independent():
    inputs = PerTaskInputs(IMAGE, 3, encoder="cnn", encoder_params={"dim": 8})
    x = torch.rand(4, 1, 28, 28)
    out = inputs({"dense:image": x})
    assert out.shape == (3, 4, 8) and inputs.out_dim == 8
    out[1].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in inputs[0].parameters())
    assert all(p.grad is not None and p.grad.any() for p in inputs[1].parameters())


@pytest.mark.parametrize("name", ["shared_bottom", "single_task", "mmoe", "omoe"])
def test_models_with_a_cnn_encoder(name):
    model = create_model(name, IMAGE, TASKS, {"encoder": "cnn", "encoder_params": {"channels": [4, 8], "dim": 16}})
    x = torch.rand(5, 1, 28, 28)
    labels = torch.randint(0, 10, (5,))
    out = model({"dense:image": x})
    assert {k: tuple(v.shape) for k, v in out.items()} == {"left": (5, 10), "right": (5, 10)}
    sum(t.loss(out[t.name], labels, torch.ones(5, dtype=torch.bool)) for t in TASKS).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, (name, pname)
    convs = [m for m in model.modules() if isinstance(m, ImageEncoder)]
    assert len(convs) == (2 if name == "single_task" else 1)
    if name != "single_task":  # a shared encoder is among the shared parameters
        shared = {id(p) for p in model.shared_parameters()}
        assert all(id(p) in shared for p in convs[0].parameters())


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.encoder"):
        create_model("shared_bottom", IMAGE, TASKS, {"encoder": "no_such_encoder"})


def test_tabular_default_keeps_the_state_dict_layout():
    spec = InputSpec(numeric_dim=2, cardinalities=[4, 3], sequences={"hist": 6})
    sb = create_model("shared_bottom", spec, TASKS)
    assert type(sb.input) is TabularInput
    assert {"input.categorical.weight", "input.sequences.hist.weight"} <= set(sb.state_dict())
    st = create_model("single_task", spec, TASKS)
    assert all(type(m) is TabularInput for m in st.inputs)
    assert {"inputs.0.categorical.weight", "inputs.1.sequences.hist.weight"} <= set(st.state_dict())
    explicit = create_model("mmoe", spec, TASKS, {"encoder": "tabular"})
    assert set(explicit.state_dict()) == set(create_model("mmoe", spec, TASKS).state_dict())
