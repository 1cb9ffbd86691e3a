"""Aligned-MTL, aligning the task gradients' principal components (Senushkin et al.,
"Independent Component Alignment for Multi-Task Learning", CVPR 2023).

The task gradients (rows of ``G``) are replaced by an aligned system ``B G`` with condition number
1: orthogonal rows of equal norm, scaled by the smallest singular value of ``G``. From the
eigendecomposition of the Gram matrix ``M = G G^T = V Lambda V^T`` (eigenvalues up to the
tolerance ``lambda_max * k * eps`` count as zero; ``r`` kept, ``eps`` the machine epsilon of the
gradients' dtype),

    B = sqrt(lambda_min) V_r Lambda_r^{-1/2} V_r^T,         alpha = B 1,

and the update is ``1^T (B G) = alpha^T G``. For full-rank ``G``: ``(B G)(B G)^T = B M B =
lambda_min I``, i.e. the aligned gradients are orthogonal with norms ``sqrt(lambda_min)``; with rank
``r < k`` it is ``lambda_min V_r V_r^T`` (equal singular values on the gradients' span). Task
preferences could replace the ones vector; not offered here. A zero Gram matrix gives
``alpha = 0``.

Modes: ``parameter`` (default, as LibMTL) and ``representation`` (Aligned-MTL-UB, the paper's cheaper
variant on the shared representation's gradients).
"""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.registry import WEIGHTINGS
from polytask.weighting.gradient import GradientWeighting


def aligned_mtl_matrix(gram: Tensor, eps: float | None = None) -> Tensor:
    """``B [k, k]`` (float64, CPU) with orthogonal, equal-norm aligned gradients ``B G``.

    ``eps`` defaults to the machine epsilon of ``gram``'s dtype."""
    eps = torch.finfo(gram.dtype).eps if eps is None else eps
    m = gram.detach().double().cpu()
    k = m.shape[0]
    lam, vec = torch.linalg.eigh(m)
    tol = float(lam.max()) * k * eps
    keep = lam > tol
    if not bool(keep.any()) or not float(lam.max()) > 0:
        return torch.zeros(k, k, dtype=torch.float64)
    lam, vec = lam[keep], vec[:, keep]
    return lam.min().sqrt() * (vec * lam.rsqrt()[None, :]) @ vec.T


def aligned_mtl_weights(gram: Tensor, eps: float | None = None) -> Tensor:
    """``alpha = B 1`` (float64, CPU)."""
    return aligned_mtl_matrix(gram, eps).sum(1)


@WEIGHTINGS.register("aligned_mtl")
class AlignedMTL(GradientWeighting):
    """Aligned-MTL: the task gradients made orthogonal with equal norms (the smallest singular
    value), then summed (Senushkin et al., 2023). Modes ``parameter`` (default) and
    ``representation`` (Aligned-MTL-UB)."""

    modes = ("parameter", "representation")

    def combine(self, grads: Tensor, gram: Tensor, losses: Tensor) -> Tensor:
        return aligned_mtl_weights(gram).to(device=grads.device, dtype=grads.dtype)
