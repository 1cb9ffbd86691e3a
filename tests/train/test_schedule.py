"""Training schedules (joint, round_robin, jmt) and token batches cut to their longest text."""

from __future__ import annotations

import pytest
import torch

from polytask.data.table import TensorTable
from polytask.tasks import Task
from polytask.train.schedule import make_schedule

TASKS = [Task("pos", "regression"), Task("chunk", "regression"), Task("rel", "regression")]


def three_sources() -> TensorTable:
    """Rows 0-9 labelled for pos and chunk (one source), 10-16 for rel (another); 17-18 for none."""
    n = 19
    masks = {t.name: torch.zeros(n, dtype=torch.bool) for t in TASKS}
    masks["pos"][:10] = True
    masks["chunk"][:10] = True
    masks["rel"][10:17] = True
    labels = {t.name: torch.arange(n, dtype=torch.float32) for t in TASKS}
    return TensorTable({"numeric": torch.arange(n, dtype=torch.float32)[:, None]}, labels, masks)


def rows(batch) -> list[int]:
    return batch.features["numeric"][:, 0].long().tolist()


def test_jmt_visits_every_task_in_order_on_its_own_rows_with_only_its_own_loss():
    calls = []
    schedule = make_schedule("jmt", three_sources(), TASKS, 4, seed=1, begin_task=calls.append)
    steps = list(schedule)
    assert calls == ["pos", "chunk", "rel", None]
    order = [task for _, task in steps]
    assert order == sorted(order, key=["pos", "chunk", "rel"].index)  # one task after another
    assert len(steps) == len(schedule) == 3 + 3 + 2
    for name, expected in (("pos", set(range(10))), ("chunk", set(range(10))), ("rel", set(range(10, 17)))):
        batches = [b for b, task in steps if task == name]
        seen = [r for b in batches for r in rows(b)]
        assert sorted(seen) == sorted(expected)  # every labelled row once
        for b in batches:
            assert b.masks[name].all()
            assert not any(b.masks[other].any() for other in b.masks if other != name)  # only its own loss


def test_round_robin_takes_each_batch_from_one_group_in_turn():
    schedule = make_schedule("round_robin", three_sources(), TASKS, 4, seed=0)
    steps = list(schedule)
    groups = [0 if rows(b)[0] < 10 else 1 for b, _ in steps]
    for b, _ in steps:
        assert len({r < 10 for r in rows(b)}) == 1  # never mixes the sources
        assert all(r < 17 for r in rows(b))  # rows labelled for nothing are not trained on
    assert groups[:4] == [0, 1, 0, 1]  # the groups take turns
    assert sorted(r for b, _ in steps for r in rows(b)) == list(range(17))
    assert len(schedule) == len(steps) == 3 + 2


@pytest.mark.parametrize("name", ["joint", "round_robin", "jmt"])
def test_an_epochs_order_depends_on_seed_and_epoch_only(name):
    table = three_sources()
    a = make_schedule(name, table, TASKS, 4, seed=3)
    first, second = [rows(b) for b, _ in a], [rows(b) for b, _ in a]
    b = make_schedule(name, table, TASKS, 4, seed=3)
    b.set_epoch(1)
    assert [rows(x) for x, _ in b] == second  # a resumed run continues exactly
    assert first != second


def test_the_trainer_calls_begin_task_in_the_jmt_order():
    from polytask.models import create_model
    from polytask.train.trainer import Trainer
    from polytask.data.schema import InputSpec

    model = create_model("shared_bottom", InputSpec(numeric_dim=1), TASKS, {"bottom_hidden": [4], "tower_hidden": []})
    calls = []
    model.begin_task = calls.append
    Trainer(model, TASKS, schedule="jmt", epochs=2, batch_size=4, progress=False, device="cpu").fit(three_sources())
    assert calls == ["pos", "chunk", "rel", None] * 2


def test_trim_tokens_cuts_text_and_token_labels_to_the_longest_row():
    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]])
    table = TensorTable(
        {"seq:text": ids, "ngrams:text": torch.ones(2, 5, 3, dtype=torch.int32), "seq:history": torch.ones(2, 5, dtype=torch.long)},
        {"tags": torch.ones(2, 5, dtype=torch.long), "y": torch.ones(2)},
        {"tags": ids != 0, "y": torch.ones(2, dtype=torch.bool)},
    )
    batch = table.all().trim_tokens("text", ["tags"])
    assert batch.features["seq:text"].shape == (2, 2) and batch.features["ngrams:text"].shape == (2, 2, 3)
    assert batch.labels["tags"].shape == (2, 2) and batch.masks["tags"].shape == (2, 2)
    assert batch.features["seq:history"].shape == (2, 5) and batch.labels["y"].shape == (2,)  # others untouched
    assert batch.masks["tags"].sum() == (ids != 0).sum()  # no label is lost
