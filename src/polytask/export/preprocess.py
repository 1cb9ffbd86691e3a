"""``preprocess.json``: the fitted encoders of a run in a serving-oriented form.

Written by ``polytask export`` beside the model; read by the standalone reference preprocessor
(:mod:`polytask.export.reference`, numpy only). Layout (version 1)::

    {"format": "polytask-preprocess", "version": 1,
     "model": {"file": "model.onnx", "format": "onnx", "raw": false, "opset": 18, "run": "<run dir>"},
     "inputs":  [{"name": "numeric", "group": "numeric", "dtype": "float32", "shape": ["batch", 8],
                  "features": ["age", ...]}, ...],             # the model's positional inputs, in order
     "outputs": [{"name": "income", "task": "income", "kind": "binary", "shape": ["batch"],
                  "value": "probability"}, ...],             # the model's outputs, in order
     "features": [...]}                                      # one entry per input column, in order

Every feature entry has ``name`` (the column), ``type`` and ``input`` (the name of the input it
goes to); then by type:

- ``numeric``: ``log1p``, ``nan`` (``impute``/``error``), ``fill`` (the value a missing cell
  takes), ``center`` and ``scale`` (the encoded value is ``(x - center) / scale``, computed in
  float64), ``indicator`` (true: a second 0/1 column, 1 where the cell was missing);
- ``categorical``: ``vocabulary`` (training values as text, most frequent first), ``first_id`` (the
  id of the first), ``unknown_id`` (unseen, empty or missing values); or ``hash_buckets`` with
  ``hash`` (``1 + blake2b-64-le(text) mod buckets``, 0 when missing);
- ``sequence``: ``separator`` (for string cells), ``max_len`` (the last items kept, left-aligned),
  ``pad_id``, ``vocabulary``, ``first_id``, ``unknown_id``, and ``char_ngrams`` (``sizes``,
  ``max_ngrams``, ``vocabulary``, ``first_id``, ``unknown_id``, ``input``) when the feature has them;
- ``dense``: ``shape``, ``nan``, ``mode`` (``standard``/``minmax``/``none``, null for runs saved
  before dense scaling), ``fill``, ``center``, ``scale`` (per element, float32);
- ``image``: ``shape`` ``[C, H, W]`` of the uint8 pixels the model takes (decoding and resizing
  are the caller's); the model itself scales and normalises them.

``optional: true`` marks a column an input may lack (a multi-source run's): it is then empty.
"""

from __future__ import annotations

from typing import Any

from polytask.data.encoders import PAD, SEQ_OOV
from polytask.data.preprocessor import Preprocessor
from polytask.export.inputs import InputGroup, input_groups
from polytask.export.reference import FORMAT, VERSION


def preprocess_spec(pre: Preprocessor, groups: list[InputGroup] | None = None) -> dict[str, Any]:
    """The ``inputs`` and ``features`` sections of ``preprocess.json`` for a fitted preprocessor
    (the caller adds ``model`` and ``outputs``)."""
    groups = groups if groups is not None else input_groups(pre)
    by_key = {g.key: g.name for g in groups}
    optional = set(pre.optional_columns)
    features = []
    for f in pre.features:
        enc = pre.encoders[f.name]
        entry: dict[str, Any] = {"name": f.name, "type": f.type}
        if f.type == "numeric":
            entry.update(input=by_key["numeric"], log1p=f.log1p, nan=f.nan, fill=enc.fill, center=enc.center,
                         scale=enc.scale, indicator=bool(enc.indicator))
        elif f.type == "categorical":
            entry["input"] = by_key["categorical"]
            if f.hash_buckets is not None:
                entry.update(hash_buckets=f.hash_buckets, hash="1 + blake2b(utf-8 text, 8 bytes, little-endian) mod buckets")
            else:
                entry.update(vocabulary=list(enc.vocab), first_id=enc.first_id, unknown_id=enc.unknown_id)
        elif f.type == "sequence":
            entry.update(input=by_key[f"seq:{f.name}"], separator=f.separator, max_len=f.max_len, pad_id=PAD,
                         vocabulary=list(enc.vocab), first_id=enc.first_id, unknown_id=enc.unknown_id)
            if f.char_ngrams:
                entry["char_ngrams"] = {"input": by_key[f"ngrams:{f.name}"], "sizes": list(f.char_ngrams),
                                        "max_ngrams": f.max_ngrams, "vocabulary": list(enc.ngram_vocab),
                                        "first_id": SEQ_OOV + 1, "unknown_id": SEQ_OOV}
        elif f.type == "image":
            entry.update(input=by_key[f"dense:{f.name}"], shape=list(enc.shape))
        else:
            state = enc.state()
            entry.update(input=by_key[f"dense:{f.name}"], shape=list(enc.shape), nan=f.nan, mode=state.get("mode"),
                         **{k: state[k] for k in ("fill", "center", "scale") if k in state})
        if f.name in optional:
            entry["optional"] = True
        features.append(entry)
    inputs = [{"name": g.name, "group": g.key, "dtype": g.dtype, "shape": ["batch", *g.shape], "features": list(g.features)}
              for g in groups]
    return {"format": FORMAT, "version": VERSION, "inputs": inputs, "features": features}
