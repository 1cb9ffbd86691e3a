"""Column encoders, fitted on the training split only and saved with the model.

Each encoder turns one pyarrow column into a numpy array and serialises to plain JSON. Unseen
categories map to the out-of-vocabulary id, numeric NaN is handled by an explicit policy, and a
value a column cannot take stops with a message naming the file, column and row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polytask.data.images import ImageEncoder
from polytask.data.schema import FeatureSpec
from polytask.data.stream_moments import Moments
from polytask.errors import DataError

OOV = 0  # categorical: id of unknown / missing values
PAD, SEQ_OOV = 0, 1  # sequence: padding id, unknown-item id


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def to_float(col: pa.ChunkedArray | pa.Array, *, source: str, column: str) -> np.ndarray:
    """Column -> float64 numpy with NaN for nulls; non-numeric text is an error naming the row."""
    if pa.types.is_null(col.type):  # an all-empty CSV column (e.g. a test split without this label)
        return np.full(len(col), np.nan)
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    if _is_string(col.type):
        stripped = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
        stripped = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
        try:
            col = pc.cast(stripped, pa.float64())
        except pa.ArrowInvalid:
            values = stripped.to_pylist()
            for i, v in enumerate(values):
                if v is None:
                    continue
                try:  # Arrow's own parser: Python's float() also takes e.g. "1_000", which Arrow rejects
                    pc.cast(pa.array([v], pa.string()), pa.float64())
                except pa.ArrowInvalid:
                    raise DataError(
                        f"{source}: column {column!r} must be numeric but row {i} holds {v!r}", row=i
                    ) from None
            raise
    elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type)):
        raise DataError(f"{source}: column {column!r} must be numeric, found type {col.type}")
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def check_finite(x: np.ndarray, *, source: str, column: str, what: str = "column", row_size: int = 1) -> None:
    """Refuse inf/-inf (NaN is a missing value and passes): a DataError naming the column and the
    first such row. ``row_size`` elements of the flat ``x`` make one row (dense features)."""
    inf = np.isinf(x)
    if inf.any():
        i = int(np.flatnonzero(inf.reshape(-1))[0])
        row = i // row_size
        raise DataError(
            f"{source}: {what} {column!r} holds {x.reshape(-1)[i]:g} at row {row}; values must be finite "
            "(leave the cell empty for a missing value)",
            row=row,
        )


def to_strings(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Categorical values compared as strings, so 1, 1.0 and "1" from CSV vs Parquet agree."""
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    if pa.types.is_floating(col.type):
        # NaN is a missing value like null (and would break the int64 round trip below)
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        # 3.0 -> "3" (CSV readers turn integer columns with nulls into floats)
        integral = pc.and_(pc.equal(pc.floor(col), col), pc.less_equal(pc.abs(col), 2.0**53))
        if pc.all(pc.or_kleene(integral, pc.is_null(col))).as_py():
            col = pc.cast(col, pa.int64())
    return pc.cast(col, pa.string())


