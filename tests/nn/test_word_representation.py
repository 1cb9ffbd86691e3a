"""WordRepresentation (JMT, Hashimoto et al. 2017, Sec. 2.1): word embedding concatenated with the
mean of the token's character n-gram embeddings; padding conventions, pretrained vectors, freezing."""

from __future__ import annotations

import pytest
import torch

from polytask.nn.word_representation import WordRepresentation

IDS = torch.tensor([[3, 4, 0], [5, 0, 0]])
NGRAMS = torch.tensor([
    [[2, 3, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0]],
    [[5, 6, 7, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_word_part_only():
    rep = WordRepresentation(10, 4)
    assert rep.out_dim == 4 and rep.ngrams is None
    out = rep(IDS)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out[0, 0], rep.weight[3])
    assert out[0, 2].abs().sum() == 0 and rep.weight[0].abs().sum() == 0, "padding is the zero vector"
    with pytest.raises(ValueError, match="no n-gram table"):
        rep(IDS, NGRAMS)


def test_known_answer_concatenation_of_word_and_mean_of_nonzero_ngrams():
    rep = WordRepresentation(10, 3, ngram_vocab=8, ngram_dim=2)
    assert rep.out_dim == 5
    out = rep(IDS, NGRAMS)
    table = rep.ngrams.weight
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out[0, 0], torch.cat([rep.weight[3], (table[2] + table[3]) / 2]))
    torch.testing.assert_close(out[0, 1], torch.cat([rep.weight[4], table[4]]))
    torch.testing.assert_close(out[1, 0], torch.cat([rep.weight[5], (table[5] + table[6] + table[7] + table[1]) / 4]))
    # a token without n-grams (here padding) gets the zero n-gram vector
    assert out[0, 2].abs().sum() == 0 and out[1, 1:].abs().sum() == 0


def test_ngram_dim_defaults_to_dim_and_more_padding_changes_nothing():
    rep = WordRepresentation(10, 3, ngram_vocab=8)
    assert rep.out_dim == 6
    wider = torch.cat([NGRAMS, torch.zeros(2, 3, 5, dtype=torch.long)], dim=2)
    torch.testing.assert_close(rep(IDS, wider), rep(IDS, NGRAMS))


def test_padding_rows_get_no_gradient_and_other_rows_do():
    rep = WordRepresentation(10, 3, ngram_vocab=8)
    rep(IDS, NGRAMS).square().sum().backward()
    assert rep.weight.grad[0].abs().sum() == 0 and rep.ngrams.weight.grad[0].abs().sum() == 0
    assert rep.weight.grad[3].abs().sum() > 0 and rep.ngrams.weight.grad[2].abs().sum() > 0


def test_pretrained_vectors_and_freeze():
    vectors = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    rep = WordRepresentation(5, 4, vectors=vectors, freeze=True, ngram_vocab=3)
    torch.testing.assert_close(rep.weight[1:], vectors[1:])
    assert rep.weight[0].abs().sum() == 0, "row 0 (padding) is zeroed whatever the vectors hold"
    assert not rep.weight.requires_grad and rep.ngrams.weight.requires_grad
    rep(torch.tensor([[1, 2]]), torch.tensor([[[1, 2], [2, 0]]])).sum().backward()
    assert rep.weight.grad is None and rep.ngrams.weight.grad is not None
    assert "frozen" in repr(rep)
    with pytest.raises(ValueError, match=r"vectors are \(5, 4\) but the word table is \(6, 4\)"):
        WordRepresentation(6, 4, vectors=vectors)


def test_any_leading_shape_and_empty_inputs():
    rep = WordRepresentation(10, 3, ngram_vocab=8)
    assert rep(torch.tensor([3, 4]), torch.tensor([[2, 0], [0, 0]])).shape == (2, 6)
    assert rep(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 3, dtype=torch.long)).shape == (2, 0, 6)
    assert rep(IDS, torch.zeros(2, 3, 0, dtype=torch.long)).abs()[..., 3:].sum() == 0


def test_state_dict_names():
    assert set(WordRepresentation(10, 3).state_dict()) == {"weight"}
    assert set(WordRepresentation(10, 3, ngram_vocab=4).state_dict()) == {"weight", "ngrams.weight"}


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 3), {}, "vocab_size and dim"),
        ((5, 3), {"ngram_vocab": -1}, "ngram_vocab"),
        ((5, 3), {"ngram_vocab": 4, "ngram_dim": 0}, "ngram_dim"),
        ((5, 3), {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_settings(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        WordRepresentation(*args, **kwargs)


def test_missing_or_misaligned_ngrams_are_errors():
    rep = WordRepresentation(10, 3, ngram_vocab=8)
    with pytest.raises(ValueError, match="pass the n-gram ids"):
        rep(IDS)
    with pytest.raises(ValueError, match="do not line up"):
        rep(IDS, NGRAMS[:, :2])


def test_dropout_only_in_training():
    rep = WordRepresentation(10, 3, ngram_vocab=8, dropout=0.5)
    rep.eval()
    torch.testing.assert_close(rep(IDS, NGRAMS), rep(IDS, NGRAMS))
