"""Reference preprocessor for an exported polytask model: columns in, the model's input arrays out.

This file needs only numpy and the Python standard library, so it can be copied next to an
exported model and used where polytask is not installed (``polytask export`` writes a copy,
``polytask_preprocess.py``, beside ``preprocess.json``)::

    import onnxruntime, polytask_preprocess
    pre = polytask_preprocess.ReferencePreprocessor.load("preprocess.json")
    session = onnxruntime.InferenceSession("model.onnx")
    outputs = session.run(None, pre({"age": [39, None], "city": ["paris", "lima"]}))

It encodes exactly as the run's :class:`polytask.data.preprocessor.Preprocessor` does (tested on
census): numeric columns scaled with the training split's constants (missing values imputed, plus
the 0/1 indicator where the training split had missing values), categorical values looked up in
the training vocabulary (unseen, empty and missing values get the out-of-vocabulary id) or hashed,
sequences split, cut to their last ``max_len`` items and padded, character n-grams, dense vectors
scaled per element. Values compare as text the way polytask compares them: ``3``, ``3.0`` and
``"3"`` are the same category, ``True`` is ``"true"``. Image features are not decoded here: pass
each row as a uint8 array ``[C, H, W]`` of the recorded size (polytask decodes with Pillow and
resizes bilinearly with antialiasing).

Input: a dict of columns (lists or numpy arrays), a list of records (dicts), a pandas DataFrame or
a pyarrow Table. Output: a dict ``{input name: array}`` in the model's input order
(``preprocess.json``'s ``inputs``). A value a column cannot take raises ``ValueError`` naming the
column and row.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FORMAT = "polytask-preprocess"
VERSION = 1


class ReferencePreprocessor:
    """Encode columns for an exported model from its ``preprocess.json`` (see the module docstring)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if spec.get("format") != FORMAT:
            raise ValueError(f"not a polytask preprocess.json (format {spec.get('format')!r}, expected {FORMAT!r})")
        if int(spec.get("version", 0)) > VERSION:
            raise ValueError(f"preprocess.json version {spec['version']} is newer than this preprocessor ({VERSION})")
        self.spec = spec
        self.inputs = list(spec["inputs"])
        self.features = list(spec["features"])
        self._ids = {f["name"]: {v: f["first_id"] + i for i, v in enumerate(f["vocabulary"])}
                     for f in self.features if f.get("vocabulary") is not None}
        self._ngram_ids = {f["name"]: {g: f["char_ngrams"]["first_id"] + i for i, g in enumerate(f["char_ngrams"]["vocabulary"])}
                           for f in self.features if f.get("char_ngrams")}

    @classmethod
    def load(cls, path: str) -> ReferencePreprocessor:
        with open(path, encoding="utf-8") as fh:
            return cls(json.load(fh))

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    def __call__(self, data: Any) -> dict[str, np.ndarray]:
        return self.transform(data)

    def transform(self, data: Any) -> dict[str, np.ndarray]:
        """``{input name: array}`` for ``data`` (a dict of columns or a list of records)."""
        columns = _columns(data)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        parts: dict[str, list[np.ndarray]] = {i["name"]: [] for i in self.inputs}
        for f in self.features:
            name = f["name"]
            if name in columns:
                values = columns[name]
            elif f.get("optional"):
                values = [None] * n
            else:
                raise ValueError(f"missing column {name!r}")
            encode = getattr(self, f"_{f['type']}")
            for key, array in encode(f, values).items():
                parts[key].append(array)
        out = {}
        for i in self.inputs:
            arrays = parts[i["name"]]
            if i["group"] in ("numeric", "categorical"):
                array = np.concatenate(arrays, axis=1) if arrays else np.zeros((n, 0))
            else:
                array = arrays[0]
            out[i["name"]] = np.ascontiguousarray(array, dtype=i["dtype"]).reshape(n, *i["shape"][1:])
        return out

    # -- one method per feature type: {input name: [rows, ...] array} ------------------------------
    def _numeric(self, f: Mapping[str, Any], values: Sequence[Any]) -> dict[str, np.ndarray]:
        x = _floats(values, f["name"])
        infinite = np.isinf(x)
        if infinite.any():
            row = int(np.flatnonzero(infinite)[0])
            raise ValueError(f"numeric column {f['name']!r} holds {x[row]:g} at row {row}; values must be finite")
        missing = np.isnan(x)
        if f["nan"] == "error" and missing.any():
            raise ValueError(f"column {f['name']!r} has a missing value at row {int(np.flatnonzero(missing)[0])} (nan: error)")
        if f["log1p"]:
            x = np.sign(x) * np.log1p(np.abs(x))
        x = (np.where(missing, f["fill"], x) - f["center"]) / f["scale"]
        if f["indicator"]:
            return {f["input"]: np.stack([x, missing.astype(np.float64)], axis=1).astype(np.float32)}
        return {f["input"]: x.astype(np.float32)[:, None]}

    def _categorical(self, f: Mapping[str, Any], values: Sequence[Any]) -> dict[str, np.ndarray]:
        if f.get("hash_buckets") is not None:
            buckets = f["hash_buckets"]
            ids = _memoised(values, lambda v: hash_id(text(v), buckets))
        else:
            lookup, unknown = self._ids[f["name"]], f["unknown_id"]
            ids = _memoised(values, lambda v: lookup.get(text(v), unknown))
        return {f["input"]: np.asarray(ids, dtype=np.int64).reshape(-1, 1)}

    def _sequence(self, f: Mapping[str, Any], values: Sequence[Any]) -> dict[str, np.ndarray]:
        width, sep = f["max_len"], f["separator"]
        lookup, unknown = self._ids[f["name"]], f["unknown_id"]
        ids = np.full((len(values), width), f["pad_id"], dtype=np.int64)
        grams = f.get("char_ngrams")
        ngrams = np.zeros((len(values), width, grams["max_ngrams"]), dtype=np.int32) if grams else None
        for r, v in enumerate(values):
            items = _items(v, sep, f["name"], r)[-width:] if width else []
            texts = _texts(items)
            ids[r, : len(texts)] = [lookup.get(t, unknown) if t is not None else unknown for t in texts]
            if ngrams is not None:
                table = self._ngram_ids[f["name"]]
                for p, t in enumerate(texts):
                    if t is None:
                        continue
                    row = [table.get(g, grams["unknown_id"]) for g in char_ngrams(t, grams["sizes"], grams["max_ngrams"])]
                    ngrams[r, p, : len(row)] = row
        out = {f["input"]: ids}
        if ngrams is not None:
            out[grams["input"]] = ngrams
        return out

    def _dense(self, f: Mapping[str, Any], values: Sequence[Any]) -> dict[str, np.ndarray]:
        size = int(np.prod(f["shape"]))
        rows = []
        for r, v in enumerate(values):
            flat = np.asarray(v if v is not None else [], dtype=np.float32).reshape(-1)
            if flat.size != size:
                raise ValueError(f"dense column {f['name']!r}: row {r} has {flat.size} values, expected shape {f['shape']}")
            rows.append(flat)
        x = np.stack(rows) if rows else np.zeros((0, size), dtype=np.float32)
        infinite = np.isinf(x)
        if infinite.any():
            raise ValueError(f"dense column {f['name']!r} holds an infinite value at row {int(np.flatnonzero(infinite.any(1))[0])}")
        if f["nan"] == "error" and np.isnan(x).any():
            raise ValueError(f"dense column {f['name']!r} has a missing value at row {int(np.flatnonzero(np.isnan(x).any(1))[0])} (nan: error)")
        mode = f.get("mode")
        if mode is not None:
            if np.isnan(x).any():
                x = np.where(np.isnan(x), np.asarray(f["fill"], dtype=np.float32), x)
            if mode != "none":
                x = (x - np.asarray(f["center"], dtype=np.float32)) / np.asarray(f["scale"], dtype=np.float32)
        return {f["input"]: x.reshape(-1, *f["shape"])}

    def _image(self, f: Mapping[str, Any], values: Sequence[Any]) -> dict[str, np.ndarray]:
        shape = tuple(f["shape"])
        rows = []
        for r, v in enumerate(values):
            pixels = np.asarray(v)
            if pixels.dtype != np.uint8 or pixels.shape != shape:
                raise ValueError(f"image column {f['name']!r}: row {r} must be a decoded uint8 array of shape {list(shape)} "
                                 f"(got {pixels.dtype} {list(pixels.shape)}); the reference preprocessor does not decode images")
            rows.append(pixels)
        return {f["input"]: np.stack(rows) if rows else np.zeros((0, *shape), dtype=np.uint8)}


