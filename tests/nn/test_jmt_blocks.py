"""Known answers for JMT's blocks (Hashimoto et al., EMNLP 2017): label embeddings, head selection,
Maxout and sentence-pair features."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.nn.head_selection import HeadSelection, candidate_mask, decode_heads, mask_scores, relation_logits
from polytask.nn.label_embedding import LabelEmbedding
from polytask.nn.maxout import Maxout
from polytask.nn.sentence_pair import masked_max, pair_features


# -- label embeddings ---------------------------------------------------------------------------------
def test_label_embedding_is_the_softmax_weighted_sum_of_the_label_vectors():
    emb = LabelEmbedding(3, 2)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]))
    logits = torch.tensor([[0.0, math.log(2.0), math.log(3.0)]])  # softmax = [1, 2, 3] / 6
    expected = (1 * torch.tensor([1.0, 0.0]) + 2 * torch.tensor([0.0, 1.0]) + 3 * torch.tensor([2.0, 2.0])) / 6
    torch.testing.assert_close(emb(logits), expected.unsqueeze(0))
    # works per token ([B, L, C] -> [B, L, dim]) and confident logits pick one label vector
    sharp = torch.tensor([[[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]]])
    torch.testing.assert_close(emb(sharp), torch.tensor([[[1.0, 0.0], [2.0, 2.0]]]))


def test_label_embedding_initial_range():
    torch.manual_seed(0)
    emb = LabelEmbedding(10, 90)
    bound = math.sqrt(6 / (90 + 10))
    assert emb.weight.abs().max() <= bound and emb.weight.abs().max() > 0.9 * bound


# -- head selection -------------------------------------------------------------------------------------
def test_candidate_mask_forbids_padding_and_the_token_itself_never_the_root():
    mask = torch.tensor([[True, True, False]])
    allowed = candidate_mask(mask)[0]
    assert allowed.shape == (3, 4)
    assert allowed[:, 0].all()  # the root
    assert allowed.tolist() == [[True, False, True, False], [True, True, False, False], [True, True, True, False]]


def test_head_selection_on_a_hand_made_score_matrix_picks_the_argmax_head_and_the_root():
    # token 1 heads the sentence (root), token 2 and token 3 hang off token 1; a padded 4th position
    scores = torch.tensor([[[5.0, 9.0, 1.0, 0.0, 99.0],   # itself (9) is forbidden, padding (99) too -> root
                            [0.0, 3.0, 7.0, 1.0, 99.0],   # itself (7) forbidden -> token 1
                            [0.0, 4.0, 2.0, 8.0, 99.0],   # itself (8) forbidden -> token 1
                            [0.0, 0.0, 0.0, 0.0, 0.0]]])  # padding: whatever
    mask = torch.tensor([[True, True, True, False]])
    heads = decode_heads(mask_scores(scores, mask))
    assert heads[0, :3].tolist() == [0, 1, 1]


def test_head_selection_scores_are_the_bilinear_form_with_the_root_vector():
    sel = HeadSelection(2, relations=0)
    with torch.no_grad():
        sel.weight.copy_(torch.eye(2))
        sel.root.copy_(torch.tensor([1.5, 0.0]))
    h = torch.tensor([[[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    out = sel(h, mask)
    assert out.shape == (1, 3, 4)
    # m(t, j) = h_t . h_j (W_d = I), candidate 0 the root r = (1.5, 0)
    expected = torch.tensor([[4.5, 9.0, 0.0, 3.0], [0.0, 0.0, 1.0, 1.0], [1.5, 3.0, 1.0, 2.0]])
    allowed = candidate_mask(mask)[0]
    torch.testing.assert_close(out[0][allowed], expected[allowed])
    assert (out[0][~allowed] <= -1e8).all()
    # token 1: itself (9) is forbidden, the root (4.5) wins; token 2: token 3; token 3: token 1
    assert decode_heads(out)[0].tolist() == [0, 3, 1]


def test_relation_scores_are_dependent_plus_head_parts():
    torch.manual_seed(0)
    sel = HeadSelection(4, relations=3, zero_init=False)
    h = torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    out = sel(h, mask)
    assert out.shape == (2, 5, 6 + 9)
    heads = torch.tensor([[0, 1, 1, 2, 4], [3, 0, 2, 2, 1]])
    got = relation_logits(out, heads, 3)
    a = sel.dependent(h)
    c = sel.head(torch.cat([sel.root.expand(2, 1, 4), h], 1))
    expected = a + torch.stack([c[i, heads[i]] for i in range(2)])
    torch.testing.assert_close(got, expected)


def test_head_selection_paper_initialisation_is_zero():
    sel = HeadSelection(4, relations=2)
    assert all(p.abs().sum() == 0 for p in sel.parameters())
    out = sel(torch.randn(1, 3, 4), torch.tensor([[True, True, False]]))
    assert torch.isfinite(out).all()


# -- maxout -----------------------------------------------------------------------------------------------
def test_maxout_is_the_max_over_pieces():
    m = Maxout(2, 2, pieces=3)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [2.0, 0.0]])
    with torch.no_grad():
        m.linear.weight.copy_(w)
        m.linear.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
    x = torch.tensor([[1.0, 2.0], [-3.0, 1.0]])
    z = x @ w.T + m.linear.bias
    expected = torch.stack([z[:, 0:3].amax(1), z[:, 3:6].amax(1)], 1)
    torch.testing.assert_close(m(x), expected)
    torch.testing.assert_close(m(x), torch.tensor([[3.0, 3.0], [1.0, 3.0]]))


# -- sentence vectors and pair features -------------------------------------------------------------------
def test_pair_features_match_the_formulas():
    a = torch.tensor([[1.0, -2.0, 3.0]])
    b = torch.tensor([[4.0, 1.0, -1.0]])
    torch.testing.assert_close(pair_features(a, b, "abs"), torch.tensor([[3.0, 3.0, 4.0, 4.0, -2.0, -3.0]]))
    torch.testing.assert_close(pair_features(a, b, "signed"), torch.tensor([[-3.0, -3.0, 4.0, 4.0, -2.0, -3.0]]))
    torch.testing.assert_close(pair_features(a, b, "abs"), pair_features(b, a, "abs"))  # symmetric
    with pytest.raises(ValueError, match="abs, signed"):
        pair_features(a, b, "cosine")  # type: ignore[arg-type]


def test_masked_max_ignores_padding_and_gives_zero_without_tokens():
    tokens = torch.tensor([[[1.0, -5.0], [2.0, -6.0], [100.0, 100.0]],
                           [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_max(tokens, mask), torch.tensor([[2.0, -5.0], [0.0, 0.0]]))
    assert masked_max(torch.zeros(2, 0, 3), torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 3)
