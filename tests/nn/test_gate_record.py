"""GateRecord: the logged gate diagnostics are means over a whole evaluation pass, not its last batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import SPEC, make_batch, make_tasks  # noqa: E402

from polytask.data.table import TensorTable  # noqa: E402
from polytask.models import create_model  # noqa: E402
from polytask.nn.experts import GateRecord, Gates, gate_entropy  # noqa: E402
from polytask.train.evaluation import evaluate_table  # noqa: E402


def _rows(weights: torch.Tensor) -> torch.Tensor:
    """Per-row entropy [G, B] written out."""
    return -(weights * weights.log()).sum(-1)


@pytest.mark.parametrize("flush", [1, 7, GateRecord.FLUSH])  # reduced every batch, every few, at the end
def test_eval_pass_mean_over_batches_of_different_sizes(flush, monkeypatch):
    monkeypatch.setattr(GateRecord, "FLUSH", flush)
    record = GateRecord().eval()
    a = torch.softmax(torch.randn(2, 5, 3), -1)
    b = torch.softmax(torch.randn(2, 1, 3), -1)  # a small last batch
    c = torch.softmax(torch.randn(2, 2, 3), -1)
    for w in (a, b, c):
        record.update(w)
    mean, entropy = record.summary()
    assert record.rows == 8
    both = torch.cat([a, b, c], 1)
    torch.testing.assert_close(mean, both.mean(1))
    torch.testing.assert_close(entropy, _rows(both).mean(1))
    assert torch.equal(record.last, c)


def test_each_change_of_mode_starts_a_new_pass_and_training_keeps_the_last_batch_only():
    record = GateRecord().eval()
    record.update(torch.softmax(torch.randn(1, 4, 3), -1))
    record.train()
    c = torch.softmax(torch.randn(1, 6, 3), -1)
    record.update(c)  # training: no accumulation, the summary is the last batch's
    mean, entropy = record.summary()
    torch.testing.assert_close(mean, c.mean(1))
    torch.testing.assert_close(entropy, gate_entropy(c))
    record.eval()
    d = torch.softmax(torch.randn(1, 2, 3), -1)
    record.update(d)
    torch.testing.assert_close(record.summary()[0], d.mean(1))  # the earlier eval batch is gone
    assert GateRecord().summary() is None


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
def test_nothing_is_recorded_while_traced():
    gates = Gates(4, 3, 2).eval()
    torch.jit.trace(gates, torch.randn(7, 4), check_trace=False)  # the check would rerun it eagerly
    assert gates.record.rows == 0 and gates.record.summary()[0].shape == (2, 3)  # the traced batch only as "last"


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_logged_gates_are_the_mean_over_the_whole_validation_split(name):
    """evaluate_table in batches of 8 over 21 rows, then diagnostics(): equal to the gates of one
    pass over all 21 rows at once (the last batch alone holds 5 rows and would differ)."""
    torch.manual_seed(0)
    tasks = make_tasks(2)
    model = create_model(name, SPEC, tasks, {"num_experts": 3} if name == "mmoe" else {})
    batch = make_batch(SPEC, tasks, 21)
    table = TensorTable(batch.features, batch.labels, batch.masks)
    evaluate_table(model, tasks, table, batch_size=8)
    in_batches = model.diagnostics()
    evaluate_table(model, tasks, table, batch_size=21)
    whole = model.diagnostics()
    for key in ("gates", "gate_entropy"):
        assert torch.allclose(torch.tensor(str_values(in_batches[key])), torch.tensor(str_values(whole[key])), atol=1e-6)
    evaluate_table(model, tasks, TensorTable(*(dict((k, v[16:]) for k, v in d.items())
                                                for d in (batch.features, batch.labels, batch.masks))), batch_size=8)
    last_only = model.diagnostics()
    assert not torch.allclose(torch.tensor(str_values(last_only["gates"])), torch.tensor(str_values(whole["gates"])),
                              atol=1e-4)


def str_values(nested) -> list[float]:
    """Every number of a nested dict/list, in key order."""
    if isinstance(nested, dict):
        return [v for k in sorted(nested) for v in str_values(nested[k])]
    if isinstance(nested, (list, tuple)):
        return [v for x in nested for v in str_values(x)]
    return [float(nested)]
