"""Maxout units (Goodfellow et al., ICML 2013): each output is the maximum of ``pieces`` affine maps.

JMT (Hashimoto et al., EMNLP 2017, Sec. 2.5) puts one Maxout hidden layer under the relatedness
output and three under the entailment output.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class Maxout(nn.Module):
    """``y_i = max_k (W_k x + b_k)_i``: ``[..., in_dim] -> [..., out_dim]``.

    One linear map to ``out_dim * pieces`` units, viewed as ``[..., out_dim, pieces]`` and reduced
    by max over the last axis. Weights uniform in ``+-sqrt(6 / (rows + cols))`` of the stacked
    matrix, biases zero (Hashimoto et al., EMNLP 2017, Sec. 2.7).
    """

    def __init__(self, in_dim: int, out_dim: int, pieces: int = 2) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1 or pieces < 1:
            raise ValueError(f"Maxout: in_dim, out_dim and pieces must be >= 1, got {in_dim}, {out_dim}, {pieces}")
        self.out_dim, self.pieces = out_dim, pieces
        self.linear = nn.Linear(in_dim, out_dim * pieces)
        bound = math.sqrt(6.0 / (in_dim + out_dim * pieces))
        nn.init.uniform_(self.linear.weight, -bound, bound)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).unflatten(-1, (self.out_dim, self.pieces)).amax(-1)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"