class NumericEncoder:
    """Optional signed log1p, then standard / min-max scaling; NaN by policy (see FeatureSpec)."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.center = 0.0
        self.scale = 1.0
        self.fill = 0.0
        self.indicator = False

    def _prepare(self, col, source: str) -> np.ndarray:
        x = to_float(col, source=source, column=self.spec.name)
        if not np.isfinite(x).all():  # one pass on the clean path
            check_finite(x, source=source, column=self.spec.name, what="numeric column")
            if self.spec.nan == "error":
                row = int(np.flatnonzero(np.isnan(x))[0])
                raise DataError(
                    f"{source}: column {self.spec.name!r} has a missing value at row {row} (nan: error)", row=row
                )
        if self.spec.log1p:
            x = np.sign(x) * np.log1p(np.abs(x))
        return x

    def fit(self, col, source: str) -> NumericEncoder:
        """Fit on a whole training column: one :meth:`partial_fit`, then :meth:`finish`."""
        self._moments = None
        return self.partial_fit(col, source).finish(source)

    def partial_fit(self, col, source: str) -> NumericEncoder:
        """Add one chunk of the training column (a row group of a streamed training set) to the
        running moments; :meth:`finish` turns them into the scaling."""
        x = self._prepare(col, source)
        missing = np.isnan(x)
        if getattr(self, "_moments", None) is None:
            self._moments, self._missing = Moments(), False
        self._moments.add(x[~missing])
        self._missing = self._missing or bool(missing.any())
        return self

    def finish(self, source: str) -> NumericEncoder:
        """Set center, scale, fill and the missing indicator from the chunks seen."""
        m = getattr(self, "_moments", None)
        if m is None or m.count == 0:
            raise DataError(f"{source}: numeric column {self.spec.name!r} has no values")
        mean = float(m.mean)
        if self.spec.scale == "standard":
            self.center, self.scale = mean, float(m.std) or 1.0
        elif self.spec.scale == "minmax":
            self.center, self.scale = float(m.min), float(m.max - m.min) or 1.0
        self.fill = mean
        if not np.isfinite([self.center, self.scale, self.fill]).all():
            raise DataError(f"{source}: numeric column {self.spec.name!r} holds values too large to scale (try log1p: true)")
        self.indicator = self._missing
        self._moments = None
        return self

    @property
    def width(self) -> int:
        return 2 if self.indicator else 1

    def transform(self, col, source: str) -> np.ndarray:
        """float32 [N, width]: the scaled value, then the missing indicator if there is one."""
        x = self._prepare(col, source)
        missing = np.isnan(x)
        x = (np.where(missing, self.fill, x) - self.center) / self.scale
        if self.indicator:
            return np.stack([x, missing.astype(np.float64)], axis=1).astype(np.float32)
        return x.astype(np.float32)[:, None]

    def state(self) -> dict[str, Any]:
        return {"center": self.center, "scale": self.scale, "fill": self.fill, "indicator": self.indicator}

    def load(self, state: dict[str, Any]) -> NumericEncoder:
        self.__dict__.update(state)
        return self


class _VocabularyEncoder:
    """Shared by categorical and sequence encoders: a vocabulary of training values (most frequent
    first, values seen fewer than ``min_count`` times left out) and the value -> id lookup.
    Known values get ids ``first_id, first_id + 1, ...``; anything else gets ``unknown_id``."""

    first_id: int
    unknown_id: int

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.vocab: list[str] = []
        self._lookup: dict[str, pa.Array] = {}

    def _fit_values(self, values) -> None:
        """The vocabulary of ``values`` alone: one :meth:`_count_values`, then :meth:`_finish_values`."""
        self._counts = None
        self._count_values(values)
        self._finish_values()

    def _count_values(self, values) -> None:
        """Add the value counts of one chunk (a streamed row group) to the running counts, kept
        as Arrow tables (value text, count) and merged every few chunks by a group-by sum, so a
        vocabulary of millions of values costs no Python loop per chunk."""
        # integer columns are counted as integers (no per-row string conversion); the vocabulary
        # is kept as strings either way, so CSV "3" and Parquet 3 map to the same id
        counts = pc.value_counts(values if pa.types.is_integer(values.type) else to_strings(values))
        text = counts.field("values")
        if not pa.types.is_string(text.type):
            text = pc.cast(text, pa.string())
        parts = getattr(self, "_counts", None)
        if parts is None:
            parts = self._counts = []
        parts.append(pa.table({"value": text, "count": pc.cast(counts.field("counts"), pa.int64())}))
        if len(parts) >= 16:
            self._counts = [_merge_counts(parts)]

    def _finish_values(self) -> pa.Table:
        """The vocabulary from the counts so far (values seen ``min_count`` times or more, most
        frequent first, ties by value: stable ids, readable files); returns every value's count."""
        parts = getattr(self, "_counts", None) or [pa.table({"value": pa.array([], pa.string()),
                                                             "count": pa.array([], pa.int64())})]
        counts = _merge_counts(parts)
        counts = counts.filter(pc.and_(pc.is_valid(counts["value"]), pc.not_equal(counts["value"], "")))
        kept = counts.filter(pc.greater_equal(counts["count"], self.spec.min_count))
        order = pc.sort_indices(kept, sort_keys=[("count", "descending"), ("value", "ascending")])
        self.vocab = kept["value"].take(order).to_pylist()
        self._lookup = {}
        self._counts = None
        return counts

    def _value_set(self, integer: bool) -> pa.Array | None:
        """The vocabulary as an Arrow array to look values up in: int64 for an integer column when
        every entry is a canonical integer (else None: compare as strings), string otherwise."""
        key = "int" if integer else "str"
        if key not in self._lookup:
            if integer:
                try:
                    ints = [int(v) for v in self.vocab]
                except ValueError:
                    ints = None
                ok = ints is not None and all(str(i) == v for i, v in zip(ints, self.vocab))
                self._lookup[key] = pa.array(ints, pa.int64()) if ok else None
            else:
                self._lookup[key] = pa.array(self.vocab, pa.string())
        return self._lookup[key]

    def _table(self, lookup: pa.Array) -> np.ndarray | None:
        """Dense id table ``ids[value + 1]`` for small non-negative integer vocabularies: one numpy
        gather per column instead of a hash lookup. Slot 0 (null, and any negative value once
        clipped) and the last slot (any value above the vocabulary, once clipped) hold the
        unknown id."""
        if "table" not in self._lookup:
            ints = lookup.to_numpy()
            table = None
            if len(ints) and ints.min() >= 0 and ints.max() < (1 << 20):
                table = np.full(int(ints.max()) + 3, self.unknown_id, dtype=np.int64)
                table[ints + 1] = np.arange(self.first_id, self.first_id + len(ints))
            self._lookup["table"] = table
        return self._lookup["table"]

    def _ids(self, values) -> np.ndarray:
        lookup = self._value_set(True) if pa.types.is_integer(values.type) else None
        table = self._table(lookup) if lookup is not None else None
        if table is not None:
            if values.null_count:
                values = pc.fill_null(values, -1)
            v = values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False) + 1
            return np.take(table, v, mode="clip")
        if lookup is not None:
            idx = pc.index_in(pc.cast(values, pa.int64()), value_set=lookup)
        else:
            idx = pc.index_in(to_strings(values), value_set=self._value_set(False))
        return pc.fill_null(pc.add(idx, self.first_id), self.unknown_id).to_numpy(zero_copy_only=False).astype(np.int64)

    def items(self, col, source: str):
        """The values ``col`` contributes to a vocabulary: the column itself (a sequence encoder:
        its items, flattened)."""
        return col

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load(self, state: dict[str, Any]):
        self.vocab = list(state["vocab"])
        self._lookup = {}
        return self


