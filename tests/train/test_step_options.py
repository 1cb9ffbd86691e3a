"""Trainer step options: gradient accumulation equals one big batch, bf16 autocast trains, L1/L2
penalties are separate logged loss terms, task weights and gradient cosines are logged every N
steps, and models that change structure get a new optimiser."""

from __future__ import annotations

import json

import pytest
import torch

from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.trainer import Trainer

TASKS = [Task("a", kind="binary"), Task("b", kind="regression")]
SPEC = InputSpec(numeric_dim=4)


def _table(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    a = (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).float()
    b = x[:, 1] * 2 + 0.1 * torch.randn(n, generator=g)
    ones = torch.ones(n, dtype=torch.bool)
    return TensorTable({"numeric": x}, {"a": a, "b": b}, {"a": ones, "b": ones.clone()})


def _params_after(**options):
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, epochs=1, patience=None, progress=False, optimizer="sgd", lr=0.1, seed=0, **options)
    trainer.fit(_table())
    return {k: v.clone() for k, v in model.state_dict().items()}, trainer


def test_accumulating_two_half_batches_equals_one_full_batch():
    """The loader shuffles with the same seed, so two 32-row micro-batches are the two halves of
    the 64-row batch: SGD steps must be identical."""
    full, _ = _params_after(batch_size=64)
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, epochs=1, patience=None, progress=False, optimizer="sgd", lr=0.1, seed=0,
                      batch_size=32, accumulate=2)
    # same row order as 64-row batches: the loader's permutation depends only on the seed and row count
    trainer.fit(_table())
    assert trainer.step == 4  # 256 rows / 64 per optimiser step
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, full[k], rtol=1e-5, atol=1e-6)


def test_bf16_autocast_trains_with_finite_parameters():
    params, trainer = _params_after(batch_size=32, amp="bf16")
    assert all(torch.isfinite(v).all() for v in params.values())
    assert trainer.history[-1]["train_loss"]["a"] < 1.0


def test_fp16_needs_cuda():
    """fp16 with a gradient scaler is for CUDA devices; asked for on the CPU it is a config error
    (whether or not the machine has a GPU)."""
    model = create_model("shared_bottom", SPEC, TASKS)
    with pytest.raises(ConfigError, match="train.amp"):
        Trainer(model, TASKS, amp="fp16", device="cpu")


def test_l1_and_l2_are_logged_as_their_own_terms_and_shrink_weights():
    plain, _ = _params_after(batch_size=32)
    shrunk, trainer = _params_after(batch_size=32, l1=1e-3, l2=1e-1)
    reg = trainer.history[-1]["regularization"]
    assert set(reg) == {"l1", "l2"} and reg["l1"] > 0 and reg["l2"] > 0
    w = "bottom.0.weight"
    assert shrunk[w].abs().sum() < plain[w].abs().sum()


def test_weights_and_gradient_cosines_are_logged_every_n_steps(tmp_path):
    log = tmp_path / "log.jsonl"
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    Trainer(model, TASKS, epochs=2, batch_size=32, patience=None, progress=False, log_every=3, log_path=log).fit(_table())
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [s for r in records for s in r["steps"]]
    assert [s["step"] for s in steps] == [0, 3, 6, 9, 12, 15]
    first = steps[0]
    assert first["weights"] == {"a": 1.0, "b": 1.0}
    cos = first["cosine"]
    assert cos["tasks"] == ["a", "b"]
    m = torch.tensor(cos["matrix"])
    torch.testing.assert_close(m.diagonal(), torch.ones(2))
    assert -1.0 <= float(m[0, 1]) <= 1.0


def test_logged_cosine_matches_the_task_gradients():
    from polytask.weighting import StepContext
    from polytask.weighting.gradient import task_gradients

    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, progress=False)
    batch = _table().slice(0, 32)
    losses, _ = trainer._forward_losses(batch)
    cos = trainer._task_cosines(losses, StepContext(model=model, masks=batch.masks))
    g = task_gradients([losses["a"], losses["b"]], model.shared_parameters())
    expected = torch.nn.functional.cosine_similarity(g[0], g[1], dim=0)
    assert abs(cos["matrix"][0][1] - float(expected)) < 1e-5
    torch.testing.assert_close(torch.tensor(cos["norms"]), g.norm(dim=1))


def test_a_gradient_weighting_logs_the_same_cosines_and_norms():
    from polytask.weighting import StepContext
    from polytask.weighting.gradient import task_gradients
    from polytask.weighting.pcgrad import PCGrad

    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8]})
    trainer = Trainer(model, TASKS, progress=False)
    batch = _table().slice(0, 32)
    losses, _ = trainer._forward_losses(batch)
    g = task_gradients([losses["a"], losses["b"]], model.shared_parameters())
    weighting = PCGrad(TASKS)
    weighting.setup(model)
    ctx = StepContext(model=model, masks=batch.masks, record=True)
    weighting.backward(losses, {}, ctx)
    cos = ctx.log["cosine"]
    expected = torch.nn.functional.cosine_similarity(g[0], g[1], dim=0)
    assert abs(cos["matrix"][0][1] - float(expected)) < 1e-5
    torch.testing.assert_close(torch.tensor(cos["norms"]), g.norm(dim=1))
