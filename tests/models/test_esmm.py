"""ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR x pCVR exactly, no direct CVR loss, pCVR for every
impression, shared vs separate embeddings (ESMM-NS), the BASE baseline's click-only CVR loss, and
learning on a small generated impression -> click -> purchase funnel."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import SPEC, make_batch

import polytask
from polytask.models import create_model
from polytask.models.esmm import product_logit
from polytask.tasks import Task
from polytask.train.trainer import Trainer

ROLE_TASKS = [Task("ctr"), Task("cvr", where="click == 1"), Task("ctcvr")]


def funnel_table(n: int = 3000, seed: int = 0) -> pa.Table:
    """Impressions with ``click ~ Bernoulli(sigmoid(z_click))`` and, independently given x,
    ``conversion_if_clicked ~ Bernoulli(sigmoid(z_cvr))``; ``purchase = click * conversion_if_clicked``
    (observed only after a click). ``p_cvr`` is the true CVR of every impression."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    cat = rng.integers(0, 5, size=n)
    shift = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])[cat]
    p_click = 1 / (1 + np.exp(-(1.5 * x[:, 0] + x[:, 1] + shift)))
    p_cvr = 1 / (1 + np.exp(-(1.5 * x[:, 2] - x[:, 1] + shift - 0.5)))
    click = (rng.random(n) < p_click).astype(np.int8)
    conv = (rng.random(n) < p_cvr).astype(np.int8)
    return pa.table({f"x{i}": x[:, i] for i in range(4)} | {
        "c": [f"c{v}" for v in cat], "click": click, "purchase": click * conv,
        "conversion_if_clicked": conv, "p_cvr": p_cvr.astype(np.float32),
    })


FEATURES = {"numeric": ["x0", "x1", "x2", "x3"], "categorical": ["c"]}
FUNNEL_TASKS = [
    {"name": "ctr", "label": "click"},
    {"name": "cvr", "label": "purchase", "where": "click == 1"},
    {"name": "ctcvr", "label": "purchase"},
]


def fit_funnel(table: pa.Table, model: dict, tasks=FUNNEL_TASKS, epochs: int = 8, **kw):
    n = len(table)
    a, b = int(0.7 * n), int(0.85 * n)
    return polytask.fit(train=table.slice(0, a), validation=table.slice(a, b - a), test=table.slice(b),
                        features=FEATURES, tasks=tasks, model=model, epochs=epochs, batch_size=128,
                        optimizer={"name": "adam", "lr": 0.01}, progress=False, seed=0, **kw)


