"""The image input encoder (LeNet-style CNN) against a functional reference, the encoder factory
``make_input`` and models built with ``encoder: cnn``; the ``tabular`` default keeps its layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polytask.data.schema import InputSpec
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.nn import ImageEncoder, PerTaskInputs, TabularInput, make_input
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
        create_model("shared_bottom", IMAGE, TASKS, {"encoder": "resnet"})


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