def count_shared(root: _VocabularyEncoder, members: list[tuple[_VocabularyEncoder, Any]], source: str) -> None:
    """``shared_with``: add one chunk of every column sharing ``root``'s vocabulary (``members``:
    each column with its own encoder, ``root`` first; categorical values and sequence items alike)
    to ``root``'s running counts; ``root.finish`` then keeps one vocabulary (``root``'s
    ``min_count``) for all. Hashed categorical features have none: their ids already agree."""
    if getattr(root.spec, "hash_buckets", None) is None:
        for enc, col in members:
            root._count_values(enc.items(col, source))


def fit_shared(root: _VocabularyEncoder, members: list[tuple[_VocabularyEncoder, Any]], source: str) -> None:
    """``shared_with`` on a whole training table: :func:`count_shared`, ``root.finish``, and the
    vocabulary given to every member."""
    root._counts = None
    count_shared(root, members, source)
    root.finish(source)
    for enc, _ in members[1:]:
        enc.load(root.state())


def _merge_counts(parts: list[pa.Table]) -> pa.Table:
    """One (value, count) table from several, counts of the same value summed."""
    if len(parts) == 1:
        return parts[0]
    merged = pa.concat_tables(parts).group_by("value").aggregate([("count", "sum")])
    return pa.table({"value": merged["value"], "count": merged["count_sum"]})


class CategoricalEncoder(_VocabularyEncoder):
    """Vocabulary of the training values; id 0 is OOV (unseen, rare or missing), known values 1..K.
    With ``hash_buckets: B`` there is no vocabulary: a value's id is ``1 + hash(value) mod B``
    (:func:`hash_ids`), the same for values seen in training and values never seen."""

    first_id, unknown_id = 1, OOV

    def fit(self, col, source: str) -> CategoricalEncoder:
        """Fit on a whole training column: one :meth:`partial_fit`, then :meth:`finish`."""
        self._counts = None
        return self.partial_fit(col, source).finish(source)

    def partial_fit(self, col, source: str) -> CategoricalEncoder:
        """Add one chunk's value counts (a streamed row group); :meth:`finish` keeps the vocabulary."""
        if self.spec.hash_buckets is None:
            self._count_values(col)
        return self

    def finish(self, source: str) -> CategoricalEncoder:
        if self.spec.hash_buckets is None:
            self._finish_values()
        return self

    @property
    def cardinality(self) -> int:
        if self.spec.hash_buckets is not None:
            return self.spec.hash_buckets + 1
        return len(self.vocab) + 1

    def transform(self, col, source: str) -> np.ndarray:
        if self.spec.hash_buckets is not None:
            return hash_ids(col, self.spec.hash_buckets)
        return self._ids(col)