# -- value conversion, as polytask's encoders do it -----------------------------------------------
def _columns(data: Any) -> dict[str, Sequence[Any]]:
    """A dict of columns from a dict of columns, a pandas DataFrame, a pyarrow Table or a list of records."""
    if hasattr(data, "to_pydict"):  # a pyarrow Table or RecordBatch
        data = data.to_pydict()
    if isinstance(data, Mapping) or hasattr(data, "columns"):
        return {str(k): list(data[k]) if not isinstance(data[k], np.ndarray) else data[k] for k in data}
    records = list(data)
    if not all(isinstance(r, Mapping) for r in records):
        raise ValueError("data must be a dict of columns or a list of records (dicts)")
    names = list(dict.fromkeys(k for r in records for k in r))
    return {k: [r.get(k) for r in records] for k in names}


def _floats(values: Sequence[Any], column: str) -> np.ndarray:
    """float64 numbers, NaN where missing (None, NaN, an empty or blank string)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, str):
            s = v.strip()
            if not s:
                out[i] = math.nan
                continue
            if "_" in s:  # Python's float() takes "1_000"; polytask (Arrow) does not
                raise ValueError(f"column {column!r} must be numeric but row {i} holds {v!r}")
            try:
                out[i] = float(s)
            except ValueError:
                raise ValueError(f"column {column!r} must be numeric but row {i} holds {v!r}") from None
        else:
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"column {column!r} must be numeric but row {i} holds {v!r}") from None
    return out


def text(v: Any) -> str | None:
    """A categorical value as the text polytask compares (None when missing): integral numbers
    without a decimal point, other floats in shortest form, booleans as ``true``/``false``."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return None
        if f == math.floor(f) and abs(f) <= 2.0**53:
            return str(int(f))
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(f))
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return str(v)


