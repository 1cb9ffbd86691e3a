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

Word vectors (:class:`~polytask.nn.word_representation.WordRepresentation`): a learned word table,
optionally

* initialised from pretrained vectors (``embeddings``: a word2vec/GloVe text file read by
  :func:`~polytask.encoders.word_vectors.read_word_vectors`; the words come from the feature's
  vocabulary, ``InputSpec.vocabularies``, which exists while a run is built from data; a saved run
  being loaded has none and skips the file, its state dict restoring the weights) and kept fixed
  (``freeze_embeddings``);
* concatenated with the mean of the token's character n-gram embeddings (``char_ngrams``; the
  feature must be declared with ``char_ngrams: [...]`` so that ``features["ngrams:<feature>"]``
  exists), JMT's word representation (Hashimoto et al., EMNLP 2017, Sec. 2.1).

The word table stays registered as ``words.weight`` (the n-gram table is ``words.ngrams.weight``),
so runs saved before these options load unchanged.
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
from polytask.encoders.word_vectors import read_word_vectors
from polytask.nn.sequence import run_packed, valid_positions
from polytask.nn.word_representation import WordRepresentation
from polytask.registry import ENCODERS


def text_feature(spec: InputSpec, feature: str | None = None, pair: str | None = None) -> str:
    """The sequence feature to encode: ``feature`` if given, else the only sequence feature
    (besides ``pair``); ValueError listing the sequence features otherwise."""
    known = ", ".join(spec.sequences) or "none"
    if feature is not None:
        if feature not in spec.sequences:
            raise ValueError(f"encoder 'tokens': feature {feature!r} is not a sequence feature (sequence features: {known})")
        return feature
    candidates = [n for n in spec.sequences if n != pair]
    if pair is not None and len(candidates) == 1:
        return candidates[0]
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
        dim: width of the word embeddings (the Transformer's token vectors are as wide as the
            word representation: ``dim``, plus ``ngram_dim`` with ``char_ngrams``).
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
        char_ngrams: append the mean of each token's character n-gram embeddings to its word
            embedding (JMT); needs the feature's n-grams (``char_ngrams`` in its declaration).
        ngram_dim: width of the n-gram embeddings (default ``dim``).
        embeddings: path of a word2vec/GloVe text file initialising the word table (words the file
            lacks start random); read only when the spec carries the feature's vocabulary.
        freeze_embeddings: keep the word table fixed while training.
        pair: a second text feature (the other sentence of a sentence pair, declared with
            ``vocabulary: <feature>`` so its words have the same ids), encoded by the same word
            representation and contextual layer; the sentence row is then a learned linear map of
            the pair features ``[|u - v|; u * v]`` of the two sentence vectors (Tai, Socher &
            Manning 2015), so any architecture's sentence-level tasks see the pair, while the
            token rows stay the first text's.
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
        char_ngrams: bool = False,
        ngram_dim: int | None = None,
        embeddings: str | None = None,
        freeze_embeddings: bool = False,
        pair: str | None = None,
    ) -> None:
        super().__init__()
        self.feature = text_feature(spec, feature, pair)
        if pair is not None:
            if pair not in spec.sequences or pair == self.feature:
                raise ValueError(
                    f"encoder 'tokens': pair {pair!r} must be another sequence feature (sequence features: "
                    f"{', '.join(spec.sequences) or 'none'})"
                )
            if spec.sequences[pair] != spec.sequences[self.feature]:
                raise ValueError(
                    f"encoder 'tokens': pair {pair!r} has its own vocabulary; declare it with vocabulary: {self.feature} "
                    "so the same word has the same id in both texts"
                )
            if char_ngrams and pair not in spec.ngrams:
                raise ValueError(f"encoder 'tokens': char_ngrams needs the n-grams of pair {pair!r} too (char_ngrams in its declaration)")
        self.pair = pair
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
        if char_ngrams and self.feature not in spec.ngrams:
            raise ValueError(
                f"encoder 'tokens': char_ngrams needs the character n-grams of feature {self.feature!r}; "
                f"declare it with char_ngrams (e.g. char_ngrams: [2, 3, 4]) in data.features"
            )
        if ngram_dim is not None and not char_ngrams:
            raise ValueError("encoder 'tokens': ngram_dim is the width of the n-gram embeddings; set char_ngrams: true")
        if ngram_dim is not None and ngram_dim < 1:
            raise ValueError(f"encoder 'tokens': ngram_dim must be >= 1, got {ngram_dim!r}")
        if freeze_embeddings and embeddings is None:
            raise ValueError("encoder 'tokens': freeze_embeddings keeps pretrained vectors fixed; set embeddings to their file")
        self.kind, self.pool, self.positions, self.max_len = kind, pool, positions, max_len
        self.position_feature = self.feature
        self.char_ngrams, self.embeddings = char_ngrams, embeddings
        #: vocabulary words that got a pretrained vector (None: no file was read)
        self.vectors_found: int | None = None
        self.words = self.word_embedding(spec, dim, ngram_dim=ngram_dim, freeze=freeze_embeddings)
        width = self.words.out_dim  # the contextual layer's input
        if kind == "transformer" and width % heads:
            raise ValueError(
                f"encoder 'tokens': heads ({heads}) must divide the word representation's width {width} "
                f"(dim {dim} + ngram_dim {width - dim}) for the transformer"
            )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.position_table = nn.Embedding(max_len, width) if kind == "transformer" and positions == "learned" else None
        if kind == "lstm":
            hidden = hidden if hidden is not None else max(1, dim // 2)
            self.context = nn.LSTM(width, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                                   dropout=dropout if layers > 1 else 0.0)
            self.token_dim = 2 * hidden
        else:
            layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=dropout, batch_first=True, norm_first=True)
            self.context = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
            self.token_dim = width
        #: the pair's sentence row: [|u - v|; u * v] -> token_dim
        self.pair_map = nn.Linear(2 * self.token_dim, self.token_dim) if pair is not None else None
        texts = {self.feature, pair}
        rest = replace(spec, sequences={n: v for n, v in spec.sequences.items() if n not in texts},
                       ngrams={n: v for n, v in spec.ngrams.items() if n not in texts},
                       vocabularies={n: v for n, v in spec.vocabularies.items() if n not in texts})
        self.rest = rest_input(rest, embedding_dim)
        self.out_dim = self.token_dim + (self.rest.out_dim if self.rest is not None else 0)

    def word_embedding(
        self, spec: InputSpec, dim: int, *, ngram_dim: int | None = None, freeze: bool = False
    ) -> WordRepresentation:
        """The word representation of the text feature: the word table (id 0 = padding: a zero row
        that gets no gradient), from ``embeddings`` when set and the spec carries the feature's
        vocabulary, and with ``char_ngrams`` the n-gram table."""
        vocab_size = spec.sequences[self.feature]
        vectors = None
        vocabulary = spec.vocabularies.get(self.feature)
        if self.embeddings is not None and vocabulary is not None:
            if len(vocabulary) + 2 != vocab_size:
                raise ValueError(
                    f"encoder 'tokens': feature {self.feature!r} has {vocab_size} word ids but its vocabulary lists "
                    f"{len(vocabulary)} words (+2 for padding and unknown)"
                )
            vectors, self.vectors_found = read_word_vectors(self.embeddings, list(vocabulary), dim)
        return WordRepresentation(
            vocab_size, dim, ngram_vocab=spec.ngrams[self.feature] if self.char_ngrams else 0, ngram_dim=ngram_dim,
            vectors=vectors, freeze=freeze,
        )

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

    def _encode(self, features: dict[str, Tensor], feature: str) -> tuple[Tensor, Tensor]:
        """Token vectors ``[B, L, H]`` (zero at padding) and the sentence vector ``[B, H]``."""
        ids = features[f"seq:{feature}"]
        b, length = ids.shape
        lengths, mask = valid_positions(ids)  # [B], [B, L]
        x = self.words(ids, features[f"ngrams:{feature}"] if self.char_ngrams else None)
        if self.kind == "lstm":
            tokens = self._lstm(self.dropout(x), lengths) if length else x.new_zeros(b, 0, self.token_dim)
        else:
            tokens = self._transformer(x, mask) if length else x.new_zeros(b, 0, self.token_dim)
        tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        return tokens, self._sentence(tokens, mask, lengths)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        b, length = features[f"seq:{self.feature}"].shape
        tokens, sentence = self._encode(features, self.feature)
        if self.pair_map is not None:
            _, other = self._encode(features, self.pair)
            sentence = self.pair_map(torch.cat([(sentence - other).abs(), sentence * other], dim=-1))
        rows = torch.cat([sentence.unsqueeze(1), tokens], dim=1)  # [B, L+1, H]
        if self.rest is not None:
            rest = self.rest(features)
            rows = torch.cat([rows, rest.unsqueeze(1).expand(b, length + 1, rest.shape[1])], dim=2)
        return rows.reshape(b * (length + 1), self.out_dim)
