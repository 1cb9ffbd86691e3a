"""Optimiser construction: Adam/AdamW default to torch's fused kernel, which must train alike."""

import pytest
import torch

from polytask.errors import ConfigError
from polytask.train.optim import create_optimizer


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 3, generator=g)), torch.nn.Parameter(torch.randn(3, generator=g))]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_defaults_to_the_fused_kernel(name):
    opt = create_optimizer(name, _params(), {"lr": 1e-2})
    assert opt.defaults["fused"] is True


@pytest.mark.parametrize("options", [{"fused": False}, {"foreach": True}])
def test_the_user_choice_is_kept(options):
    opt = create_optimizer("adam", _params(), {"lr": 1e-2, **options})
    assert not opt.defaults["fused"]


def test_other_optimisers_and_unfusable_parameters_are_left_alone():
    assert not create_optimizer("adagrad", _params(), {"lr": 0.1}).defaults.get("fused")
    half = [torch.nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False)]
    assert not create_optimizer("adam", half, {"lr": 0.1}).defaults["fused"]


def test_fused_and_plain_adam_take_the_same_steps():
    """Twenty steps on the same gradients: the fused kernel's parameters match the plain loop's."""
    fused, plain = _params(), _params()
    opts = [create_optimizer("adamw", fused, {"lr": 0.05, "weight_decay": 0.01}),
            create_optimizer("adamw", plain, {"lr": 0.05, "weight_decay": 0.01, "fused": False})]
    for step in range(20):
        for ps, opt in zip((fused, plain), opts):
            opt.zero_grad()
            loss = sum(((p - step * 0.1) ** 2).sum() for p in ps)
            loss.backward()
            opt.step()
    for a, b, start in zip(fused, plain, _params()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert (a - start).abs().max() > 0.1  # they moved


def test_unknown_option_is_one_config_error():
    with pytest.raises(ConfigError, match="optimizer"):
        create_optimizer("adam", _params(), {"lr": 0.1, "fuse": True})