# -- pCTCVR = pCTR x pCVR ---------------------------------------------------------------------------
def test_ctcvr_logit_is_the_logit_of_the_product_even_at_extreme_logits():
    """sigmoid(product_logit(a, b)) == sigmoid(a) sigmoid(b) and sigmoid(-product_logit) ==
    1 - sigmoid(a) sigmoid(b) (written as sigmoid(-a) + sigmoid(a) sigmoid(-b)), to 1e-12 relative in
    float64 over a grid that includes +-30, and finite (with finite gradients) at +-30 and +-200 in float32."""
    v = torch.tensor([-30.0, -12.0, -3.0, -0.5, 0.0, 0.7, 4.0, 15.0, 30.0], dtype=torch.float64)
    a, b = torch.meshgrid(v, v, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    out = product_logit(a, b)
    assert out.dtype == torch.float64
    p = torch.sigmoid(a) * torch.sigmoid(b)
    one_minus_p = torch.sigmoid(-a) + torch.sigmoid(a) * torch.sigmoid(-b)
    torch.testing.assert_close(torch.sigmoid(out), p, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.sigmoid(-out), one_minus_p, rtol=1e-12, atol=0)
    # float32, far beyond +-30: finite values and gradients, still the product
    e = torch.tensor([-200.0, -30.0, 0.0, 30.0, 200.0])
    a32, b32 = (t.reshape(-1).clone().requires_grad_() for t in torch.meshgrid(e, e, indexing="ij"))
    out32 = product_logit(a32, b32)
    out32.sum().backward()
    assert torch.isfinite(out32).all() and torch.isfinite(a32.grad).all() and torch.isfinite(b32.grad).all()
    ref = torch.sigmoid(a32.double()) * torch.sigmoid(b32.double())
    torch.testing.assert_close(torch.sigmoid(out32.double()), ref, rtol=1e-4, atol=0)
    # a = b = 30: pCTCVR = 1 - 1.9e-13 is represented as a logit (about 29.3), not rounded to 1
    assert 29.0 < float(product_logit(torch.tensor(30.0), torch.tensor(30.0))) < 29.5


def test_model_ctcvr_output_is_pctr_times_pcvr():
    """In the model, with the towers' logits pushed to +-30: sigmoid(ctcvr) == sigmoid(ctr) * sigmoid(cvr)."""
    torch.manual_seed(0)
    model = create_model("esmm", SPEC, ROLE_TASKS)
    batch = make_batch(SPEC, ROLE_TASKS, 16)
    with torch.no_grad():
        out = model(batch.features)
        torch.testing.assert_close(torch.sigmoid(out["ctcvr"]), torch.sigmoid(out["ctr"]) * torch.sigmoid(out["cvr"]))
        bias = model.towers.out.bias  # [towers, 1, 1]: 0 = CTR, 1 = CVR
        for ctr, cvr in [(30.0, 30.0), (-30.0, -30.0), (30.0, -30.0), (-30.0, 30.0)]:
            bias[0].fill_(ctr - out["ctr"].mean())
            bias[1].fill_(cvr - out["cvr"].mean())
            o = model(batch.features)
            assert all(torch.isfinite(o[k]).all() for k in o)
            ref = torch.sigmoid(o["ctr"].double()) * torch.sigmoid(o["cvr"].double())
            torch.testing.assert_close(torch.sigmoid(o["ctcvr"].double()), ref, rtol=1e-4, atol=0)


# -- no direct CVR loss -------------------------------------------------------------------------------
def test_cvr_is_not_in_the_loss():
    """The model declares ctr and ctcvr as its trained tasks; the trainer and its weighting see only those."""
    model = create_model("esmm", SPEC, ROLE_TASKS)
    assert model.loss_task_names() == ["ctr", "ctcvr"]
    trainer = Trainer(model, ROLE_TASKS, progress=False)
    assert [t.name for t in trainer.loss_tasks] == ["ctr", "ctcvr"]
    assert trainer.weighting.task_names == ["ctr", "ctcvr"]


def test_changing_cvr_labels_changes_no_gradient():
    """Training end to end twice, with the cvr task's labels (its own column) flipped the second time,
    gives bit-identical weights; the epoch log has losses for ctr and ctcvr only."""
    table = funnel_table(1500)
    flipped = table.append_column("cvr_label", pa.array(1 - np.asarray(table["purchase"]), pa.int8()))
    table = table.append_column("cvr_label", table["purchase"])
    tasks = [FUNNEL_TASKS[0], {"name": "cvr", "label": "cvr_label", "where": "click == 1"}, FUNNEL_TASKS[2]]
    runs = [fit_funnel(t, {"name": "esmm"}, tasks=tasks, epochs=2) for t in (table, flipped)]
    assert set(runs[0].history[0]["train_loss"]) == {"ctr", "ctcvr"}
    a, b = runs[0].model.state_dict(), runs[1].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the cvr metrics did see the flipped labels (the test is not vacuous)
    assert runs[0].metrics["test"]["cvr"]["auc"] == pytest.approx(1 - runs[1].metrics["test"]["cvr"]["auc"], abs=1e-6)


# -- pCVR on the entire space --------------------------------------------------------------------------
def test_pcvr_is_predicted_for_every_impression():
    """run.predict gives pCVR for all rows, clicked or not, in (0, 1), and pCTCVR = pCTR x pCVR."""
    table = funnel_table(1200)
    run = fit_funnel(table, {"name": "esmm"}, epochs=1)
    pred = run.predict(table)
    assert pred["cvr"].shape == (len(table),)
    assert np.isfinite(pred["cvr"]).all() and ((pred["cvr"] > 0) & (pred["cvr"] < 1)).all()
    np.testing.assert_allclose(pred["ctcvr"], pred["ctr"] * pred["cvr"], rtol=1e-5)


# -- ESMM vs ESMM-NS -----------------------------------------------------------------------------------
def test_esmm_shares_one_embedding_and_esmm_ns_gives_each_tower_its_own():
    tasks = ROLE_TASKS + [Task("other")]
    batch = make_batch(SPEC, tasks, 12)
    shared = create_model("esmm", SPEC, tasks)
    emb = shared.input.categorical.weight
    assert any(p is emb for p in shared.shared_parameters())
    # the CTR loss and the CTCVR loss both reach the one table
    for name in ("ctr", "ctcvr"):
        shared.zero_grad()
        t = {t.name: t for t in tasks}[name]
        t.loss(shared(batch.features)[name], batch.labels[name], batch.masks[name]).backward()
        assert emb.grad is not None and emb.grad.abs().sum() > 0

    ns = create_model("esmm", SPEC, tasks, {"shared_embeddings": False})
    tables = [enc.categorical.weight for enc in ns.input]
    assert len(tables) == 3  # CTR, CVR, other
    assert len({id(w) for w in tables}) == 3 and len({w.data_ptr() for w in tables}) == 3
    assert ns.shared_parameters() == []
    # the CTR loss reaches only the CTR tower's table
    out = ns(batch.features)
    ROLE_TASKS[0].loss(out["ctr"], batch.labels["ctr"], batch.masks["ctr"]).backward()
    assert tables[0].grad.abs().sum() > 0
    assert all(w.grad is None or w.grad.abs().sum() == 0 for w in tables[1:])


# -- roles ----------------------------------------------------------------------------------------------
def test_missing_or_non_binary_roles_are_errors_naming_the_hyperparameter():
    with pytest.raises(ValueError, match="ctr_task='ctr'"):
        create_model("esmm", SPEC, [Task("click"), Task("ctcvr")])
    with pytest.raises(ValueError, match="ctcvr_task='ctcvr'"):
        create_model("esmm", SPEC, [Task("ctr"), Task("cvr")])
    with pytest.raises(ValueError, match="cvr_task='cvr' must be a binary task"):
        create_model("esmm", SPEC, [Task("ctr"), Task("cvr", kind="regression"), Task("ctcvr")])
    model = create_model("esmm", SPEC, [Task("click"), Task("buy")], {"ctr_task": "click", "ctcvr_task": "buy"})
    assert model.loss_task_names() == ["click", "buy"]  # no cvr task configured: nothing excluded


# -- BASE: a CVR model on clicked impressions only -------------------------------------------------------
def test_base_cvr_loss_ignores_unclicked_rows():
    """BASE = single_task with a cvr task ``where: click == 1``: changing the purchase labels of
    unclicked rows leaves the trained weights bit-identical; changing one clicked row's label does not."""
    table = funnel_table(1200)
    click = np.asarray(table["click"])
    purchase = np.asarray(table["purchase"])
    tasks = [{"name": "cvr", "label": "purchase", "where": "click == 1"}]

    def with_purchase(values: np.ndarray) -> pa.Table:
        return table.set_column(table.schema.get_field_index("purchase"), "purchase", pa.array(values, pa.int8()))

    unclicked_changed = np.where(click == 0, 1 - purchase, purchase)
    first_clicked = int(np.flatnonzero(click == 1)[0])
    clicked_changed = purchase.copy()
    clicked_changed[first_clicked] = 1 - clicked_changed[first_clicked]
    runs = [fit_funnel(t, {"name": "single_task"}, tasks=tasks, epochs=2)
            for t in (table, with_purchase(unclicked_changed), with_purchase(clicked_changed))]
    base, same, other = (r.model.state_dict() for r in runs)
    assert all(torch.equal(base[k], same[k]) for k in base)
    assert not all(torch.equal(base[k], other[k]) for k in base)


# -- learning ----------------------------------------------------------------------------------------------
def test_esmm_learns_the_funnel():
    """3,000 impressions, 8 epochs (under a few seconds): test AUC > 0.8 for CTR and > 0.75 for
    CTCVR, for CVR on clicked rows and for pCVR against the simulated conversion-if-clicked of *all*
    test impressions (no CVR label entered the loss). The Bayes AUCs of this funnel are about 0.86
    (CTR), 0.84 (CTCVR) and 0.86 (CVR); chance is 0.5. Observed with seeds 0-2: 0.85, 0.81-0.83,
    0.83-0.86, 0.85-0.86."""
    from sklearn.metrics import roc_auc_score

    table = funnel_table(3000)
    run = fit_funnel(table, {"name": "esmm"})
    test = run.metrics["test"]
    assert test["ctr"]["auc"] > 0.8 and test["ctcvr"]["auc"] > 0.75, test
    assert test["cvr"]["auc"] > 0.75, test
    held_out = table.slice(int(0.85 * len(table)))
    auc_all = roc_auc_score(np.asarray(held_out["conversion_if_clicked"]), run.predict(held_out)["cvr"])
    assert auc_all > 0.75, auc_all