def hash_ids(col, buckets: int) -> np.ndarray:
    """``1 + h(value) mod buckets`` per row, 0 for a missing or empty value. ``h`` is the first 8
    bytes of BLAKE2b over the value's text (an integer 3 and the string "3" hash alike, as the
    vocabulary treats them): stable across processes and machines, unlike Python's ``hash``.
    Each distinct value is hashed once."""
    import hashlib

    text = to_strings(col)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    encoded = pc.dictionary_encode(text)
    words = encoded.dictionary.to_pylist()
    per_word = np.array([0 if w in (None, "") else
                         1 + int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") % buckets
                         for w in words], dtype=np.int64)
    indices = encoded.indices
    if not len(per_word):
        return np.zeros(len(text), dtype=np.int64)
    valid = indices.is_valid().to_numpy(zero_copy_only=False)
    return np.where(valid, per_word[pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)], 0)


def char_ngrams(word: str, sizes: list[int], limit: int) -> list[str]:
    """The character n-grams of ``word`` wrapped in ``<`` and ``>`` for every length in
    ``sizes``, each once: those touching a boundary (prefixes, suffixes, the whole word) first,
    then the inner ones left to right, at most ``limit``."""
    w = f"<{word}>"
    edge, inner = [], []
    for n in sizes:
        for i in range(len(w) - n + 1):
            g = w[i : i + n]
            (edge if i == 0 or i + n == len(w) else inner).append(g)
    return list(dict.fromkeys(edge + inner))[:limit]


