"""AITM (Xi et al., KDD 2021): the calibration penalty's known values, the attention's weights and
output, gradient flow through the information transfer, the task order, and learning on a small
generated impression -> click -> purchase funnel."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SPEC, make_batch
from test_esmm import FUNNEL_TASKS, fit_funnel, funnel_table

from polytask.models import create_model
from polytask.models.aitm import AdaptiveInformationTransfer
from polytask.tasks import Task

TASKS = [Task("click"), Task("buy")]


def logit(p: list[float]) -> torch.Tensor:
    p_ = torch.tensor(p, dtype=torch.float64)
    return torch.log(p_) - torch.log1p(-p_)


# -- calibration penalty -------------------------------------------------------------------------------------
def test_calibration_penalty_is_zero_when_later_steps_are_no_more_likely():
    model = create_model("aitm", SPEC, TASKS)
    out = {"click": logit([0.5, 0.2, 0.9, 0.01]), "buy": logit([0.4, 0.2, 0.1, 0.001])}
    assert float(model.calibration_penalty(out)) == 0.0


def test_calibration_penalty_known_value():
    """p_click = (0.5, 0.2, 0.9), p_buy = (0.4, 0.5, 0.95): violations (0, 0.3, 0.05), mean 0.35/3;
    times the default weight 0.6: 0.07. Three steps add their pairs' violations per row."""
    model = create_model("aitm", SPEC, TASKS)
    assert model.calibration_weight == 0.6
    out = {"click": logit([0.5, 0.2, 0.9]), "buy": logit([0.4, 0.5, 0.95])}
    assert float(model.calibration_penalty(out)) == pytest.approx(0.07, abs=1e-12)
    three = create_model("aitm", SPEC, [Task("a"), Task("b"), Task("c")], {"calibration_weight": 1.0})
    out3 = {"a": logit([0.5, 0.2]), "b": logit([0.6, 0.1]), "c": logit([0.7, 0.3])}
    # row 1: (0.1) + (0.1); row 2: (0) + (0.2) -> mean 0.2
    assert float(three.calibration_penalty(out3)) == pytest.approx(0.2, abs=1e-12)


def test_calibration_penalty_is_the_models_regularization_term():
    """regularization() returns the penalty of the last forward pass under ``calibration``, with a
    gradient; weight 0 switches it off; a regression task in the sequence adds no term."""
    torch.manual_seed(0)
    model = create_model("aitm", SPEC, TASKS)
    batch = make_batch(SPEC, TASKS, 32)
    with torch.no_grad():  # make buy more likely than click on every row
        model.out.bias[1].fill_(5.0)
        model.out.bias[0].fill_(-5.0)
    out = model(batch.features)
    reg = model.regularization()
    assert set(reg) == {"calibration"}
    expected = 0.6 * (torch.sigmoid(out["buy"]) - torch.sigmoid(out["click"])).clamp_min(0).mean()
    torch.testing.assert_close(reg["calibration"], expected)
    assert reg["calibration"] > 0 and reg["calibration"].requires_grad
    off = create_model("aitm", SPEC, TASKS, {"calibration_weight": 0.0})
    off(batch.features)
    assert off.regularization() == {}
    mixed = create_model("aitm", SPEC, [Task("click"), Task("amount", kind="regression")])
    mixed(make_batch(SPEC, mixed.tasks, 4).features)
    assert mixed.regularization() == {}


# -- attention -------------------------------------------------------------------------------------------------
def test_attention_weights_sum_to_one_and_the_output_is_the_weighted_sum():
    """z = w_p h1(p) + w_q h1(q) with w = softmax(<h2(u), h3(u)> / sqrt(k)) over u in {p, q}."""
    torch.manual_seed(0)
    k = 6
    ait = AdaptiveInformationTransfer(k)
    p, q = torch.randn(5, k), torch.randn(5, k)
    z, w = ait(p, q)
    torch.testing.assert_close(w.sum(1), torch.ones(5))
    h1, h2, h3 = ait.h.weight.split(k, dim=0)  # each [k, k]: y = u @ W^T
    scores = torch.stack([((u @ h2.T) * (u @ h3.T)).sum(1) / math.sqrt(k) for u in (p, q)], 1)
    w_ref = torch.softmax(scores, 1)
    torch.testing.assert_close(w, w_ref)
    torch.testing.assert_close(z, w_ref[:, :1] * (p @ h1.T) + w_ref[:, 1:] * (q @ h1.T))


