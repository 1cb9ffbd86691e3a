"""BatchLoader coverage and ordering, TensorTable gathers and slices, Batch.to."""

from __future__ import annotations

import pytest
import torch

from polytask.data.loader import BatchLoader
from polytask.data.table import Batch, TensorTable


def make_table(n: int) -> TensorTable:
    """Row i carries i in every column, so a batch tells which rows it holds."""
    ids = torch.arange(n)
    return TensorTable(
        {"numeric": torch.stack([ids.float(), -ids.float()], 1), "categorical": ids[:, None] * 10},
        {"a": ids.float() / 2, "b": ids % 3},
        {"a": ids % 2 == 0, "b": torch.ones(n, dtype=torch.bool)},
        {"a": ids.float() + 0.5},
    )


def rows_of(batch: Batch) -> list[int]:
    rows = batch.features["numeric"][:, 0].long()
    # every column of the batch must come from the same rows
    assert torch.equal(batch.features["numeric"][:, 1], -rows.float())
    assert torch.equal(batch.features["categorical"][:, 0], rows * 10)
    assert torch.equal(batch.labels["a"], rows.float() / 2)
    assert torch.equal(batch.labels["b"], rows % 3)
    assert torch.equal(batch.masks["a"], rows % 2 == 0)
    assert torch.equal(batch.weights["a"], rows.float() + 0.5)
    return rows.tolist()


CASES = [(n, b) for n in (1, 10, 17, 64) for b in (1, 4, 16, 17, 100)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n, b", CASES)
def test_every_row_exactly_once(n, b, shuffle):
    loader = BatchLoader(make_table(n), b, shuffle=shuffle, seed=3)
    for _ in range(2):
        batches = [rows_of(x) for x in loader]
        seen = [r for rows in batches for r in rows]
        assert sorted(seen) == list(range(n))
        assert len(batches) == len(loader) == -(-n // b)
        assert all(len(rows) == b for rows in batches[:-1])
        assert len(batches[-1]) == n - b * (len(batches) - 1)
        if not shuffle:
            assert seen == list(range(n))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n, b", CASES)
def test_drop_last(n, b, shuffle):
    loader = BatchLoader(make_table(n), b, shuffle=shuffle, drop_last=True, seed=1)
    batches = [rows_of(x) for x in loader]
    assert len(batches) == len(loader) == n // b
    assert all(len(rows) == b for rows in batches)
    seen = [r for rows in batches for r in rows]
    assert len(set(seen)) == len(seen) == (n // b) * b  # no row twice, only the remainder dropped
    if not shuffle:
        assert seen == list(range((n // b) * b))


def test_dropped_rows_vary_between_epochs_when_shuffled():
    loader = BatchLoader(make_table(10), 4, shuffle=True, drop_last=True, seed=0)
    dropped = set()
    for _ in range(10):
        seen = {r for x in loader for r in rows_of(x)}
        dropped |= set(range(10)) - seen
    assert len(dropped) > 2  # not always the same two rows


def _order(loader: BatchLoader) -> list[int]:
    return [r for x in loader for r in rows_of(x)]


def test_shuffled_order_differs_between_epochs_and_seed_reproduces():
    table = make_table(50)
    a = BatchLoader(table, 8, shuffle=True, seed=7)
    b = BatchLoader(table, 8, shuffle=True, seed=7)
    epochs_a = [_order(a) for _ in range(3)]
    epochs_b = [_order(b) for _ in range(3)]
    assert epochs_a == epochs_b
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert epochs_a[0] != list(range(50))
    assert _order(BatchLoader(table, 8, shuffle=True, seed=8)) != epochs_a[0]


def test_seed_is_independent_of_global_rng():
    table = make_table(30)
    torch.manual_seed(0)
    first = _order(BatchLoader(table, 4, shuffle=True, seed=2))
    torch.manual_seed(123)
    torch.rand(100)
    assert _order(BatchLoader(table, 4, shuffle=True, seed=2)) == first


def test_bad_batch_size():
    with pytest.raises(ValueError):
        BatchLoader(make_table(5), 0)


# -- TensorTable and Batch ----------------------------------------------------------------------
def test_take_gathers_rows_in_index_order():
    t = make_table(10)
    batch = t.take(torch.tensor([7, 2, 2, 9]))
    assert rows_of(batch) == [7, 2, 2, 9]
    assert len(batch) == 4


def test_slice_is_a_view_of_contiguous_rows():
    t = make_table(10)
    batch = t.slice(3, 8)
    assert rows_of(batch) == [3, 4, 5, 6, 7]
    assert batch.features["numeric"].data_ptr() == t.features["numeric"][3].data_ptr()
    assert rows_of(t.slice(8, 20)) == [8, 9]
    assert rows_of(t.all()) == list(range(10))


def test_table_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        TensorTable({"numeric": torch.zeros(4, 2)}, {"a": torch.zeros(3)})
    with pytest.raises(ValueError):
        TensorTable({})


def test_batch_to_moves_every_tensor():
    batch = make_table(6).take(torch.tensor([5, 0, 3]))
    moved = batch.to("meta")
    for attr in ("features", "labels", "masks", "weights"):
        src, dst = getattr(batch, attr), getattr(moved, attr)
        assert set(src) == set(dst)
        for k in src:
            assert dst[k].device.type == "meta"
            assert dst[k].shape == src[k].shape and dst[k].dtype == src[k].dtype
    assert batch.features["numeric"].device.type == "cpu"  # the original is untouched
    same = batch.to("cpu")
    assert rows_of(same) == [5, 0, 3]


def test_table_to_device():
    moved = make_table(4).to("meta")
    assert isinstance(moved, TensorTable) and len(moved) == 4
    assert all(v.device.type == "meta" for v in moved.masks.values())
