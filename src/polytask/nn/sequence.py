"""Blocks for left-aligned, 0-padded token sequences (the sequence encoder's layout).

A row's valid tokens are a prefix ending at its last non-zero id; recurrent layers run packed so
that a backward direction starts at the last real token instead of in the padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from polytask.nn.capture import capturing


def valid_positions(ids: Tensor) -> tuple[Tensor, Tensor]:
    """``(lengths [B], mask [B, L])`` of left-aligned ids ``[B, L]`` (0 = padding): a row's valid
    prefix ends at its last non-zero id."""
    positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)
    lengths = (ids.ne(0) * positions).amax(1) if ids.shape[1] else ids.new_zeros(ids.shape[0])
    return lengths, positions.unsqueeze(0) <= lengths.unsqueeze(1)


def run_packed(rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> Tensor:
    """``rnn`` over ``x [B, L, C]`` with each row cut at its length (packed, so the backward
    direction of a bidirectional layer never reads padding); ``[B, L, H]`` out, padded to ``L``.
    A row without tokens runs over one (padding) step: the caller masks its output."""
    packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def steps_to_run(lengths: Tensor, width: int) -> int:
    """How many leading steps a causal recurrent layer must run over for rows of these
    ``lengths`` (valid prefixes of ``width`` steps): the batch's longest, which saves the steps
    every row pads; all ``width`` while the model is traced or exported (a size read from the data
    cannot be captured in a graph, and the steps past a row's length change none of its valid
    outputs)."""
    if capturing():
        return width
    return int(lengths.max()) if lengths.numel() else 0