def _texts(values: Sequence[Any]) -> list[str | None]:
    return [text(v) for v in values]


def _memoised(values: Sequence[Any], convert: Any) -> list[Any]:
    """``[convert(v) for v in values]``, converting each distinct value once (a column holds few).
    Keyed by type and value: ``True``, ``1`` and ``1.0`` are equal dict keys but different texts."""
    memo: dict[Any, Any] = {}
    out = []
    for v in values:
        key = (type(v), v)
        try:
            out.append(memo[key])
        except KeyError:
            memo[key] = result = convert(v)
            out.append(result)
        except TypeError:  # an unhashable value
            out.append(convert(v))
    return out


def _items(v: Any, separator: str, column: str, row: int) -> list[Any]:
    """A sequence cell's items: a list as it is, a string split on ``separator`` (empty items
    dropped), nothing for a missing cell."""
    if v is None:
        return []
    if isinstance(v, str):
        return [s for s in v.split(separator) if s != ""]
    if isinstance(v, (list, tuple, np.ndarray)):
        return list(v)
    raise ValueError(f"sequence column {column!r} must hold lists or separated strings; row {row} holds {v!r}")


def hash_id(t: str | None, buckets: int) -> int:
    """``1 + h(t) mod buckets``, 0 for a missing or empty value; ``h`` the first 8 bytes of BLAKE2b
    of the UTF-8 text, little-endian (as ``polytask.data.encoders.hash_ids``)."""
    if t is None or t == "":
        return 0
    return 1 + int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") % buckets


def char_ngrams(word: str, sizes: Sequence[int], limit: int) -> list[str]:
    """The character n-grams of ``word`` wrapped in ``<`` and ``>`` for every length in ``sizes``,
    each once: those touching a boundary first, then the inner ones left to right, at most
    ``limit`` (as ``polytask.data.encoders.char_ngrams``; the tests keep the two in step)."""
    w = f"<{word}>"
    edge, inner = [], []
    for n in sizes:
        for i in range(len(w) - n + 1):
            g = w[i : i + n]
            (edge if i == 0 or i + n == len(w) else inner).append(g)
    return list(dict.fromkeys(edge + inner))[:limit]
