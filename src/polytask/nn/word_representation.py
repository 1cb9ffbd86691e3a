"""Word representations: a word embedding, optionally with character n-gram embeddings.

JMT (Hashimoto et al., "A Joint Many-Task Model: Growing a Neural Network for Multiple NLP Tasks",
EMNLP 2017, Sec. 2.1) represents a word ``w_t`` as the concatenation of its word embedding and
the *average* of the embeddings of its character n-grams (n = 1..4 in the paper, after Wieting et
al. 2016); a word unseen in training still gets a useful vector from its n-grams.

Ids follow the preprocessor's conventions: word id 0 is padding (a zero vector that gets no
gradient), 1 the unknown word; n-gram id 0 is padding (the n-grams of a token are a 0-padded list
of ids, ``features["ngrams:<name>"]`` ``[B, L, G]``, aligned with ``features["seq:<name>"]``
``[B, L]``), 1 the unknown n-gram.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WordRepresentation(nn.Module):
    """JMT's word representation (Hashimoto et al., EMNLP 2017, Sec. 2.1): a word embedding
    concatenated with the average of the word's character n-gram embeddings.

    ``ids [...]`` (long, 0 = padding) and ``ngrams [..., G]`` (0 = padding) -> ``[..., out_dim]``
    with ``out_dim = dim + ngram_dim`` (``dim`` alone without n-grams). The n-gram part of a token
    is the mean of the embeddings of its non-zero n-gram ids; a token without n-grams (padding)
    gets the zero vector.

    The word table is the parameter :attr:`weight` (``[vocab_size, dim]``, as in ``nn.Embedding``,
    so an encoder that registers this module where it had an ``nn.Embedding`` keeps its
    state-dict names); the n-gram table is ``ngrams.weight``.

    Args:
        vocab_size: rows of the word table (including 0 = padding and 1 = unknown).
        dim: width of the word embeddings.
        ngram_vocab: rows of the n-gram table (including 0 = padding and 1 = unknown); 0 for no
            n-gram part.
        ngram_dim: width of the n-gram embeddings (default ``dim``).
        vectors: ``[vocab_size, dim]`` initial word vectors (pretrained, e.g. from
            :func:`polytask.encoders.word_vectors.read_word_vectors`); row 0 is zeroed.
            Default: ``normal(0, 1)`` like ``nn.Embedding``.
        freeze: keep the word table fixed (no gradient); the n-gram table still trains.
        dropout: dropout on the output vectors.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        ngram_vocab: int = 0,
        ngram_dim: int | None = None,
        vectors: Tensor | None = None,
        freeze: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"WordRepresentation: vocab_size and dim must be >= 1, got {vocab_size} and {dim}")
        if ngram_vocab < 0:
            raise ValueError(f"WordRepresentation: ngram_vocab must be >= 0, got {ngram_vocab}")
        if ngram_dim is not None and ngram_dim < 1:
            raise ValueError(f"WordRepresentation: ngram_dim must be >= 1, got {ngram_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"WordRepresentation: dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.dim = vocab_size, dim
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))
        if vectors is not None:
            if tuple(vectors.shape) != (vocab_size, dim):
                raise ValueError(
                    f"WordRepresentation: vectors are {tuple(vectors.shape)} but the word table is ({vocab_size}, {dim})"
                )
            with torch.no_grad():
                self.weight.copy_(vectors)
        else:
            nn.init.normal_(self.weight)  # nn.Embedding's initialisation
        with torch.no_grad():
            self.weight[0].zero_()
        self.weight.requires_grad_(not freeze)
        self.ngram_dim = (ngram_dim or dim) if ngram_vocab else 0
        # mode="mean" with padding_idx=0 averages over the non-padding ids of each bag only, and
        # gives a bag of padding alone the zero vector (torch.nn.EmbeddingBag)
        self.ngrams = (
            nn.EmbeddingBag(ngram_vocab, self.ngram_dim, mode="mean", padding_idx=0) if ngram_vocab else None
        )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out_dim = dim + self.ngram_dim

    def forward(self, ids: Tensor, ngrams: Tensor | None = None) -> Tensor:
        """``ids [...]``, ``ngrams [..., G]`` -> ``[..., out_dim]`` (see the class docstring)."""
        words = F.embedding(ids.long(), self.weight, padding_idx=0)
        if self.ngrams is None:
            if ngrams is not None:
                raise ValueError("WordRepresentation: n-gram ids given but the module has no n-gram table (ngram_vocab=0)")
            return self.dropout(words)
        if ngrams is None:
            raise ValueError("WordRepresentation: the module has an n-gram table; pass the n-gram ids of every token")
        if ngrams.shape[:-1] != ids.shape:
            raise ValueError(
                f"WordRepresentation: n-gram ids {tuple(ngrams.shape)} do not line up with word ids {tuple(ids.shape)} "
                "(expected the word ids' shape plus one n-gram axis)"
            )
        g = ngrams.shape[-1]
        if g == 0:
            grams = words.new_zeros(ids.shape + (self.ngram_dim,))
        else:
            grams = self._bag_mean(ngrams.reshape(-1, g).long()).reshape(ids.shape + (self.ngram_dim,))
        return self.dropout(torch.cat([words, grams.to(words.dtype)], dim=-1))

    def _bag_mean(self, ids: Tensor) -> Tensor:
        """Mean of each row's non-padding n-gram embeddings (zeros for a row of padding only):
        ``nn.EmbeddingBag``, or the same mean as a gather and a masked sum while exporting to ONNX,
        which has no ``embedding_bag`` with ``padding_idx``."""
        assert self.ngrams is not None
        if not torch.onnx.is_in_onnx_export():
            return self.ngrams(ids)
        present = (ids != 0).unsqueeze(-1)
        total = (F.embedding(ids, self.ngrams.weight) * present.to(self.ngrams.weight.dtype)).sum(1)
        return total / present.sum(1).clamp_min(1).to(total.dtype)

    def extra_repr(self) -> str:
        frozen = ", frozen" if not self.weight.requires_grad else ""
        return f"{self.vocab_size}, {self.dim}{frozen}"
