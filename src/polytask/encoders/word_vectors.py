"""Pretrained word vectors in the word2vec / GloVe text format.

The file holds one word per line followed by its vector, fields separated by single spaces
(``the 0.418 0.24968 -0.41242 ...``), optionally after a word2vec header line ``<count> <dim>``;
a ``.gz`` file is read through gzip. This is the format of word2vec's ``-binary 0`` output
(Mikolov et al. 2013), of GloVe (Pennington et al. 2014) and of fastText's ``.vec`` files.

:func:`read_word_vectors` reads such a file in one pass and keeps only the vectors of the words
of a vocabulary (the file can be far larger than memory allows), laid out as the rows of a word
table whose ids follow the sequence encoder (0 padding, 1 unknown, ``i + 2`` the vocabulary's
``i``-th word). JMT (Hashimoto et al., EMNLP 2017, Sec. 2.1) initialises its word embeddings this
way, with skip-gram vectors.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterator
from typing import IO

import numpy as np
import torch
from torch import Tensor

from polytask.errors import ConfigError, DataError


def _open(path: str | os.PathLike) -> IO[bytes]:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise DataError(f"{p}: word vector file not found")
    return gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")


def _lines(handle: IO[bytes], source: str) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its end)``; bytes are decoded line by line, so a
    decoding error names its line."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield number, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{source}: line {number} is not UTF-8 text ({e.reason})") from None


def read_word_vectors(path: str | os.PathLike, vocabulary: list[str], dim: int) -> tuple[Tensor, int]:
    """Read a word2vec/GloVe text file into a word table for ``vocabulary``.

    Returns ``(table, found)``: ``table`` is ``[len(vocabulary) + 2, dim]`` float32, row ``i + 2``
    the vector of ``vocabulary[i]``, row 0 (padding) zero, row 1 (unknown) and the rows of words the
    file lacks drawn from ``normal(0, 1/sqrt(dim))`` with the current torch RNG; ``found`` is the
    number of vocabulary words that got a vector from the file.

    A vocabulary word takes the vector of the line holding exactly that word; failing that, the
    first line whose word lower-cases to the same string as the vocabulary word (so a cased
    vocabulary can use the lower-cased GloVe vectors). The file is read once, line by line, and
    only the kept lines' numbers are parsed (and checked).

    Errors name the file and its 1-based line: a missing file, a vector width other than ``dim``
    (ConfigError: the file's vectors do not fit the encoder), lines of differing widths, a value
    that is not a number, a header that is not ``<count> <dim>`` (DataError).
    """
    if dim < 1:
        raise ValueError(f"read_word_vectors: dim must be >= 1, got {dim}")
    source = os.fspath(path)
    exact: dict[str, list[int]] = {}
    lower: dict[str, list[int]] = {}
    for i, word in enumerate(vocabulary):
        exact.setdefault(word, []).append(i + 2)
        lower.setdefault(word.lower(), []).append(i + 2)
    # random rows first, so the draw does not depend on which words the file holds
    table = torch.randn(len(vocabulary) + 2, dim) / math.sqrt(dim)
    table[0] = 0.0
    vectors = table.numpy()  # shares memory with ``table``
    by_exact = np.zeros(len(vocabulary) + 2, dtype=bool)
    by_lower = np.zeros(len(vocabulary) + 2, dtype=bool)
    width: int | None = None

    def parse(fields: list[str], number: int) -> np.ndarray:
        try:
            values = np.array(fields, dtype=np.float32)
        except ValueError:
            bad = next(f for f in fields if not _is_number(f))
            raise DataError(f"{source}: line {number} holds {bad!r} where a number is expected") from None
        if not np.isfinite(values).all():
            raise DataError(f"{source}: line {number} holds a value that is not finite")
        return values

    with _open(path) as handle:
        for number, line in _lines(handle, source):
            fields = line.rstrip(" ").split(" ")
            if fields == [""]:
                continue  # a blank line
            if number == 1 and len(fields) == 2 and all(_is_int(f) for f in fields):
                width = int(fields[1])  # word2vec header: <count> <dim>
                if width != dim:
                    raise ConfigError(
                        f"{source}: line 1 (header) declares {width}-dimensional vectors but the encoder's "
                        f"word embeddings are {dim} wide (encoder_params.dim); set dim to {width}"
                    )
                continue
            found = len(fields) - 1
            if width is None:
                if found != dim:
                    raise ConfigError(
                        f"{source}: line {number} holds a {found}-dimensional vector but the encoder's word "
                        f"embeddings are {dim} wide (encoder_params.dim); set dim to {found}"
                    )
                width = found
            elif found != width:
                raise DataError(
                    f"{source}: line {number} holds a {found}-dimensional vector but the file's vectors are "
                    f"{width}-dimensional (word {fields[0]!r})"
                )
            word = fields[0]
            rows = exact.get(word)
            if rows is not None:
                vectors[rows] = parse(fields[1:], number)
                by_exact[rows] = True
            candidates = lower.get(word.lower())
            if candidates is not None:
                free = [r for r in candidates if not by_exact[r] and not by_lower[r]]
                if free:
                    vectors[free] = parse(fields[1:], number)
                    by_lower[free] = True
    return table, int((by_exact | by_lower)[2:].sum())


def _is_int(text: str) -> bool:
    return text.isdigit()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
