"""FusedEmbedding with a width per field (``embedding_dim`` on a feature) and fields that use
another field's rows (``shared_with``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polytask.nn.embedding import FusedEmbedding

CARDS = [3, 5, 2, 5]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _ids(batch: int) -> torch.Tensor:
    return torch.stack([torch.randint(0, c, (batch,)) for c in CARDS], 1).to(torch.int32)


def test_one_width_keeps_one_table_and_its_names():
    emb = FusedEmbedding(CARDS, 4)
    assert emb.num_tables == 1 and emb.order is None
    assert [n for n, _ in emb.named_parameters()] == ["weight"] and list(emb.state_dict()) == ["weight"]
    assert emb.weight.shape == (sum(CARDS), 4)


def test_mixed_widths_gather_per_width_and_keep_field_order():
    emb = FusedEmbedding(CARDS, 4, dims=[4, 8, 4, 2])
    assert emb.num_tables == 3 and emb.out_dim == 18
    assert emb.weight.shape == (5, 4) and emb.weight_1.shape == (5, 8) and emb.weight_2.shape == (5, 2)
    ids = _ids(7)
    out = emb(ids)
    assert out.shape == (7, 18)
    for field, (start, end) in enumerate(emb.columns):  # each field's columns, in field order
        torch.testing.assert_close(out[:, start:end], emb.rows(field, ids[:, field]))
    # the rows are the field's own slice of its width's table
    torch.testing.assert_close(out[:, 4:12], F.embedding(ids[:, 1].long(), emb.weight_1))
    torch.testing.assert_close(out[:, 12:16], F.embedding(ids[:, 2].long() + 3, emb.weight))
    (out * torch.randn_like(out)).sum().backward()
    assert emb.weight.grad is not None and emb.weight_1.grad is not None and emb.weight_2.grad is not None
    with torch.no_grad():  # the inference path gives the same
        torch.testing.assert_close(emb(ids), out.detach())


def test_a_field_can_use_an_earlier_fields_rows():
    emb = FusedEmbedding(CARDS, 3, tables=[0, 1, 2, 1])  # field 3 uses field 1's rows
    assert emb.weight.shape == (3 + 5 + 2, 3)  # no rows of its own
    ids = torch.tensor([[0, 4, 1, 4], [2, 1, 0, 3]], dtype=torch.int32)
    out = emb(ids)
    torch.testing.assert_close(out[0, 3:6], out[0, 9:12])  # the same id: the same vector
    torch.testing.assert_close(out[1, 9:12], emb.weight[3 + 3])
    out.sum().backward()  # both fields' gradients land on the one row
    torch.testing.assert_close(emb.weight.grad[3 + 4], torch.full((3,), 2.0))


@pytest.mark.parametrize("tables, dims", [
    ([0, 1, 2, 0], None),  # cardinalities 5 and 3 differ
    ([0, 3, 2, 3], None),  # a later field
    ([0, 1, 2, 1], [4, 4, 4, 8]),  # widths differ
])
def test_bad_sharing_is_refused(tables, dims):
    with pytest.raises(ValueError, match="cannot use field"):
        FusedEmbedding(CARDS, 4, dims=dims, tables=tables)
