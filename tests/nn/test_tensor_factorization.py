"""DMTRL factorisations: full rank represents any stacked weights; truncated ranks are low-rank."""

from __future__ import annotations

import pytest
import torch

from polytask.nn.tensor_factorization import FactorisedWeights, tt_decompose, tucker_decompose


@pytest.mark.parametrize("shape", [(5, 4, 3), (3, 6, 2)])
def test_full_rank_tucker_and_tt_reproduce_any_tensor(shape):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.float64)
    core, u1, u2, u3 = tucker_decompose(w, list(shape))
    torch.testing.assert_close(torch.einsum("abc,ia,jb,tc->ijt", core, u1, u2, u3), w)
    d1, d2, t = shape
    g1, g2, g3 = tt_decompose(w, [d1, min(d1 * d2, t)])
    torch.testing.assert_close(torch.einsum("ia,ajb,bt->ijt", g1, g2, g3), w)


@pytest.mark.parametrize("factorization,ranks", [("tucker", None), ("tt", None), ("laf", None)])
def test_default_full_rank_factors_rebuild_their_initial_weights(factorization, ranks):
    """At full rank, the factors can be set to represent an arbitrary target tensor exactly."""
    torch.manual_seed(0)
    fw = FactorisedWeights(3, 5, 4, factorization=factorization, ranks=ranks)
    target = torch.randn(5, 4, 3)
    with torch.no_grad():
        if factorization == "tucker":
            new = tucker_decompose(target, [5, 4, 3])
        elif factorization == "tt":
            new = tt_decompose(target, [5, 3])
        else:
            u, s, vh = torch.linalg.svd(target.reshape(20, 3), full_matrices=False)
            new = (u, s[:, None] * vh)
        for p, v in zip(fw.factors, new):
            p.copy_(v)
    torch.testing.assert_close(fw(), target.permute(2, 0, 1), rtol=1e-4, atol=1e-5)


def test_truncated_tucker_has_the_requested_task_rank():
    torch.manual_seed(0)
    fw = FactorisedWeights(4, 6, 5, factorization="tucker", ranks=[3, 3, 1])
    w = fw().reshape(4, -1)  # one row per task
    assert torch.linalg.matrix_rank(w) == 1  # K3 = 1: all tasks' weights are multiples of one tensor


def test_bad_ranks_are_rejected():
    with pytest.raises(ValueError, match="3 ranks"):
        FactorisedWeights(2, 3, 3, factorization="tucker", ranks=[2, 2])
    with pytest.raises(ValueError, match="factorization"):
        FactorisedWeights(2, 3, 3, factorization="cp")
