"""The task kinds' classification scores against scikit-learn's definitions (random data with ties,
absent classes, saturated logits)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from polytask.tasks.scores import accuracy, auroc, average_ranks, macro_f1


def test_average_ranks_share_ties():
    torch.testing.assert_close(average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0])),
                               torch.tensor([4.0, 1.0, 4.0, 2.0, 4.0], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_is_sklearns_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # rounded: many ties
    assert auroc(torch.tensor(s), torch.tensor(y)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_known_answers():
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5
    assert math.isnan(auroc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])))
    # logits beyond float32's sigmoid saturation keep their order (a sigmoid first would tie them: 0.5)
    assert auroc(torch.tensor([30.0, 40.0]), torch.tensor([0, 1])) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_macro_f1_are_sklearns(seed):
    rng = np.random.default_rng(seed)
    k = 6
    y = rng.integers(0, k - 1, 300)  # class 5 never a label; it may be predicted
    logits = rng.normal(size=(300, k))
    logits[np.arange(300), y] += 1.0
    pred = logits.argmax(1)
    o, t = torch.tensor(logits), torch.tensor(y)
    assert accuracy(o, t) == pytest.approx(accuracy_score(y, pred))
    assert macro_f1(o, t, k) == pytest.approx(f1_score(y, pred, average="macro"))


def test_macro_f1_leaves_out_classes_neither_labelled_nor_predicted():
    logits = torch.tensor([[2.0, 1, 0, 0], [0, 3, 1, 0], [1, 0, 0.5, 0], [0, 0, 1.0, 0]])  # predicts 0, 1, 0, 2
    labels = torch.tensor([0, 1, 1, 0])
    # class 0: 2*1/(2+2) = 0.5; class 1: 2*1/(1+2) = 2/3; class 2: 0; class 3 absent
    assert macro_f1(logits, labels, 4) == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_training_and_evaluating_never_import_torchmetrics():
    import subprocess
    import sys

    code = ("import sys, numpy as np, pandas as pd, polytask\n"
            "x = np.random.default_rng(0).normal(size=200)\n"
            "d = pd.DataFrame({'x': x, 'a': (x > 0).astype(int), 'c': np.arange(200) % 3})\n"
            "run = polytask.fit(train=d, validation=d, tasks=[{'name': 'a'}, {'name': 'c', 'kind': 'multiclass'}],"
            " model='shared_bottom', epochs=1, progress=False)\n"
            "run.evaluate(d)\n"
            "print(sorted(m for m in ('torchmetrics', 'scipy', 'scipy.signal') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
