"""Attention pooling of a behaviour history against a target item: Deep Interest Network's
activation unit (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polytask.nn.mlp import MLP


class TargetAttention(nn.Module):
    """``[B, L, D]`` history item embeddings and a ``[B, D]`` target embedding -> ``[B, D]``: the
    items summed, each weighted by how well it matches the target.

    A small MLP over ``[h, t, h - t, h * t]`` (item ``h``, target ``t``) scores each item, as in
    DIN; an item's weight is ``sigmoid(score)``, padding's is 0, and an empty history pools to
    zeros. Like DIN, the weights are not softmax-normalised over the history: the pooled vector
    keeps how much of the history matches the target (two matching items count more than one, a
    history with no match pools to near zero), which weights forced to sum to one would erase.
    Unlike DIN's raw scores, each weight is squashed into (0, 1): the pooled vector is then at most
    the ``sum`` pooling of the same items, whatever the scores, so training starts stable.

    Args:
        dim: the width of the item and target embeddings.
        hidden: the widths of the scoring MLP's hidden layers (DIN: one of 36).
        act: their activation.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (36,), act: str = "relu") -> None:
        super().__init__()
        self.mlp = MLP(4 * dim, hidden, act=act)
        self.score = nn.Linear(self.mlp.out_dim, 1)
        self.out_dim = dim

    def weights(self, items: Tensor, target: Tensor, present: Tensor) -> Tensor:
        """``[B, L]``: each item's weight in (0, 1), 0 where ``present`` ``[B, L]`` is False."""
        t = target.unsqueeze(1).expand_as(items)
        scores = self.score(self.mlp(torch.cat([items, t, items - t, items * t], dim=-1))).squeeze(-1)
        return torch.sigmoid(scores).masked_fill(~present, 0.0)

    def forward(self, items: Tensor, target: Tensor, present: Tensor) -> Tensor:
        w = self.weights(items, target, present)
        return torch.bmm(w.unsqueeze(1), items).squeeze(1)