class SequenceEncoder(_VocabularyEncoder):
    """Variable-length categorical lists -> [N, max_len] ids, left-aligned, 0-padded, last items
    kept; id 0 is padding, 1 an unknown item, known items 2..K+1.

    With ``char_ngrams`` (text), each kept token's character n-grams are encoded too
    (:meth:`transform_ngrams`: ``[N, max_len, max_ngrams]`` ids, 0 padding, 1 an n-gram unseen
    in training, known n-grams 2..), so a word representation can see the spelling of words the
    vocabulary does not hold."""

    first_id, unknown_id = 2, SEQ_OOV

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self.ngram_vocab: list[str] = []
        self._ngram_ids: dict[str, int] | None = None

    def _lists(self, col, source: str) -> pa.Array:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if _is_string(col.type):
            lists = pc.split_pattern(pc.cast(col, pa.string()), self.spec.separator)
            # drop the empty items an empty cell or a leading/trailing/doubled separator leaves
            # (fit never puts "" in the vocabulary, so they would otherwise all become OOV)
            items, parents = pc.list_flatten(lists), pc.list_parent_indices(lists)
            keep = pc.not_equal(items, "")
            lengths = np.bincount(parents.filter(keep).to_numpy(), minlength=len(lists))
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            col = pa.ListArray.from_arrays(pa.array(offsets), items.filter(keep))
        if pa.types.is_null(col.type):  # a column only other sources of a multi-source run fill
            col = pa.array([[] for _ in range(len(col))], pa.list_(pa.string()))
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
            raise DataError(f"{source}: sequence column {self.spec.name!r} must hold lists or separated strings, found {col.type}")
        return pc.fill_null(col, pa.scalar([], col.type))

    def items(self, col, source: str):
        return pc.list_flatten(self._lists(col, source))

    def fit(self, col, source: str, *others) -> SequenceEncoder:
        """Fit on ``col`` (and ``others``: the columns of features sharing this vocabulary): one
        :meth:`partial_fit`, then :meth:`finish`."""
        self._counts = None
        return self.partial_fit(col, source, *others).finish(source)

    def partial_fit(self, col, source: str, *others) -> SequenceEncoder:
        """Add the item counts of one chunk of ``col`` (and ``others``) to the running counts."""
        for c in (col, *others):
            self._count_values(pc.list_flatten(self._lists(c, source)))
        return self

    def finish(self, source: str) -> SequenceEncoder:
        """The vocabulary (and character n-grams) from the counts seen."""
        counts = self._finish_values()
        if self.spec.char_ngrams:
            self._fit_ngrams(counts)
        return self

    def _fit_ngrams(self, counts: pa.Table) -> None:
        """n-gram vocabulary from every training word's count (rare words' n-grams count too)."""
        total: dict[str, int] = {}
        sizes, limit = list(self.spec.char_ngrams or []), self.spec.max_ngrams
        for word, c in zip(counts["value"].to_pylist(), counts["count"].to_pylist()):
            for g in char_ngrams(word, sizes, limit):
                total[g] = total.get(g, 0) + c
        kept = sorted(((g, c) for g, c in total.items() if c >= self.spec.min_count), key=lambda gc: (-gc[1], gc[0]))
        self.ngram_vocab = [g for g, _ in kept]
        self._ngram_ids = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 2

    @property
    def ngram_vocab_size(self) -> int:
        """n-gram ids including 0 (padding) and 1 (unknown); 0 without ``char_ngrams``."""
        return len(self.ngram_vocab) + 2 if self.spec.char_ngrams else 0

    def _kept(self, col, source: str):
        """The flat items, and (row, position, flat index) of the last ``max_len`` of each row."""
        lists = self._lists(col, source)
        offsets = lists.offsets.to_numpy().astype(np.int64)
        n, width = len(lists), self.spec.max_len
        starts, ends = offsets[:-1] - offsets[0], offsets[1:] - offsets[0]
        lengths = np.minimum(ends - starts, width)
        rows = np.repeat(np.arange(n), lengths)
        first = ends - lengths  # keep the last `width` items of each row
        pos = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return pc.list_flatten(lists), n, rows, pos, np.repeat(first, lengths) + pos

    def transform(self, col, source: str) -> np.ndarray:
        items, n, rows, pos, flat = self._kept(col, source)
        codes = self._ids(items)
        out = np.zeros((n, self.spec.max_len), dtype=np.int64)
        out[rows, pos] = codes[flat]
        return out

    def transform_ngrams(self, col, source: str) -> np.ndarray:
        """int32 ``[N, max_len, max_ngrams]``: the n-gram ids of every kept token (aligned with
        :meth:`transform`'s positions), 0-padded."""
        items, n, rows, pos, flat = self._kept(col, source)
        if self._ngram_ids is None:
            self._ngram_ids = {g: i + 2 for i, g in enumerate(self.ngram_vocab)}
        ids, limit = self._ngram_ids, self.spec.max_ngrams
        kept = to_strings(items.take(pa.array(flat))) if len(flat) else pa.array([], pa.string())
        unique = pc.unique(kept)
        table = np.zeros((len(unique) + 1, limit), dtype=np.int32)  # the last row: a null item
        sizes = list(self.spec.char_ngrams or [])
        for u, word in enumerate(unique.to_pylist()):
            if word is None:
                continue
            grams = [ids.get(g, SEQ_OOV) for g in char_ngrams(word, sizes, limit)]
            table[u, : len(grams)] = grams
        which = pc.fill_null(pc.index_in(kept, value_set=unique), len(unique)).to_numpy(zero_copy_only=False)
        out = np.zeros((n, self.spec.max_len, limit), dtype=np.int32)
        out[rows, pos] = table[which]
        return out

    def state(self) -> dict[str, Any]:
        out = super().state()
        if self.spec.char_ngrams:
            out["ngrams"] = self.ngram_vocab
        return out

    def load(self, state: dict[str, Any]):
        super().load(state)
        self.ngram_vocab = list(state.get("ngrams", []))
        self._ngram_ids = None
        return self


