"""The numeric and categorical encoders baked into an exported ONNX graph (``--with-encoders``).

A tabular recommender's service then feeds the table's columns to one file, with no
preprocessor: one graph input per column, named after it, with a dynamic batch axis:

- a numeric column as ``float64 [batch]`` (NaN for a missing cell): optional signed ``log1p``,
  the training mean for a missing value, ``(x - center) / scale`` in float64 (as the encoder
  computes it), then float32; a feature with a missing indicator adds its 0/1 column;
- a categorical column as ``string [batch]``: the value's text as the training file held it
  (``"3"``, not ``"3.0"``; an empty string for a missing cell), looked up in the training
  vocabulary by ONNX-ML's ``LabelEncoder`` (an unseen or empty value gets the unknown id 0).

The graph is built from ``preprocess.json``'s ``features`` section (:mod:`polytask.export.preprocess`)
and placed in front of the exported model with :func:`onnx.compose.merge_models`. Sequence, dense
and image features, hashed categorical features (BLAKE2b is no ONNX operator), ``nan: error``
(a graph cannot refuse a row) and multi-source runs keep the encoded inputs: the export says so in
one line and ``polytask_preprocess.py`` remains the way to feed them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polytask.errors import ExportError

#: ONNX-ML opset of the LabelEncoder used (string keys -> int64 values, a default for the rest)
ML_OPSET = 2


def encoder_refusal(spec: dict[str, Any]) -> str | None:
    """Why the encoders of ``spec`` (preprocess.json) cannot go into the graph, or None."""
    groups = {i["group"] for i in spec["inputs"]}
    if not groups <= {"numeric", "categorical"}:
        other = sorted(groups - {"numeric", "categorical"})
        return f"only numeric and categorical features go into the graph; this run also has {', '.join(other)}"
    for f in spec["features"]:
        if f.get("hash_buckets") is not None:
            return f"categorical feature {f['name']!r} is hashed (hash_buckets): BLAKE2b is not an ONNX operator"
        if f["type"] == "numeric" and f.get("nan") == "error":
            return f"numeric feature {f['name']!r} has nan: error, which a graph cannot enforce"
        if f.get("optional"):
            return f"column {f['name']!r} is optional (a multi-source run)"
        if f["name"] in groups:
            return f"column {f['name']!r} has the name of the model input it would feed"
    return None


def with_encoders(model: Any, spec: dict[str, Any]) -> Any:
    """``model`` (an exported ``onnx.ModelProto`` over the encoded ``numeric``/``categorical``
    inputs) with the encoders of ``spec`` in front: one input per column (see the module doc), the
    same outputs. ExportError naming the reason when they cannot go into the graph."""
    import onnx
    from onnx import helper

    reason = encoder_refusal(spec)
    if reason:
        raise ExportError(f"--with-encoders: {reason}; export without it and encode with polytask_preprocess.py")
    opsets = {o.domain or "": o.version for o in model.opset_import}
    encoders = encoder_model(spec, opsets.get("", 18), model.ir_version)
    model = onnx.ModelProto.FromString(model.SerializeToString())  # a copy: the merged model needs the ML domain
    if "ai.onnx.ml" not in opsets:
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    io_map = [(o.name, o.name) for o in encoders.graph.output]
    return onnx.compose.merge_models(encoders, model, io_map=io_map, producer_name="polytask")


def encoder_model(spec: dict[str, Any], opset: int, ir_version: int) -> Any:
    """The encoders of ``spec`` alone as an ONNX model: the columns in, the model's encoded
    ``numeric`` (float32 ``[batch, D]``) and ``categorical`` (int32 ``[batch, F]``) inputs out."""
    import onnx
    from onnx import TensorProto, helper

    nodes: list[Any] = []
    inputs: list[Any] = []
    parts: dict[str, list[str]] = {"numeric": [], "categorical": []}

    def const(name: str, value: Any, dtype: Any = np.float64) -> str:
        nodes.append(helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.asarray(value, dtype), name)))
        return name

    axes = const("polytask_axis1", [1], np.int64)
    for i, f in enumerate(spec["features"]):
        col, p = f["name"], f"polytask_f{i}"
        if f["type"] == "numeric":
            inputs.append(helper.make_tensor_value_info(col, TensorProto.DOUBLE, ["batch"]))
            x = col
            if f["log1p"]:  # sign(x) * log(1 + |x|)
                nodes += [helper.make_node("Abs", [x], [f"{p}_abs"]),
                          helper.make_node("Add", [f"{p}_abs", const(f"{p}_one", 1.0)], [f"{p}_1p"]),
                          helper.make_node("Log", [f"{p}_1p"], [f"{p}_log"]),
                          helper.make_node("Sign", [x], [f"{p}_sign"]),
                          helper.make_node("Mul", [f"{p}_sign", f"{p}_log"], [f"{p}_l1p"])]
                x = f"{p}_l1p"
            nodes += [helper.make_node("IsNaN", [col], [f"{p}_missing"]),
                      helper.make_node("Where", [f"{p}_missing", const(f"{p}_fill", f["fill"]), x], [f"{p}_filled"]),
                      helper.make_node("Sub", [f"{p}_filled", const(f"{p}_center", f["center"])], [f"{p}_centered"]),
                      helper.make_node("Div", [f"{p}_centered", const(f"{p}_scale", f["scale"])], [f"{p}_scaled"]),
                      helper.make_node("Cast", [f"{p}_scaled"], [f"{p}_f32"], to=TensorProto.FLOAT),
                      helper.make_node("Unsqueeze", [f"{p}_f32", axes], [f"{p}_value"])]
            parts["numeric"].append(f"{p}_value")
            if f["indicator"]:
                nodes += [helper.make_node("Cast", [f"{p}_missing"], [f"{p}_m32"], to=TensorProto.FLOAT),
                          helper.make_node("Unsqueeze", [f"{p}_m32", axes], [f"{p}_indicator"])]
                parts["numeric"].append(f"{p}_indicator")
        elif f["type"] == "categorical":
            inputs.append(helper.make_tensor_value_info(col, TensorProto.STRING, ["batch"]))
            vocab = list(f["vocabulary"]) or [""]  # an empty vocabulary: every value is unknown
            ids = list(range(f["first_id"], f["first_id"] + len(f["vocabulary"]))) or [f["unknown_id"]]
            nodes += [helper.make_node("LabelEncoder", [col], [f"{p}_ids"], domain="ai.onnx.ml", keys_strings=vocab,
                                       values_int64s=ids, default_int64=f["unknown_id"]),
                      helper.make_node("Cast", [f"{p}_ids"], [f"{p}_i32"], to=TensorProto.INT32),
                      helper.make_node("Unsqueeze", [f"{p}_i32", axes], [f"{p}_id"])]
            parts["categorical"].append(f"{p}_id")
    outputs = []
    for group, dtype in (("numeric", TensorProto.FLOAT), ("categorical", TensorProto.INT32)):
        if parts[group]:
            nodes.append(helper.make_node("Concat", parts[group], [group], axis=1))
            outputs.append(helper.make_tensor_value_info(group, dtype, ["batch", None]))
    graph = helper.make_graph(nodes, "polytask_encoders", inputs, outputs)
    imports = [helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    return helper.make_model(graph, opset_imports=imports, ir_version=ir_version)


def column_arrays(table: Any, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """The graph inputs of ``--with-encoders`` from a pyarrow table: numeric columns as float64
    (NaN for nulls), categorical ones as their text (empty for nulls), as ``polytask predict``
    reads them."""
    import pyarrow.compute as pc

    from polytask.data.encoders import to_float, to_strings

    out: dict[str, np.ndarray] = {}
    for f in spec["features"]:
        col = table.column(f["name"])
        if f["type"] == "numeric":
            out[f["name"]] = to_float(col, source="input", column=f["name"])
        else:
            text = pc.fill_null(to_strings(col), "")
            out[f["name"]] = np.asarray(text.to_pylist(), dtype=object)
    return out


def sample_columns(spec: dict[str, Any], rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Generated graph inputs for checking a baked model: numeric values around the training
    scale with missing cells, categorical values drawn from the vocabulary plus an unseen and an
    empty one."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for f in spec["features"]:
        if f["type"] == "numeric":
            x = rng.normal(f["center"], f["scale"], rows)
            if f["log1p"]:
                x = np.sign(x) * np.expm1(np.abs(x))
            x[rng.random(rows) < 0.1] = np.nan
            out[f["name"]] = x
        else:
            choices = [*f["vocabulary"][:50], "polytask-unseen-value", ""]
            out[f["name"]] = np.asarray([choices[i] for i in rng.integers(0, len(choices), rows)], dtype=object)
    return out


def bake_encoders(path: Any, spec: dict[str, Any], output_names: list[str]) -> dict[str, Any]:
    """Replace the exported ONNX model at ``path`` with :func:`with_encoders`'s, after checking
    that on generated columns it gives what the plain model gives on the reference preprocessor's
    arrays (:mod:`polytask.export.reference`); ``{"encoders_in_graph": True}`` for preprocess.json."""
    import onnx
    import onnxruntime

    from polytask.export.checks import ATOL, RTOL
    from polytask.export.reference import ReferencePreprocessor

    plain = onnx.load(str(path), load_external_data=False)
    merged = with_encoders(plain, spec)
    onnx.checker.check_model(merged)
    reference = ReferencePreprocessor(spec)
    sessions = [onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for m in (plain, merged)]
    for rows, seed in ((1, 1), (5, 2), (64, 3)):
        columns = sample_columns(spec, rows, seed)
        want = sessions[0].run(output_names, reference({k: list(v) for k, v in columns.items()}))
        got = sessions[1].run(output_names, columns)
        for name, g, w in zip(output_names, got, want):
            if g.shape != w.shape or not np.allclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True):
                raise ExportError(f"--with-encoders: output {name!r} of the graph with encoders differs from the model fed "
                                  f"by the reference preprocessor on {rows} generated rows")
    onnx.save(merged, str(path))
    return {"encoders_in_graph": True}
