"""The ``lstm`` column family: one (bidirectional) LSTM per task over the tokens of a text feature.

Each task has its own word embeddings and its own stack of (Bi)LSTM layers (Hochreiter &
Schmidhuber 1997; bidirectional: Graves & Schmidhuber 2005), as in the per-task sequence-labelling
columns that sluice networks connect (Ruder, Bingel, Augenstein, Søgaard, AAAI 2019). Layer ``i``
is one (Bi)LSTM layer of every task, ``hidden[i]`` wide (split evenly over the two directions), so
units between layers mix per hidden unit at every position of ``[T, B, L, C]``.

Token ids ``features["seq:<feature>"]`` ``[B, L]`` use 0 for padding and hold the valid tokens as a
left-aligned prefix (up to the last non-zero id). Every layer packs the sequences to their lengths
(``pack_padded_sequence``), so the backward direction starts at each example's last real token and
never reads padding; outputs at padded positions are zero. The T LSTMs run in a Python loop over
tasks (each is one cuDNN/ATen call; different weights per task do not batch into one call).

The read-out gives token rows like the ``tokens`` encoder (:mod:`polytask.encoders.base`):
``L + 1`` rows per example, row 0 the masked mean of the token vectors, rows ``1..L`` the token
vectors, each followed by the example's other features through a per-task ``tabular`` input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.nn.sequence import run_packed, valid_positions
from polytask.nn.columns.base import ColumnFamily, per_task_rest, stack_modules
from polytask.registry import COLUMNS


def sequence_feature(spec: InputSpec, feature: str | None) -> str:
    """``feature`` (a sequence feature) or else the only sequence feature; ValueError otherwise."""
    known = ", ".join(spec.sequences) or "none"
    if feature is not None and feature not in spec.sequences:
        raise ValueError(
            f"model.column_params.feature: {feature!r} is not a sequence feature (sequence features: {known})"
        )
    if feature is None and len(spec.sequences) != 1:
        raise ValueError(
            "columns 'lstm' need exactly one sequence feature (or column_params.feature naming one); "
            f"sequence features: {known}"
        )
    return feature if feature is not None else next(iter(spec.sequences))


class LSTMColumnLayer(nn.Module):
    """One (Bi)LSTM layer of every task's column: ``[T, B, L, C_in] -> [T, B, L, C_out]``, zero at
    padded positions."""

    def __init__(self, num_tasks: int, in_dim: int, out_dim: int, *, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.hidden = out_dim // self.directions
        self.out_dim = out_dim
        self.lstms = nn.ModuleList(
            nn.LSTM(in_dim, self.hidden, batch_first=True, bidirectional=bidirectional) for _ in range(num_tasks)
        )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, h: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        t, b, length = h.shape[:3]
        if length == 0:
            return h.new_zeros(t, b, 0, self.out_dim)
        # one LSTM call per task; an example without tokens is zeroed by the mask
        outs = [run_packed(lstm, x, lengths) for x, lstm in zip(h, self.lstms)]
        return self.dropout(torch.stack(outs) * mask.unsqueeze(-1).to(h.dtype))

    def weight_matrix(self) -> Tensor:
        """``[T, C_in + H, 4 * C_out]``: for every output channel (forward units, then backward
        units) its four gates' input and recurrent weights as columns (channel-major)."""
        per_task = []
        for lstm in self.lstms:
            blocks = []
            for suffix in ["", "_reverse"][: self.directions]:
                w = torch.cat([getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"weight_hh_l0{suffix}")], dim=1)
                blocks.append(w.view(4, self.hidden, -1).transpose(0, 1).reshape(4 * self.hidden, -1))  # unit-major
            per_task.append(torch.cat(blocks).T)
        return torch.stack(per_task)


