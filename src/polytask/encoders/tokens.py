"""The ``tokens`` input encoder: one text (sequence) feature -> a sentence row and one row per token.

Token ids of ``features["seq:<feature>"]`` ``[B, L]`` (0 = padding, left-aligned as
:class:`~polytask.data.encoders.SequenceEncoder` writes them) go through learned word embeddings
and a contextual layer (``kind``):

* ``lstm``: a bidirectional LSTM (Graves & Schmidhuber 2005; ``layers`` stacked, ``hidden`` units
  per direction, token vectors ``2 * hidden`` wide). The sequences are packed to their lengths
  (``pack_padded_sequence``), so the backward direction starts at each example's last real token
  and never reads padding;
* ``transformer``: a Transformer encoder (Vaswani et al. 2017; pre-layer-norm, ``layers`` layers of
  ``heads`` heads, width ``dim``, feed-forward ``4 * dim``) with learned or sinusoidal positions and
  a key-padding mask, so no position attends to padding.

The valid tokens of an example are the prefix up to its last non-zero id (exactly its non-padding
ids for left-aligned input). Token vectors at padded positions are zero, so the rows an example
gets do not depend on how much padding the batch adds. The sentence vector (``pool``) is the masked
mean of the token vectors (default), their masked max, or the first token's vector; an example
without tokens gets the zero vector.

Output rows follow the contract of :mod:`polytask.encoders.base`: ``L + 1`` rows per example (row 0
the sentence vector, rows ``1..L`` the token vectors), each followed by the example's other
features (every feature of the spec besides ``feature``, through a :class:`TabularInput`), so no
declared feature is silently dropped.

Pretrained word vectors are not supported yet: :meth:`TokenEncoder.word_embedding` builds the
table and is the place to load or initialise them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import InputEncoder
from polytask.encoders.tabular import rest_input
from polytask.nn.sequence import run_packed, valid_positions
from polytask.registry import ENCODERS


def text_feature(spec: InputSpec, feature: str | None = None) -> str:
    """The sequence feature to encode: ``feature`` if given, else the only sequence feature;
    ValueError listing the sequence features otherwise."""
    known = ", ".join(spec.sequences) or "none"
    if feature is not None:
        if feature not in spec.sequences:
            raise ValueError(f"encoder 'tokens': feature {feature!r} is not a sequence feature (sequence features: {known})")
        return feature
    if len(spec.sequences) != 1:
        raise ValueError(
            "encoder 'tokens' needs exactly one sequence feature (or encoder_params.feature naming one); "
            f"sequence features: {known}"
        )
    return next(iter(spec.sequences))


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """``[length, dim]``: ``PE[p, 2i] = sin(p / 10000^(2i/dim))``, ``PE[p, 2i+1] = cos(...)`` (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim + dim % 2, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe[:, :dim]


@ENCODERS.register("tokens")
class TokenEncoder(InputEncoder):
    """BiLSTM or Transformer over one text feature's word embeddings: a sentence row and one row
    per token of every example.

    ``features["seq:<feature>"]`` ``[B, L]`` -> ``[B * (L + 1), out_dim]`` (see the module docstring).

    Args:
        spec: the input spec (see :class:`~polytask.data.schema.InputSpec`).
        feature: the text (sequence) feature; by default the only one.
        kind: ``lstm`` (bidirectional) or ``transformer``.
        dim: width of the word embeddings (and of the Transformer's token vectors).
        hidden: LSTM units per direction (token vectors ``2 * hidden``); default ``max(1, dim // 2)``.
            Not used by the Transformer.
        layers: stacked LSTM or Transformer layers.
        heads: attention heads of the Transformer (must divide ``dim``).
        positions: the Transformer's position encoding: ``learned`` (a table of ``max_len`` rows)
            or ``sinusoidal`` (any length).
        max_len: longest text the learned position table covers.
        pool: sentence vector: ``mean`` (masked mean of the token vectors), ``max`` or ``first``.
        dropout: on the input embeddings, between LSTM layers and inside the Transformer.
        embedding_dim: embedding width of the other (categorical, sequence) features.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        feature: str | None = None,
        kind: Literal["lstm", "transformer"] = "lstm",
        dim: int = 64,
        hidden: int | None = None,
        layers: int = 1,
        heads: int = 4,
        positions: Literal["learned", "sinusoidal"] = "learned",
        max_len: int = 512,
        pool: Literal["mean", "max", "first"] = "mean",
        dropout: float = 0.0,
        embedding_dim: int = 4,
    ) -> None:
        super().__init__()
        self.feature = text_feature(spec, feature)
        for key, value, allowed in (("kind", kind, ("lstm", "transformer")), ("pool", pool, ("mean", "max", "first")),
                                    ("positions", positions, ("learned", "sinusoidal"))):
            if value not in allowed:
                raise ValueError(f"encoder 'tokens': {key} must be one of {', '.join(allowed)}; got {value!r}")
        for key, value in (("dim", dim), ("layers", layers), ("heads", heads), ("max_len", max_len)):
            if value < 1:
                raise ValueError(f"encoder 'tokens': {key} must be >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"encoder 'tokens': dropout must be in [0, 1), got {dropout!r}")
        if kind == "transformer" and hidden is not None:
            raise ValueError("encoder 'tokens': hidden is the LSTM's width; the transformer's token vectors are dim wide")
        if kind == "transformer" and dim % heads:
            raise ValueError(f"encoder 'tokens': heads ({heads}) must divide dim ({dim}) for the transformer")
        if hidden is not None and hidden < 1:
            raise ValueError(f"encoder 'tokens': hidden must be >= 1, got {hidden!r}")
        self.kind, self.pool, self.positions, self.max_len = kind, pool, positions, max_len
        self.position_feature = self.feature
        self.words = self.word_embedding(spec.sequences[self.feature], dim)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.position_table = nn.Embedding(max_len, dim) if kind == "transformer" and positions == "learned" else None
        if kind == "lstm":
            hidden = hidden if hidden is not None else max(1, dim // 2)
            self.context = nn.LSTM(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                                   dropout=dropout if layers > 1 else 0.0)
            self.token_dim = 2 * hidden
        else:
            layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, batch_first=True, norm_first=True)
            self.context = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
            self.token_dim = dim
        rest = replace(spec, sequences={n: v for n, v in spec.sequences.items() if n != self.feature})
        self.rest = rest_input(rest, embedding_dim)
        self.out_dim = self.token_dim + (self.rest.out_dim if self.rest is not None else 0)

    def word_embedding(self, vocab_size: int, dim: int) -> nn.Embedding:
        """The word-embedding table (id 0 = padding: a zero row that gets no gradient).

        Extension point for pretrained vectors: load or initialise the table here."""
        return nn.Embedding(vocab_size, dim, padding_idx=0)

    # -- contextual layers ----------------------------------------------------------------------
    def _lstm(self, x: Tensor, lengths: Tensor) -> Tensor:
        # packed: the backward direction starts at each example's last real token
        return run_packed(self.context, x, lengths)

    def _transformer(self, x: Tensor, mask: Tensor) -> Tensor:
        length = x.shape[1]
        if self.position_table is not None:
            if length > self.max_len:
                raise ValueError(
                    f"encoder 'tokens': feature {self.feature!r} has {length} positions but the learned position "
                    f"table covers max_len={self.max_len}; raise encoder_params.max_len or use positions: sinusoidal"
                )
            x = x + self.position_table.weight[:length]
        else:
            x = x + sinusoidal_positions(length, x.shape[2], x.device).to(x.dtype)
        x = self.dropout(x)
        # an example without tokens may attend to its first position (an all-masked softmax is
        # NaN); its outputs are zeroed by the caller
        padding = ~mask
        padding[:, 0] &= mask.any(1)
        return self.context(x, src_key_padding_mask=padding)

    def _sentence(self, tokens: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
        if tokens.shape[1] == 0:
            return tokens.new_zeros(tokens.shape[0], tokens.shape[2])
        if self.pool == "mean":
            return tokens.sum(1) / lengths.clamp_min(1).unsqueeze(1).to(tokens.dtype)
        if self.pool == "max":
            filled = tokens.masked_fill(~mask.unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(1)
            return torch.where((lengths > 0).unsqueeze(1), filled, torch.zeros_like(filled))
        return tokens[:, 0]

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        ids = features[f"seq:{self.feature}"]
        b, length = ids.shape
        lengths, mask = valid_positions(ids)  # [B], [B, L]
        x = self.words(ids)
        if self.kind == "lstm":
            tokens = self._lstm(self.dropout(x), lengths) if length else x.new_zeros(b, 0, self.token_dim)
        else:
            tokens = self._transformer(x, mask) if length else x.new_zeros(b, 0, self.token_dim)
        tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        rows = torch.cat([self._sentence(tokens, mask, lengths).unsqueeze(1), tokens], dim=1)  # [B, L+1, H]
        if self.rest is not None:
            rest = self.rest(features)
            rows = torch.cat([rows, rest.unsqueeze(1).expand(b, length + 1, rest.shape[1])], dim=2)
        return rows.reshape(b * (length + 1), self.out_dim)
