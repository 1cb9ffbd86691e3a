"""The progress display: a plain line per epoch off a terminal (what `make demo | tee` and CI see),
rich bars with time remaining on a terminal, nothing when disabled."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

import polytask
from polytask.train.progress import ProgressBar, duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_duration():
    assert [duration(s) for s in (0.4, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_off_a_terminal_every_epoch_is_one_plain_line_with_loss_score_and_eta():
    out = io.StringIO()
    with ProgressBar(True, 3, 10, stream=out) as bar:
        for epoch in (1, 2, 3):
            bar.start_epoch(epoch)
            bar.end_epoch(epoch, {"train_loss": {"a": 0.25, "b": 0.5}}, "a.auc", 0.7 + epoch / 100, 0.73, 3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"epoch 1/3 \| train loss 0\.7500 \| val a\.auc 0\.7100 \(best 0\.7300, epoch 3\) \| \d+s \| eta \d+s",
                        lines[0]), lines[0]
    assert lines[2].endswith("eta 0s")
    assert "\x1b[" not in out.getvalue()  # no terminal control codes in a log file


def test_a_resumed_run_counts_its_time_remaining_from_where_it_started():
    out = io.StringIO()
    with ProgressBar(True, 10, 5, first_epoch=9, stream=out) as bar:
        bar.start_epoch(9)
        bar.end_epoch(9, {"train_loss": {"a": 1.0}})
    assert out.getvalue().startswith("epoch 9/10 | train loss 1.0000 | ")


def test_on_a_terminal_bars_show_the_time_remaining():
    out = Terminal()
    with ProgressBar(True, 2, 4, stream=out) as bar:
        bar.start_epoch(1)
        bar.end_epoch(1, {"train_loss": {"a": 0.5}}, "loss", 0.4, 0.4, 1)
    text = out.getvalue()
    assert "eta" in text and "epoch 1: train loss 0.5000, val loss 0.4000 (best 0.4000, epoch 1)" in text


def test_disabled_prints_nothing(capsys):
    with ProgressBar(False, 2, 4) as bar:
        bar.start_epoch(1)
        bar.end_epoch(1, {"train_loss": {"a": 0.5}})
    assert capsys.readouterr().out == ""


def test_training_off_a_terminal_prints_one_line_per_epoch(capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    data = pd.DataFrame({"x": x, "a": (x > 0).astype(np.int64)})
    polytask.fit(train=data, validation=data, tasks=[{"name": "a"}], model="shared_bottom", epochs=3, patience=None,
                 progress=True, device="cpu")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" | ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(" | val " in line and "eta" in line for line in lines), lines


def test_batch_progress_shows_a_bar_over_predict_raw_on_a_terminal():
    import torch

    from polytask.data.table import TensorTable
    from polytask.train.evaluation import predict_raw
    from polytask.train.progress import batch_progress

    class Model(torch.nn.Module):
        def forward(self, features):
            return {"a": features["x"].sum(-1)}

    table = TensorTable({"x": torch.ones(10, 2)}, {}, {}, {})
    seen = []
    out = Terminal()
    with batch_progress("predicting", stream=out):
        from polytask.train.progress import _reporter

        inner = _reporter.get()
        _reporter.set(lambda done, total: (seen.append((done, total)), inner(done, total)))
        predict_raw(Model(), table, ["a"], batch_size=4)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert "predicting" in out.getvalue()
    seen.clear()
    predict_raw(Model(), table, ["a"], batch_size=4)  # outside: nothing reports
    assert seen == []
