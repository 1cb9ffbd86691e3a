"""The ``resnet`` encoder: torchvision's ResNet-18/34/50 layouts (state-dict names and shapes
written down from torchvision's architecture, parameter counts from its model table), the small
custom network, loading a torchvision-format weights file exactly and refusing a bad one with one
error naming the file and the key, a saved run loading without the file, gradients, and a tiny
image task it learns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from polytask import fit
from polytask.data.schema import InputSpec
from polytask.encoders import ResNetEncoder, make_input
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.run import Run
from polytask.tasks import Task

RGB64 = InputSpec(dense={"image": [3, 64, 64]})

#: torchvision's resnet18 state dict (its classifier ``fc`` left out), in its order where listed
#: consecutively; every stage after the first starts with a stride-2 block and a projection shortcut
RESNET18_FIRST_KEYS = [
    ("conv1.weight", [64, 3, 7, 7]),
    ("bn1.weight", [64]), ("bn1.bias", [64]), ("bn1.running_mean", [64]), ("bn1.running_var", [64]),
    ("bn1.num_batches_tracked", []),
    ("layer1.0.conv1.weight", [64, 64, 3, 3]),
    ("layer1.0.bn1.weight", [64]), ("layer1.0.bn1.bias", [64]), ("layer1.0.bn1.running_mean", [64]),
    ("layer1.0.bn1.running_var", [64]), ("layer1.0.bn1.num_batches_tracked", []),
    ("layer1.0.conv2.weight", [64, 64, 3, 3]),
]
RESNET18_KEYS = {
    "layer1.1.bn2.running_var": [64],
    "layer2.0.conv1.weight": [128, 64, 3, 3],
    "layer2.0.conv2.weight": [128, 128, 3, 3],
    "layer2.0.downsample.0.weight": [128, 64, 1, 1],
    "layer2.0.downsample.1.weight": [128],
    "layer2.0.downsample.1.bias": [128],
    "layer2.0.downsample.1.running_mean": [128],
    "layer2.0.downsample.1.running_var": [128],
    "layer2.0.downsample.1.num_batches_tracked": [],
    "layer2.1.conv1.weight": [128, 128, 3, 3],
    "layer3.0.conv1.weight": [256, 128, 3, 3],
    "layer3.0.downsample.0.weight": [256, 128, 1, 1],
    "layer3.0.downsample.1.running_var": [256],
    "layer3.1.bn2.bias": [256],
    "layer4.0.conv1.weight": [512, 256, 3, 3],
    "layer4.0.conv2.weight": [512, 512, 3, 3],
    "layer4.0.downsample.0.weight": [512, 256, 1, 1],
    "layer4.0.downsample.1.weight": [512],
    "layer4.1.conv2.weight": [512, 512, 3, 3],
    "layer4.1.bn2.num_batches_tracked": [],
}
RESNET18_ABSENT = ["layer1.0.downsample.0.weight", "layer1.1.downsample.0.weight", "layer2.1.downsample.0.weight",
                   "layer4.2.conv1.weight", "layer1.0.conv3.weight", "layer5.0.conv1.weight", "fc.weight", "fc.bias"]
RESNET50_KEYS = {
    "layer1.0.conv1.weight": [64, 64, 1, 1],
    "layer1.0.conv2.weight": [64, 64, 3, 3],
    "layer1.0.conv3.weight": [256, 64, 1, 1],
    "layer1.0.bn3.weight": [256],
    "layer1.0.downsample.0.weight": [256, 64, 1, 1],  # expansion 4: layer1 has a projection too
    "layer1.1.conv1.weight": [64, 256, 1, 1],
    "layer2.0.conv1.weight": [128, 256, 1, 1],
    "layer2.0.conv2.weight": [128, 128, 3, 3],
    "layer2.0.downsample.0.weight": [512, 256, 1, 1],
    "layer3.5.conv3.weight": [1024, 256, 1, 1],
    "layer4.2.bn3.running_mean": [2048],
}
#: entries of the full torchvision state dict (fc.weight and fc.bias included) and parameter
#: counts (torchvision's model table: 11,689,512 / 21,797,672 / 25,557,032, the 1000-class fc included)
STATE_ENTRIES = {18: 122, 34: 218, 50: 320}
PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}
FC = {18: 512 * 1000 + 1000, 34: 512 * 1000 + 1000, 50: 2048 * 1000 + 1000}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_depths_are_torchvisions_resnets(depth):
    enc = ResNetEncoder(RGB64, depth=depth)
    assert len(enc.trunk.state_dict()) + 2 == STATE_ENTRIES[depth]
    assert sum(p.numel() for p in enc.trunk.parameters()) + FC[depth] == PARAMETERS[depth]
    assert enc.out_dim == (2048 if depth == 50 else 512)
    enc.eval()
    assert enc({"dense:image": torch.randn(2, 3, 64, 64)}).shape == (2, enc.out_dim)


def test_resnet18_state_dict_names_and_shapes_are_torchvisions():
    got = shapes(ResNetEncoder(RGB64, depth=18).trunk)
    assert list(got.items())[: len(RESNET18_FIRST_KEYS)] == RESNET18_FIRST_KEYS
    assert {k: got.get(k) for k in RESNET18_KEYS} == RESNET18_KEYS
    assert not set(RESNET18_ABSENT) & set(got)
    assert sum(k.endswith("num_batches_tracked") for k in got) == 20  # 20 BatchNorm layers


def test_resnet50_bottlenecks_stride_on_the_3x3_conv():
    trunk = ResNetEncoder(RGB64, depth=50).trunk
    got = shapes(trunk)
    assert {k: got.get(k) for k in RESNET50_KEYS} == RESNET50_KEYS
    block = trunk.layer2[0]
    assert (block.conv1.stride, block.conv2.stride, block.conv3.stride) == ((1, 1), (2, 2), (1, 1))
    assert block.downsample[0].stride == (2, 2)
    assert [len(getattr(trunk, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_initialised_like_torchvision():
    trunk = ResNetEncoder(RGB64, depth=18).trunk
    for m in trunk.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
    w = trunk.layer4[0].conv2.weight.detach()  # kaiming normal, fan_out = 512 * 3 * 3
    assert abs(float(w.std()) / (2 / (512 * 9)) ** 0.5 - 1) < 0.02
    assert trunk.conv1.bias is None and trunk.layer2[0].downsample[0].bias is None


@pytest.mark.parametrize("size", [32, 64])
def test_small_stem_keeps_the_resolution_and_stages_halve_it(size):
    enc = ResNetEncoder(InputSpec(dense={"image": [3, size, size]}), stem="small")
    assert list(enc.trunk.conv1.weight.shape) == [16, 3, 3, 3] and enc.trunk.conv1.stride == (1, 1)
    x = torch.randn(2, 3, size, size)
    sizes = []
    for name in ("layer1", "layer2", "layer3"):
        enc.trunk.get_submodule(name).register_forward_hook(lambda m, i, o: sizes.append(o.shape[1:]))
    assert enc({"dense:image": x}).shape == (2, 64)
    assert [tuple(s) for s in sizes] == [(16, size, size), (32, size // 2, size // 2), (64, size // 4, size // 4)]


def test_imagenet_stem_quarters_the_resolution():
    enc = ResNetEncoder(RGB64, blocks=[1], widths=[8])
    out = []
    enc.trunk.layer1.register_forward_hook(lambda m, i, o: out.append(o.shape))
    enc({"dense:image": torch.randn(1, 3, 64, 64)})
    assert tuple(out[0]) == (1, 8, 16, 16)


def test_custom_bottleneck_projection_and_other_features():
    spec = InputSpec(numeric_dim=2, dense={"image": [1, 28, 28]}, numeric_names=["a", "b"])
    enc = ResNetEncoder(spec, stem="small", blocks=[1, 2], widths=[4, 8], bottleneck=True, dim=10)
    assert enc.trunk.out_dim == 32 and enc.out_dim == 10 + enc.rest.out_dim
    out = enc({"dense:image": torch.randn(3, 1, 28, 28), "numeric": torch.randn(3, 2)})
    assert out.shape == (3, enc.out_dim)
    assert (out[:, :10] >= 0).all()  # Linear + ReLU projection


@pytest.mark.parametrize(("params", "match"), [
    ({"depth": 101}, "depth"),
    ({"depth": 18, "blocks": [1, 1]}, "blocks describe a custom network"),
    ({"depth": 34, "bottleneck": True}, "basic blocks"),
    ({"blocks": [1, 1], "widths": [4]}, "one positive width per stage"),
    ({"blocks": []}, "non-empty"),
    ({"stem": "tiny"}, "stem"),
    ({"dim": -1}, "dim"),
])
def test_bad_settings_are_clear_errors(params, match):
    with pytest.raises((ValueError, ConfigError), match=match):
        make_input(RGB64, "resnet", params=params)


def test_no_image_feature_is_named_as_the_resnet_encoder():
    with pytest.raises(ValueError, match="encoder 'resnet' needs exactly one dense feature"):
        ResNetEncoder(InputSpec(numeric_dim=2))


# -- weights files ---------------------------------------------------------------------------------
def torchvision_file(path, trunk: torch.nn.Module, *, nest: str | None = None, drop: str | None = None,
                     seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's format for ``trunk``'s architecture with random values, plus
    the classifier ``fc.*`` torchvision saves; saved to ``path`` (under ``nest`` if given)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in trunk.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.randint(1, 1000, (), generator=g)
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g)
    state["fc.weight"] = torch.randn(1000, trunk.out_dim, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    if drop is not None:
        state = {k: v for k, v in state.items() if not k.endswith(drop)}
    torch.save({nest: state, "epoch": 90} if nest else state, path)
    return state


def test_a_torchvision_resnet18_file_loads_exactly(tmp_path):
    path = tmp_path / "resnet18.pth"
    saved = torchvision_file(path, ResNetEncoder(RGB64, depth=18).trunk)
    enc = ResNetEncoder(RGB64, depth=18, weights=str(path))
    got = enc.trunk.state_dict()
    assert set(got) == set(saved) - {"fc.weight", "fc.bias"}
    for k, v in got.items():
        assert torch.equal(v, saved[k]), k


@pytest.mark.parametrize("nest", ["state_dict", "model"])
def test_a_checkpoint_holding_the_state_dict_loads(tmp_path, nest):
    small = dict(stem="small", blocks=[1, 1], widths=[4, 8])
    path = tmp_path / "ckpt.pth"
    saved = torchvision_file(path, ResNetEncoder(RGB64, **small).trunk, nest=nest)
    enc = ResNetEncoder(RGB64, weights=str(path), **small)
    assert all(torch.equal(v, saved[k]) for k, v in enc.trunk.state_dict().items())


def test_an_old_file_without_num_batches_tracked_loads(tmp_path):
    small = dict(stem="small", blocks=[1, 1], widths=[4, 8])
    path = tmp_path / "old.pth"
    saved = torchvision_file(path, ResNetEncoder(RGB64, **small).trunk, drop="num_batches_tracked")
    enc = ResNetEncoder(RGB64, weights=str(path), **small)
    assert torch.equal(enc.trunk.layer2[0].downsample[1].running_var, saved["layer2.0.downsample.1.running_var"])


SMALL = dict(stem="small", blocks=[1, 1], widths=[4, 8])


def test_a_wrong_shape_is_one_error_naming_file_key_and_shapes(tmp_path):
    path = tmp_path / "w.pth"
    state = torchvision_file(path, ResNetEncoder(RGB64, **SMALL).trunk)
    state["layer1.0.conv1.weight"] = torch.zeros(4, 4, 1, 1)
    torch.save(state, path)
    with pytest.raises(ConfigError) as err:
        ResNetEncoder(RGB64, weights=str(path), **SMALL)
    assert str(err.value) == (f"model.encoder_params.weights: {path}: layer1.0.conv1.weight has shape [4, 4, 1, 1], "
                              "the trunk expects [4, 4, 3, 3]")


def test_a_one_channel_image_says_pretrained_resnets_take_three(tmp_path):
    path = tmp_path / "resnet18.pth"
    torchvision_file(path, ResNetEncoder(RGB64, depth=18).trunk)
    with pytest.raises(ConfigError, match=r"resnet18.pth: conv1.weight has shape \[64, 3, 7, 7\], the trunk expects "
                                          r"\[64, 1, 7, 7\]: the weights take 3-channel images but the image feature "
                                          r"has 1 channel\(s\)"):
        ResNetEncoder(InputSpec(dense={"image": [1, 64, 64]}), depth=18, weights=str(path))


def test_a_small_stem_names_the_stem(tmp_path):
    path = tmp_path / "resnet18.pth"
    torchvision_file(path, ResNetEncoder(RGB64, depth=18).trunk)
    with pytest.raises(ConfigError, match="stem is a 7x7 convolution, this encoder's a 3x3 one"):
        ResNetEncoder(RGB64, depth=18, stem="small", weights=str(path))


def test_missing_and_extra_keys(tmp_path):
    path = tmp_path / "w.pth"
    state = torchvision_file(path, ResNetEncoder(RGB64, **SMALL).trunk)
    del state["layer2.0.downsample.0.weight"]
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"w.pth: layer2.0.downsample.0.weight is missing"):
        ResNetEncoder(RGB64, weights=str(path), **SMALL)
    deeper = tmp_path / "deeper.pth"  # a deeper network's weights must not half-load
    torchvision_file(deeper, ResNetEncoder(RGB64, stem="small", blocks=[2, 1], widths=[4, 8]).trunk)
    with pytest.raises(ConfigError, match=r"deeper.pth: layer1.1.conv1.weight is not a key of the trunk"):
        ResNetEncoder(RGB64, weights=str(deeper), **SMALL)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"model.encoder_params.weights: .*nope.pth: file not found"):
        ResNetEncoder(RGB64, weights=str(tmp_path / "nope.pth"), **SMALL)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="junk.pth: cannot be read as a torch state dict"):
        ResNetEncoder(RGB64, weights=str(junk), **SMALL)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(ConfigError, match="list.pth: holds no state dict"):
        ResNetEncoder(RGB64, weights=str(listed), **SMALL)
    nan = tmp_path / "nan.pth"
    state = torchvision_file(nan, ResNetEncoder(RGB64, **SMALL).trunk)
    state["bn1.weight"][0] = float("nan")
    torch.save(state, nan)
    with pytest.raises(ConfigError, match="nan.pth: bn1.weight holds a value that is not finite"):
        ResNetEncoder(RGB64, weights=str(nan), **SMALL)


def test_a_restored_spec_skips_the_file():
    spec = InputSpec.from_dict(RGB64.to_dict())
    assert spec.restored and not RGB64.restored
    ResNetEncoder(spec, weights="/no/such/file.pth", **SMALL)  # a loaded run: its checkpoint has the weights


# -- training --------------------------------------------------------------------------------------
def test_gradient_reaches_every_parameter():
    spec = InputSpec(numeric_dim=1, dense={"image": [3, 16, 16]}, numeric_names=["x"])
    enc = ResNetEncoder(spec, stem="small", blocks=[1, 1], widths=[4, 8], bottleneck=True, dim=6)
    enc({"dense:image": torch.randn(4, 3, 16, 16), "numeric": torch.randn(4, 1)}).square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def blob_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, 1, 8, 8]`` noise with a bright 2x2 blob in the left (label 0) or right (1) half."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, n)
    rows, cols = rng.integers(0, 7, n), rng.integers(0, 3, n) + 4 * y
    for i in range(n):
        x[i, 0, rows[i]:rows[i] + 2, cols[i]:cols[i] + 2] += 2.0
    return x, y


def test_learns_a_tiny_image_task():
    x, y = blob_images(256, 0)
    model = create_model("shared_bottom", InputSpec(dense={"image": [1, 8, 8]}), [Task("side", "binary")],
                         {"encoder": "resnet", "encoder_params": {"stem": "small", "blocks": [1, 1], "widths": [4, 8]},
                          "bottom_hidden": [8], "tower_hidden": []})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y).float()
    mask = torch.ones(len(ys), dtype=torch.bool)
    task = model.tasks[0]
    for step in range(60):
        idx = torch.arange(step * 32, step * 32 + 32) % len(ys)
        loss = task.loss(model({"dense:image": xs[idx]})["side"], ys[idx], mask[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = blob_images(200, 1)
    with torch.no_grad():
        p = model({"dense:image": torch.from_numpy(xt)})["side"]
    assert ((p > 0).numpy() == yt).mean() > 0.9


def image_table(n: int, seed: int) -> pa.Table:
    x, y = blob_images(n, seed)
    return pa.table({"image": [row.reshape(-1).tolist() for row in x], "side": y})


def test_a_saved_run_loads_without_the_weights_file(tmp_path):
    path = tmp_path / "trunk.pth"
    saved = torchvision_file(path, ResNetEncoder(InputSpec(dense={"image": [1, 8, 8]}), **SMALL).trunk)
    run = fit(train=image_table(64, 0), validation=image_table(32, 1),
              features={"dense": [{"name": "image", "shape": [1, 8, 8], "scale": "none"}]},
              tasks=[{"name": "side", "kind": "binary"}],
              model={"name": "shared_bottom", "encoder": "resnet", "bottom_hidden": [4],
                     "encoder_params": {**SMALL, "weights": str(path)}},
              freeze=["input.trunk.*"], epochs=2, batch_size=16, progress=False, out=tmp_path / "run")
    trunk = run.model.input.trunk
    assert torch.equal(trunk.conv1.weight, saved["conv1.weight"])  # frozen: still the file's
    assert torch.equal(trunk.bn1.running_mean, saved["bn1.running_mean"])
    path.unlink()
    loaded = Run.load(tmp_path / "run")
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, run.model.state_dict()[k].cpu()), k
    assert loaded.config.model.params()["encoder_params"]["weights"] == str(path)
