"""The binary kind's optional accuracy metric: absent unless a threshold is set, a known answer at
that threshold, saved with the task, and a threshold outside (0, 1) refused."""

from __future__ import annotations

import pytest
import torch

from polytask.errors import ConfigError
from polytask.tasks import Task


def test_accuracy_only_with_a_threshold():
    assert Task("g", "binary").metrics == ("auc", "logloss")
    assert Task("g", "binary", threshold=0.5).metrics == ("auc", "logloss", "accuracy")


def test_accuracy_known_answer_at_the_threshold():
    logits = torch.tensor([-2.0, -0.1, 0.1, 2.0, 0.0])  # P = .12 .475 .525 .88 .5
    labels = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0])
    at_half = Task("g", "binary", threshold=0.5).metric("accuracy").fn(logits, labels)
    assert at_half == pytest.approx(3 / 5)  # rows 0, 2, 3 right; 0.5 >= 0.5 counts as positive
    at_03 = Task("g", "binary", threshold=0.3).metric("accuracy").fn(logits, labels)
    assert at_03 == pytest.approx(4 / 5)  # rows 0-3 right, row 4 (P = .5, label 0) wrong
    assert Task("g", "binary", threshold=0.5).to_dict()["threshold"] == 0.5


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_threshold_outside_the_unit_interval_is_refused(bad):
    with pytest.raises((ConfigError, ValueError), match="threshold"):
        Task("g", "binary", threshold=bad)