class DenseEncoder:
    """A list column of floats reshaped to a fixed per-row shape, scaled per element like numeric
    columns (``scale: standard`` z-scores every element with the training split's mean and
    standard deviation, ``minmax`` maps it to [0, 1], ``none`` leaves it; unset: ``standard`` for a
    vector, ``none`` for a tensor of two or more axes, e.g. an image its loader scaled). Missing elements (NaN)
    are imputed with the element's training mean (``nan: impute``) or refused (``nan: error``);
    inf is refused. A saved encoder without scaling state (runs saved before dense scaling)
    loads as it behaved then: no scaling, NaN left as is."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.shape: list[int] = list(spec.shape or [])
        self.mode: str | None = None  # None: loaded from a run saved before dense scaling
        self.center: np.ndarray | None = None  # per element, flat
        self.scale: np.ndarray | None = None
        self.fill: np.ndarray | None = None

    def _flat(self, col, source: str) -> np.ndarray:
        """[rows, size] float32, checked: every row of the shape, no inf, NaN per ``nan``."""
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        rows = len(col)
        size = int(np.prod(self.shape))
        while pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
            col = pc.list_flatten(col)
        flat = col.to_numpy(zero_copy_only=False).astype(np.float32)
        if flat.size != size * rows:  # also catches rows of different lengths whose total divides
            raise DataError(f"{source}: dense column {self.spec.name!r} rows do not all have shape {self.shape}")
        if not np.isfinite(flat).all():
            check_finite(flat, source=source, column=self.spec.name, what="dense column", row_size=size)
            if self.spec.nan == "error":
                row = int(np.flatnonzero(np.isnan(flat))[0]) // size
                raise DataError(
                    f"{source}: dense column {self.spec.name!r} has a missing value at row {row} (nan: error)", row=row
                )
        return flat.reshape(rows, size)

    def fit(self, col, source: str) -> DenseEncoder:
        """Fit on a whole training column: one :meth:`partial_fit`, then :meth:`finish`."""
        self._moments = None
        return self.partial_fit(col, source).finish(source)

    def partial_fit(self, col, source: str) -> DenseEncoder:
        """Add one chunk's per-element moments (float64, 8192 rows at a time) to the running ones."""
        if not self.shape:
            first = col[0].as_py()
            self.shape = list(np.asarray(first, dtype=np.float32).shape)
        x = self._flat(col, source)
        if getattr(self, "_moments", None) is None:
            self._moments = Moments((x.shape[1],))
        nan = np.isnan(x)
        has_nan = bool(nan.any())
        for a in range(0, x.shape[0], 8192):
            self._moments.add(x[a : a + 8192], nan[a : a + 8192] if has_nan else None)
        return self

    def finish(self, source: str) -> DenseEncoder:
        """Set the fill, the scaling mode and its per-element center and scale."""
        m = self._moments
        self._moments = None
        if (m.count == 0).any():
            raise DataError(f"{source}: dense column {self.spec.name!r} has no values at element {int(np.argmin(m.count))}")
        mean = m.mean
        self.fill = mean.astype(np.float32)
        self.mode = self.spec.scale or ("standard" if len(self.shape) == 1 else "none")
        self.spec.scale = self.mode  # the resolved default is saved with the spec
        if self.mode == "standard":
            std = m.std
            self.center, self.scale = mean, np.where(std > 0, std, 1.0)
        elif self.mode == "minmax":
            lo, hi = m.min, m.max
            self.center, self.scale = lo, np.where(hi > lo, hi - lo, 1.0)
        else:
            self.center, self.scale = np.zeros(len(mean)), np.ones(len(mean))  # kept out of state
        if not (np.isfinite(self.center).all() and np.isfinite(self.scale).all()):
            raise DataError(f"{source}: dense column {self.spec.name!r} holds values too large to scale")
        self.center, self.scale = self.center.astype(np.float32), self.scale.astype(np.float32)
        return self

    def transform(self, col, source: str) -> np.ndarray:
        x = self._flat(col, source)
        if self.mode is not None:
            if self.fill is not None and np.isnan(x).any():
                x = np.where(np.isnan(x), self.fill, x)
            if self.mode != "none":
                x = (x - self.center) / self.scale
        return x.reshape(-1, *self.shape)

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": self.shape}
        if self.mode is not None:
            out.update(mode=self.mode, fill=self.fill.tolist())
            if self.mode != "none":
                out.update(center=self.center.tolist(), scale=self.scale.tolist())
        return out

    def load(self, state: dict[str, Any]) -> DenseEncoder:
        self.shape = list(state["shape"])
        self.mode = state.get("mode")
        if self.mode is not None:
            self.fill = np.asarray(state["fill"], dtype=np.float32)
            if self.mode != "none":
                self.center = np.asarray(state["center"], dtype=np.float32)
                self.scale = np.asarray(state["scale"], dtype=np.float32)
        return self


ENCODERS = {
    "numeric": NumericEncoder,
    "categorical": CategoricalEncoder,
    "sequence": SequenceEncoder,
    "dense": DenseEncoder,
    "image": ImageEncoder,
}
