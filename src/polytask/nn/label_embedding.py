"""Label embeddings: a classifier's prediction fed upward as a vector.

JMT (Hashimoto et al., "A Joint Many-Task Model: Growing a Neural Network for Multiple NLP Tasks",
EMNLP 2017, Sec. 2.2) passes each lower task's prediction to the layers above as the
probability-weighted sum of learned label vectors,
``y_t = sum_j p(y_t = j | h_t) * l(j)``, so the upper layers read a soft, differentiable label
instead of an arg-max.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LabelEmbedding(nn.Module):
    """``softmax(logits) @ L``: the expected label vector under the classifier's distribution.

    ``logits [..., C]`` -> ``[..., dim]``. The table ``weight [C, dim]`` is initialised uniform in
    ``+-sqrt(6 / (dim + C))`` (Hashimoto et al., EMNLP 2017, Sec. 2.7).

    Args:
        num_labels: ``C``, the classifier's output width.
        dim: width of the label vectors (100 in the paper).
    """

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        if num_labels < 1 or dim < 1:
            raise ValueError(f"LabelEmbedding: num_labels and dim must be >= 1, got {num_labels} and {dim}")
        self.num_labels, self.dim = num_labels, dim
        self.weight = nn.Parameter(torch.empty(num_labels, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(6.0 / (self.dim + self.num_labels))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, logits: Tensor) -> Tensor:
        probs = torch.softmax(logits, dim=-1)
        return probs @ self.weight.to(probs.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_labels}, {self.dim}"