def test_diagnostics_report_the_attention_weights():
    torch.manual_seed(0)
    tasks = [Task("a"), Task("b"), Task("c")]
    model = create_model("aitm", SPEC, tasks)
    assert model.diagnostics() == {}
    model(make_batch(SPEC, tasks, 9).features)
    att = model.diagnostics()["attention"]
    assert set(att) == {"b", "c"}  # the first step has no transfer
    for w in att.values():
        assert 0 < w["transfer"] < 1 and w["transfer"] + w["own"] == pytest.approx(1.0)


# -- gradient flow ------------------------------------------------------------------------------------------------
def test_conversion_loss_reaches_the_click_tower_through_the_transfer():
    """The buy loss alone sends gradient into the click tower and the transfer layer (not into the
    click output layer); the click loss alone reaches neither the buy tower nor the transfer."""
    torch.manual_seed(0)
    model = create_model("aitm", SPEC, TASKS)
    batch = make_batch(SPEC, TASKS, 16)
    first = model.towers.layers[0].weight  # [tasks, in, hidden]: 0 = click, 1 = buy
    transfer = model.transfers[0][0].weight

    out = model(batch.features)
    TASKS[1].loss(out["buy"], batch.labels["buy"], batch.masks["buy"]).backward()
    assert first.grad[0].abs().sum() > 0 and first.grad[1].abs().sum() > 0
    assert transfer.grad.abs().sum() > 0
    assert model.out.weight.grad[0].abs().sum() == 0

    model.zero_grad(set_to_none=True)
    out = model(batch.features)
    TASKS[0].loss(out["click"], batch.labels["click"], batch.masks["click"]).backward()
    assert first.grad[0].abs().sum() > 0 and first.grad[1].abs().sum() == 0
    assert transfer.grad is None or transfer.grad.abs().sum() == 0


def test_task_order():
    """task_order sets the sequence: with (buy, click) the click loss reaches the buy tower."""
    torch.manual_seed(0)
    model = create_model("aitm", SPEC, TASKS, {"task_order": ["buy", "click"]})
    assert model.order == ["buy", "click"]
    batch = make_batch(SPEC, TASKS, 8)
    out = model(batch.features)
    assert list(out) == ["click", "buy"]  # outputs keep the configured order
    TASKS[0].loss(out["click"], batch.labels["click"], batch.masks["click"]).backward()
    assert model.towers.layers[0].weight.grad[0].abs().sum() > 0  # tower 0 is buy's
    with pytest.raises(ValueError, match="task_order"):
        create_model("aitm", SPEC, TASKS, {"task_order": ["click"]})


# -- learning ---------------------------------------------------------------------------------------------------------
def test_aitm_learns_the_funnel():
    """click -> purchase over all 3,000 impressions, 8 epochs (about a second): test AUC > 0.8 for
    CTR and > 0.75 for CTCVR (Bayes about 0.86 / 0.84; observed with seeds 0-2: 0.85 / 0.81-0.83);
    the calibration term and the attention weights are in the epoch log."""
    run = fit_funnel(funnel_table(3000), {"name": "aitm"}, tasks=[FUNNEL_TASKS[0], FUNNEL_TASKS[2]])
    test = run.metrics["test"]
    assert test["ctr"]["auc"] > 0.8 and test["ctcvr"]["auc"] > 0.75, test
    record = run.history[0]
    assert record["regularization"]["calibration"] >= 0
    w = record["diagnostics"]["attention"]["ctcvr"]
    assert w["transfer"] + w["own"] == pytest.approx(1.0)
