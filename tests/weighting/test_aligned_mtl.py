"""Aligned-MTL known answers: the aligned gradients B G are orthogonal with equal norms
sqrt(lambda_min) (condition number 1), and the update is their sum alpha^T G, alpha = B 1."""

from __future__ import annotations

import pytest
import torch

from polytask.weighting.aligned_mtl import aligned_mtl_matrix, aligned_mtl_weights


def test_orthogonal_gradients_are_scaled_to_the_smallest_norm():
    g = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))  # lambda = 1, 4: B = diag(1, 1/2)
    torch.testing.assert_close(aligned_mtl_weights(g @ g.T), torch.tensor([1.0, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_aligned_gradients_are_orthogonal_with_equal_norms(seed, k):
    g = torch.randn(k, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g * torch.logspace(-1, 1, k, dtype=torch.float64)[:, None]
    m = g @ g.T
    b = aligned_mtl_matrix(m)
    aligned = b @ g
    lam_min = float(torch.linalg.eigvalsh(m).min())
    torch.testing.assert_close(aligned @ aligned.T, lam_min * torch.eye(k, dtype=torch.float64), rtol=0,
                               atol=1e-9 * float(m.diagonal().max()))
    torch.testing.assert_close(aligned_mtl_weights(m) @ g, aligned.sum(0))


def test_rank_deficient_gradients_get_equal_singular_values_on_their_span():
    g = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # rank 2
    m = g @ g.T
    aligned = aligned_mtl_matrix(m) @ g
    sv = torch.linalg.svdvals(aligned)
    lam = torch.linalg.eigvalsh(m)
    torch.testing.assert_close(sv, lam[1:].min().sqrt().expand(2), rtol=1e-9, atol=0)


def test_zero_gradients_give_zero_weights():
    assert torch.equal(aligned_mtl_weights(torch.zeros(2, 2)), torch.zeros(2, dtype=torch.float64))
