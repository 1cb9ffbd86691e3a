"""Masked task losses: known answers computed by hand, normalisation, weights, empty masks and
placeholders that must not leak into the loss or its gradient."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.registry import TASK_KINDS
from polytask.tasks import Task


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(logit: float, y: float) -> float:
    p = _sigmoid(logit)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _ce(logits: list[float], y: int) -> float:
    return -logits[y] + math.log(sum(math.exp(v) for v in logits))


MASK_ALL = torch.tensor([True, True, True])


# -- known answers ------------------------------------------------------------------------------
def test_binary_loss_is_bce_by_hand():
    logits = [0.3, -1.2, 2.0]
    labels = [1.0, 0.0, 0.0]
    loss = Task("ctr", "binary").loss(torch.tensor(logits), torch.tensor(labels), MASK_ALL)
    expected = sum(_bce(x, y) for x, y in zip(logits, labels)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_regression_loss_is_mse():
    out, lab = torch.tensor([1.0, 2.0, -3.0]), torch.tensor([0.5, 2.0, 1.0])
    loss = Task("y", "regression").loss(out, lab, MASK_ALL)
    assert loss.item() == pytest.approx((0.25 + 0.0 + 16.0) / 3)


def test_multiclass_loss_is_cross_entropy_by_hand():
    logits = [[1.0, 0.0, -1.0], [0.2, 0.4, 3.0], [-2.0, 1.5, 0.0]]
    labels = [0, 2, 0]
    task = Task("c", "multiclass", num_classes=3)
    loss = task.loss(torch.tensor(logits), torch.tensor(labels), MASK_ALL)
    expected = sum(_ce(row, y) for row, y in zip(logits, labels)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# -- normalisation and weights ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_normalised_by_labelled_rows_not_batch_size(kind):
    out = torch.tensor([0.5, -0.7, 1.1, 3.0, -2.0])
    lab = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    mask = torch.tensor([True, False, True, False, False])
    task = Task("t", kind)
    loss = task.loss(out, lab, mask)
    # the same as the unmasked loss on the two labelled rows alone
    alone = task.loss(out[mask], lab[mask], torch.ones(2, dtype=torch.bool))
    assert loss.item() == pytest.approx(alone.item(), rel=1e-6)
    if kind == "binary":
        assert loss.item() == pytest.approx((_bce(0.5, 1) + _bce(1.1, 1)) / 2, rel=1e-6)
    else:
        assert loss.item() == pytest.approx((0.25 + 0.01) / 2, rel=1e-5)


def test_multiclass_normalised_by_labelled_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    lab = torch.tensor([0, 1, 1])
    mask = torch.tensor([True, False, True])
    loss = Task("c", "multiclass", num_classes=2).loss(logits, lab, mask)
    expected = (_ce([2.0, 0.0], 0) + _ce([0.0, 1.0], 1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_per_row_weights_weighted_mean_over_labelled_rows():
    out = torch.tensor([1.0, 2.0, 3.0, 4.0])
    lab = torch.zeros(4)
    mask = torch.tensor([True, True, False, True])
    w = torch.tensor([1.0, 3.0, 100.0, 0.5])
    loss = Task("y", "regression").loss(out, lab, mask, w)
    # sum_i m_i w_i l_i / sum_i m_i w_i; the masked row's weight (100) must not count anywhere
    expected = (1 * 1 + 3 * 4 + 0.5 * 16) / (1 + 3 + 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_integer_weights_equal_duplicated_rows():
    out = torch.tensor([0.3, -0.4, 1.5])
    lab = torch.tensor([1.0, 0.0, 0.0])
    task = Task("b", "binary")
    weighted = task.loss(out, lab, MASK_ALL, torch.tensor([2.0, 1.0, 3.0]))
    dup = task.loss(out.repeat_interleave(torch.tensor([2, 1, 3])), lab.repeat_interleave(torch.tensor([2, 1, 3])),
                    torch.ones(6, dtype=torch.bool))
    assert weighted.item() == pytest.approx(dup.item(), rel=1e-6)


# -- empty masks and placeholders ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["binary", "regression", "multiclass"])
@pytest.mark.parametrize("weighted", [False, True])
def test_entirely_masked_task_gives_zero_loss_and_zero_grads(kind, weighted):
    task = Task("t", kind, num_classes=3 if kind == "multiclass" else None)
    shape = (4, 3) if kind == "multiclass" else (4,)
    out = torch.randn(shape, requires_grad=True)
    lab = torch.tensor([0, 1, 2, 0]) if kind == "multiclass" else torch.tensor([0.0, 1.0, 1.0, 0.0])
    mask = torch.zeros(4, dtype=torch.bool)
    loss = task.loss(out, lab, mask, torch.rand(4) if weighted else None)
    assert loss.item() == 0.0
    assert torch.isfinite(loss)
    assert loss.requires_grad  # still attached, so summing task losses and backward works
    loss.backward()
    assert out.grad is not None
    assert torch.equal(out.grad, torch.zeros_like(out))


@pytest.mark.parametrize("placeholder", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_nonfinite_placeholder_label_does_not_leak(kind, placeholder):
    task = Task("t", kind)
    out = torch.tensor([0.2, -0.3, 0.9], requires_grad=True)
    lab = torch.tensor([1.0, placeholder, 0.0])
    mask = torch.tensor([True, False, True])
    loss = task.loss(out, lab, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(out.grad).all()
    assert out.grad[1] == 0.0
    # identical to the loss with a harmless placeholder
    ref_out = out.detach().clone().requires_grad_(True)
    ref = task.loss(ref_out, torch.tensor([1.0, 0.0, 0.0]), mask)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item())
    assert torch.allclose(out.grad, ref_out.grad)


@pytest.mark.parametrize("kind", ["binary", "regression", "multiclass"])
def test_nonfinite_output_in_unlabelled_row_does_not_leak(kind):
    task = Task("t", kind, num_classes=2 if kind == "multiclass" else None)
    if kind == "multiclass":
        out = torch.tensor([[0.1, 0.2], [float("nan"), float("inf")], [0.3, -0.1]], requires_grad=True)
        lab = torch.tensor([1, 0, 0])
    else:
        out = torch.tensor([0.1, float("nan"), 0.3], requires_grad=True)
        lab = torch.tensor([1.0, 0.0, 0.0])
    mask = torch.tensor([True, False, True])
    loss = task.loss(out, lab, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(out.grad).all()
    assert (out.grad[1] == 0).all()


def test_multiclass_negative_placeholder_label_in_unlabelled_row():
    """A -1 placeholder (a common 'no class' marker) must not break cross-entropy."""
    task = Task("c", "multiclass", num_classes=3)
    out = torch.randn(3, 3, requires_grad=True)
    mask = torch.tensor([True, False, True])
    loss = task.loss(out, torch.tensor([2, -1, 0]), mask)
    ref = task.loss(out, torch.tensor([2, 0, 0]), mask)
    assert loss.item() == pytest.approx(ref.item())
    loss.backward()
    assert torch.isfinite(out.grad).all() and (out.grad[1] == 0).all()


def test_nan_weight_in_unlabelled_row_does_not_leak():
    task = Task("y", "regression")
    out = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = torch.tensor([True, False, True])
    loss = task.loss(out, torch.zeros(3), mask, torch.tensor([1.0, float("nan"), 1.0]))
    assert loss.item() == pytest.approx((1 + 9) / 2)
    loss.backward()
    assert torch.isfinite(out.grad).all()


def test_gradient_matches_hand_derivative():
    """d/dx of the masked BCE mean is (sigmoid(x) - y) / n_labelled on labelled rows, 0 elsewhere."""
    out = torch.tensor([0.4, -1.0, 2.0, 0.0], requires_grad=True)
    lab = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mask = torch.tensor([True, True, False, True])
    Task("b", "binary").loss(out, lab, mask).backward()
    expected = torch.where(mask, (torch.sigmoid(out.detach()) - lab) / 3, torch.zeros(4))
    assert torch.allclose(out.grad, expected, atol=1e-7)


# -- Task ---------------------------------------------------------------------------------------
def test_unknown_kind_is_an_error_naming_it():
    with pytest.raises(ValueError, match="no_such_kind"):
        Task("t", "no_such_kind")


def test_label_defaults_to_name():
    assert Task("ctr").label == "ctr"
    assert Task("ctr", label="click").label == "click"


def test_output_dim_per_kind():
    assert Task("a", "binary").output_dim == 1
    assert Task("b", "regression").output_dim == 1
    assert Task("c", "multiclass", num_classes=7).output_dim == 7
    with pytest.raises(ValueError):
        Task("d", "multiclass").output_dim  # noqa: B018
    with pytest.raises(ValueError):
        Task("e", "multiclass", num_classes=1).output_dim  # noqa: B018


def test_default_metrics_and_predict():
    assert Task("a", "binary").metrics == ("auc", "logloss")
    assert Task("b", "regression").metrics == ("rmse", "mae")
    assert Task("c", "multiclass", num_classes=3).metrics == ("accuracy", "macro_f1")
    x = torch.tensor([0.0, 2.0])
    assert torch.allclose(Task("a", "binary").predict(x), torch.sigmoid(x))
    assert torch.equal(Task("b", "regression").predict(x), x)
    probs = Task("c", "multiclass", num_classes=3).predict(torch.randn(4, 3))
    assert torch.allclose(probs.sum(-1), torch.ones(4))
    assert set(TASK_KINDS.names()) >= {"binary", "regression", "multiclass"}


def test_to_dict_round_trip():
    t = Task("c", "multiclass", label="col", num_classes=3, where="click == 1", weight=2.0, classes=["a", "b", "c"])
    assert Task(**t.to_dict()) == t
