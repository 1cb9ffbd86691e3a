"""Fine-tuning controls: ``train.freeze`` as parameter-name patterns (frozen parameters and the
BatchNorm statistics of a frozen trunk stay bit-identical while the rest trains; the frozen set is
reported) and ``train.lr_scale`` (a known-answer SGD step; the first matching pattern wins; it
multiplies the model's own group scales); every error names its key."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from polytask import fit
from polytask.config import config_from_dict
from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.encoders.resnet import ResNetTrunk
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.optim import parameter_groups
from polytask.train.trainer import Trainer
from polytask.transfer import freeze, hold_batch_norms, is_held

SMALL = {"stem": "small", "blocks": [1, 1], "widths": [4, 8]}
IMAGE = InputSpec(dense={"image": [1, 8, 8]})
TASKS = [Task("a", "binary"), Task("b", "regression")]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 1, 8, 8)).astype(np.float32)
    a = (x[:, 0, :, :4].mean((1, 2)) > x[:, 0, :, 4:].mean((1, 2))).astype(np.float32)
    b = x[:, 0, :4].mean((1, 2)).astype(np.float32)
    return x, a, b


def image_table(n: int, seed: int) -> pa.Table:
    x, a, b = images(n, seed)
    return pa.table({"image": [row.reshape(-1).tolist() for row in x], "a": a, "b": b})


def tensor_table(n: int, seed: int) -> TensorTable:
    x, a, b = images(n, seed)
    ones = torch.ones(n, dtype=torch.bool)
    return TensorTable({"dense:image": torch.from_numpy(x)}, {"a": torch.from_numpy(a), "b": torch.from_numpy(b)},
                       {"a": ones, "b": ones})


def trunk_file(path) -> dict[str, torch.Tensor]:
    """Random torchvision-format weights (running statistics far from a fresh layer's) for the
    small trunk over ``IMAGE``."""
    g = torch.Generator().manual_seed(3)
    state = {}
    for k, v in ResNetTrunk(1, SMALL["blocks"], SMALL["widths"], stem="small").state_dict().items():
        state[k] = (torch.randint(1, 9, (), generator=g) if k.endswith("num_batches_tracked")
                    else torch.rand(v.shape, generator=g) + 0.5 if k.endswith("running_var")
                    else torch.randn(v.shape, generator=g))
    torch.save(state, path)
    return state


def test_frozen_patterns_stay_bit_identical_and_are_reported(tmp_path):
    saved = trunk_file(tmp_path / "trunk.pth")
    model = {"name": "shared_bottom", "encoder": "resnet", "bottom_hidden": [6],
             "encoder_params": {**SMALL, "weights": str(tmp_path / "trunk.pth")}}
    features = {"dense": [{"name": "image", "shape": [1, 8, 8], "scale": "none"}]}
    tasks = [{"name": "a", "kind": "binary"}, {"name": "b", "kind": "regression"}]
    seen = {}

    def spy(trainer, record):
        seen["optimised"] = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}

    run = fit(train=image_table(96, 0), validation=image_table(32, 1), features=features, tasks=tasks, model=model,
              freeze=["input.trunk.*"], epochs=3, batch_size=16, progress=False, callbacks=[spy],
              out=tmp_path / "run")
    state = run.model.state_dict()
    for k, v in saved.items():  # weights and BatchNorm statistics: still the file's
        assert torch.equal(state[f"input.trunk.{k}"], v), k
    fresh = create_model("shared_bottom", IMAGE, TASKS, {"encoder": "resnet", "bottom_hidden": [6],
                                                         "encoder_params": SMALL}).state_dict()
    for k in ("bottom.0.weight", "heads.out.weight"):  # the rest trained
        assert not torch.equal(state[k], fresh[k]) and fresh[k].shape == state[k].shape
    trunk = {n for n, _ in run.model.named_parameters() if n.startswith("input.trunk.")}
    report = run.metrics["transfer"]
    assert report["freeze"] == ["input.trunk.*"] and set(report["frozen"]) == trunk and len(trunk) == 18
    assert report["frozen_batch_norm"] == ["input.trunk.bn1", "input.trunk.layer1.0.bn1", "input.trunk.layer1.0.bn2",
                                           "input.trunk.layer2.0.bn1", "input.trunk.layer2.0.bn2",
                                           "input.trunk.layer2.0.downsample.1"]
    params = dict(run.model.named_parameters())
    assert not any(id(params[n]) in seen["optimised"] for n in trunk)
    assert is_held(run.model.input.trunk.bn1)
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["train"]["freeze"] == ["input.trunk.*"] and "init_from" not in cfg["train"]


def test_a_frozen_batch_norm_stays_in_eval_mode_through_model_train():
    model = create_model("shared_bottom", IMAGE, TASKS, {"encoder": "resnet", "encoder_params": SMALL})
    frozen = freeze(model, ["input.trunk.layer1.*"], [])
    assert frozen == [f"input.trunk.layer1.0.{n}.{w}" for n in ("conv1", "bn1", "conv2", "bn2") for w in
                      (("weight",) if n.startswith("conv") else ("weight", "bias"))]
    held = hold_batch_norms(model)
    assert held == ["input.trunk.layer1.0.bn1", "input.trunk.layer1.0.bn2"]
    model.train()
    bn = model.input.trunk.layer1[0].bn1
    assert not bn.training and is_held(bn) and model.input.trunk.bn1.training and model.training
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(4, 1, 8, 8)
    model({"dense:image": x})
    for k, v in bn.state_dict().items():  # running statistics neither updated nor counted
        assert torch.equal(v, before[k]), k
    block = model.input.trunk.layer1[0]
    h = torch.randn(4, 4, 8, 8)
    expected = (h - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    torch.testing.assert_close(block.bn1(h), expected * bn.weight[:, None, None] + bn.bias[:, None, None])
    model.eval()
    model.train(True)
    assert not bn.training and model.input.trunk.bn1.training


def test_freeze_patterns_need_no_init_from_but_modes_still_do():
    cfg = config_from_dict({"data": {"dataset": "synthetic_mmoe"}, "train": {"freeze": ["input.*"]}})
    assert cfg.train.freeze == ["input.*"]
    with pytest.raises(ConfigError, match="train.freeze.*needs train.init_from"):
        config_from_dict({"data": {"dataset": "synthetic_mmoe"}, "train": {"freeze": "shared"}})


def test_a_pattern_matching_nothing_names_train_freeze_and_the_prefixes():
    model = create_model("shared_bottom", IMAGE, TASKS, {"encoder": "resnet", "encoder_params": SMALL})
    with pytest.raises(ConfigError) as err:
        freeze(model, ["input.trunk.*", "input.trnk.*"], [])
    assert str(err.value).startswith("train.freeze: 'input.trnk.*' matches no parameter of the model (parameter "
                                     "names start with input.trunk, bottom.0, heads.towers")
    with pytest.raises(ConfigError, match=r"train.freeze: \['\*'\]: every parameter of the model would be frozen"):
        freeze(model, ["*"], [])


# -- learning-rate multipliers -----------------------------------------------------------------------
def tabular_model(name: str = "shared_bottom"):
    spec = InputSpec(numeric_dim=4)
    params = {"bottom_hidden": [8, 4], "tower_hidden": []} if name == "shared_bottom" else {"hidden": [4, 4]}
    return create_model(name, spec, TASKS, params)


def tabular(n: int = 32) -> TensorTable:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    ones = torch.ones(n, dtype=torch.bool)
    return TensorTable({"numeric": x}, {"a": (x[:, 0] > 0).float(), "b": x[:, 1]}, {"a": ones, "b": ones})


def test_one_sgd_step_moves_a_scaled_parameter_by_lr_times_factor_times_grad():
    model = tabular_model()
    trainer = Trainer(model, TASKS, optimizer="sgd", lr=0.1, lr_scale={"bottom.2.*": 0.25}, progress=False,
                      device="cpu")
    batch = tabular().slice(0, 32)
    out = model(batch.features)
    loss = sum(t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in TASKS)
    trainer.optimizer.zero_grad()
    loss.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    trainer.optimizer.step()
    for n, p in model.named_parameters():
        factor = 0.25 if n.startswith("bottom.2.") else 1.0
        torch.testing.assert_close(p.detach(), before[n] - 0.1 * factor * grads[n], rtol=0, atol=1e-7)
        assert grads[n].abs().sum() > 0, n


def test_the_first_matching_pattern_wins_and_groups_keep_their_order():
    model = tabular_model()
    groups = parameter_groups(model, model.optimizer_groups(), 1.0, {"bottom.0.*": 0.1, "bottom.*": 0.5})
    lrs = {id(p): g["lr"] for g in groups for p in g["params"]}
    by_name = {n: lrs[id(p)] for n, p in model.named_parameters()}
    assert by_name == {"bottom.0.weight": 0.1, "bottom.0.bias": 0.1, "bottom.2.weight": 0.5, "bottom.2.bias": 0.5,
                       "heads.out.weight": 1.0, "heads.out.bias": 1.0}
    assert [g["lr"] for g in groups] == [0.1, 0.5, 1.0]  # split in parameter order
    reversed_order = parameter_groups(model, model.optimizer_groups(), 1.0, {"bottom.*": 0.5, "bottom.0.*": 0.1})
    assert [g["lr"] for g in reversed_order] == [0.5, 1.0]
    assert parameter_groups(model, model.optimizer_groups(), 1.0) == [
        {"params": list(model.parameters()), "lr": 1.0}]  # no lr_scale: the model's own groups


def test_lr_scale_multiplies_the_models_own_group_scale():
    model = tabular_model("cross_stitch")  # its units train at 100 x lr
    trainer = Trainer(model, TASKS, lr=0.01, lr_scale={"units.*": 0.5, "heads.*": 2.0}, progress=False, device="cpu")
    lrs = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    got = {n: lrs[id(p)] for n, p in model.named_parameters()}
    assert got["units.0.alpha"] == pytest.approx(0.01 * 100 * 0.5)
    assert got["heads.out.weight"] == pytest.approx(0.02) and got["columns.layers.0.linear.weight"] == 0.01


def test_lr_scale_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        Trainer(tabular_model(), TASKS, lr_scale={"bottom.*": 0.5, "trunk.*": 0.1}, progress=False, device="cpu")
    assert str(err.value).startswith("train.lr_scale: 'trunk.*' matches no parameter of the model (parameter names "
                                     "start with bottom.0, bottom.2, heads.out")
    with pytest.raises(ConfigError, match=r"train.lr_scale.bottom\.\*: Input should be greater than 0"):
        Trainer(tabular_model(), TASKS, lr_scale={"bottom.*": 0.0}, progress=False, device="cpu")
    with pytest.raises(ConfigError, match=r"train.lr_scale"):
        config_from_dict({"data": {"dataset": "synthetic_mmoe"}, "train": {"lr_scale": {"x": "fast"}}})