@COLUMNS.register("lstm")
class LSTMColumns(ColumnFamily):
    """Per-task word embeddings and (Bi)LSTM layers over one text feature; token rows out.

    Args:
        spec: the input spec.
        num_tasks: T.
        hidden: width of each layer's output (both directions together: even when bidirectional).
        embedding_dim: width of the other features' embeddings, and of the word embeddings unless
            ``word_dim`` is set.
        encoder, encoder_params: must be left at ``tabular`` / empty (the columns read the tokens).
        act: not used (LSTM outputs are already squashed); kept for the common signature.
        dropout: after every layer.
        feature: the text (sequence) feature; by default the only one.
        bidirectional: BiLSTM layers (default) or forward-only ones.
        word_dim: width of the per-task word embeddings (default ``embedding_dim``).
    """

    channel_dim = 3
    takes_encoder = False

    def __init__(
        self,
        spec: InputSpec,
        num_tasks: int,
        hidden: list[int],
        *,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: Mapping[str, Any] | None = None,
        act: str = "relu",
        dropout: float = 0.0,
        feature: str | None = None,
        bidirectional: bool = True,
        word_dim: int | None = None,
    ) -> None:
        super().__init__(num_tasks)
        self.feature = sequence_feature(spec, feature)
        directions = 2 if bidirectional else 1
        if not hidden or any(h < 1 or h % directions for h in hidden):
            even = " (even: a BiLSTM splits each over its two directions)" if bidirectional else ""
            raise ValueError(f"model.hidden: lstm columns need a non-empty list of positive widths{even}, got {hidden}")
        word_dim = embedding_dim if word_dim is None else word_dim
        if word_dim < 1:
            raise ValueError(f"model.column_params.word_dim: must be >= 1, got {word_dim!r}")
        vocab = spec.sequences[self.feature]
        words = torch.randn(num_tasks, vocab, word_dim)  # [T, V, E], like nn.Embedding's init
        words[:, 0] = 0.0  # the padding row
        self.words = nn.Parameter(words)
        widths = [word_dim, *hidden]
        self.layers = nn.ModuleList(
            LSTMColumnLayer(num_tasks, a, b, bidirectional=bidirectional, dropout=dropout)
            for a, b in zip(widths, widths[1:])
        )
        self.widths = list(hidden)
        self.position_feature = self.feature
        rest = replace(spec, sequences={n: v for n, v in spec.sequences.items() if n != self.feature})
        self.rest = per_task_rest(rest, num_tasks, embedding_dim)
        self.out_dim = hidden[-1] + (self.rest.out_dim if self.rest is not None else 0)

    def _ids(self, features: Mapping[str, Tensor]) -> Tensor:
        key = f"seq:{self.feature}"
        if key not in features:
            raise KeyError(f"lstm columns read features[{key!r}] (token ids and lengths); got keys {sorted(features)}")
        return features[key]

    def stem(self, features: Mapping[str, Tensor]) -> Tensor:
        ids = self._ids(features).long()
        t, vocab = self.words.shape[:2]
        offsets = torch.arange(t, device=ids.device).view(t, 1, 1) * vocab
        x = F.embedding(ids.unsqueeze(0) + offsets, self.words.reshape(t * vocab, -1))  # [T, B, L, E]
        return x * ids.ne(0).unsqueeze(-1).to(x.dtype)  # padding id 0: a zero vector without gradient

    def run_layer(self, i: int, h: Tensor, features: Mapping[str, Tensor]) -> Tensor:
        return self.layers[i](h, *valid_positions(self._ids(features)))

    def read_out(self, h: Tensor, features: Mapping[str, Tensor]) -> Tensor:
        t, b, length, c = h.shape
        lengths, _ = valid_positions(self._ids(features))
        sentence = h.sum(2) / lengths.clamp_min(1).view(1, b, 1).to(h.dtype)  # masked mean (h is 0 at padding)
        rows = torch.cat([sentence.unsqueeze(2), h], dim=2)  # [T, B, L+1, C]
        if self.rest is not None:
            rest = self.rest(features)  # [T, B, r]
            rows = torch.cat([rows, rest.unsqueeze(2).expand(t, b, length + 1, rest.shape[2])], dim=3)
        return rows.reshape(t, b * (length + 1), self.out_dim)

    def layer_weights(self, i: int) -> Tensor:
        return self.layers[i].weight_matrix()

    def stacked_parameters(self) -> list[Tensor]:
        params = [self.words] + [p for layer in self.layers for p in stack_modules(layer.lstms)]
        return params + (stack_modules(self.rest) if self.rest is not None else [])
