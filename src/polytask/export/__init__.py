"""Export a trained run for serving: ONNX or TorchScript, one named output per task.

``export_run(run_dir, out, format)`` writes the model (inputs: one tensor per feature group, in the
order of :mod:`polytask.export.inputs`, with a dynamic batch axis; outputs: one per task, named
after the task, what :meth:`polytask.run.Run.predict` gives, or the raw logits with
``raw=True``), ``preprocess.json`` (the fitted encoders, :mod:`polytask.export.preprocess`) and
``polytask_preprocess.py`` (a copy of the numpy-only reference preprocessor,
:mod:`polytask.export.reference`) beside it. An architecture that cannot be exported says why
(:meth:`~polytask.models.base.MultiTaskModel.export_refusal`); an exported model that does not
reproduce PyTorch on generated batches is refused, not written. ``onnx`` and ``onnxruntime`` are
imported only by an ONNX export.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: format -> the model file's usual suffix
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
#: the files written beside the model
PREPROCESS, REFERENCE = "preprocess.json", "polytask_preprocess.py"
#: rows of the batch the model is traced on, and of the batches it is checked on (seed, rows)
EXAMPLE_ROWS = 37
CHECKS = ((1, 1), (2, 5), (3, 64))


@dataclass
class ExportResult:
    """What :func:`export_run` wrote."""

    model: Path
    preprocess: Path
    reference: Path
    #: the content of ``preprocess.json``
    spec: dict[str, Any] = field(repr=False)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.spec["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.spec["outputs"]


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, format: str = "onnx", *, raw: bool = False,
               preprocess: str | os.PathLike | None = None, with_encoders: bool = False) -> ExportResult:
    """Export the run in ``run_dir`` to ``out`` (``format``: ``onnx`` or ``torchscript``), with
    ``preprocess.json`` (at ``preprocess``, default beside ``out``) and the reference preprocessor
    beside it. ``with_encoders`` (ONNX): the numeric and categorical encoders go into the graph,
    whose inputs are then the table's columns (:mod:`polytask.export.onnx_encoders`). ExportError
    when the format is unknown, the architecture refuses, the exporter fails or the exported model
    does not reproduce PyTorch; DataError for a run directory that does not load."""
    from polytask.errors import ExportError

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} (known: {', '.join(FORMATS)})")
    if with_encoders and format != "onnx":
        raise ExportError("--with-encoders puts the encoders into an ONNX graph: use --format onnx")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory (give a file name: -o {out / ('model' + FORMATS[format])})")
    preprocess = Path(preprocess) if preprocess is not None else out.with_name(PREPROCESS)
    if preprocess.resolve() == out.resolve():
        raise ExportError(f"{out}: the model and preprocess.json cannot be the same file")

    import torch

    from polytask.export.inputs import example_inputs, input_groups
    from polytask.export.preprocess import preprocess_spec
    from polytask.export.wrapper import ExportWrapper
    from polytask.fileio import atomic_path, atomic_write_text, make_dirs
    from polytask.run import Run

    run = Run.load(run_dir, device="cpu")
    model = run.model.eval()
    name = run.config.model.name
    refusal = model.export_refusal(format)
    if refusal:
        raise ExportError(f"{name} cannot be exported to {format}: {refusal}")
    groups = input_groups(run.preprocessor)
    input_names = [g.name for g in groups]
    output_names = [t.name for t in run.tasks]
    _check_output_names(output_names, input_names)
    wrapper = ExportWrapper(model, run.tasks, [g.key for g in groups], raw=raw).eval()
    example = example_inputs(groups, model.input_spec, EXAMPLE_ROWS, seed=0)
    checks = [example_inputs(groups, model.input_spec, rows, seed=seed) for seed, rows in CHECKS]
    encoders = preprocess_spec(run.preprocessor, groups)
    about = {"file": os.path.relpath(out.resolve(), preprocess.resolve().parent), "format": format, "raw": raw,
             "architecture": name, "run": str(Path(run_dir).resolve()), "torch": torch.__version__}
    spec = {"format": encoders["format"], "version": encoders["version"], "model": about, "inputs": encoders["inputs"],
            "outputs": _outputs(run.tasks, wrapper.reference(example), raw), "features": encoders["features"]}
    if with_encoders:
        from polytask.export.onnx_encoders import encoder_refusal

        reason = encoder_refusal(spec)
        if reason:
            raise ExportError(f"--with-encoders: {reason}; export without it and encode with {REFERENCE}")
        spec["columns"] = [{"name": f["name"], "dtype": "float64" if f["type"] == "numeric" else "string",
                            "shape": ["batch"]} for f in spec["features"]]
    make_dirs(out.parent)
    make_dirs(preprocess.parent)
    try:
        with atomic_path(out) as tmp:
            if format == "onnx":
                from polytask.export.onnx import export_onnx

                info = export_onnx(wrapper, example, checks, tmp, input_names, output_names)
                if with_encoders:
                    from polytask.export.onnx_encoders import bake_encoders

                    info.update(bake_encoders(tmp, spec, output_names))
            else:
                from polytask.export.torchscript import export_torchscript

                info = export_torchscript(wrapper, example, checks, tmp, output_names,
                                          {PREPROCESS: json.dumps({k: v for k, v in spec.items() if k != "model"})})
    except ExportError as exc:
        raise ExportError(f"{name} could not be exported to {format}: {exc}") from None
    about.update(info)
    text = json.dumps(spec, indent=1)
    atomic_write_text(preprocess, text)
    spec = json.loads(text)
    reference = preprocess.with_name(REFERENCE)
    with atomic_path(reference) as tmp:
        shutil.copyfile(Path(__file__).with_name("reference.py"), tmp)
    return ExportResult(out, preprocess, reference, spec)


def _check_output_names(names: list[str], inputs: list[str]) -> None:
    """Every task name can name an output: not empty, no whitespace or control character, not an
    input's name."""
    from polytask.errors import ExportError

    for name in names:
        if not name or any(c.isspace() or not c.isprintable() for c in name):
            raise ExportError(f"task {name!r}: its name cannot name an exported output (spaces and control characters "
                              "are not allowed); train the run with a task name without them")
        if name in inputs:
            raise ExportError(f"task {name!r}: its name is also the name of an input of the exported model; "
                              "train the run with another task name")


def _outputs(tasks: list[Any], example: list[Any], raw: bool) -> list[dict[str, Any]]:
    """The ``outputs`` section of preprocess.json: per task its name, kind, shape and (for kinds with
    classes) the class of each column."""
    out = []
    for t, value in zip(tasks, example):
        entry: dict[str, Any] = {"name": t.name, "task": t.name, "kind": t.kind, "shape": ["batch", *value.shape[1:]],
                                 "value": "raw output (logits)" if raw else "prediction (as polytask predict)"}
        classes = getattr(t.spec, "classes", None)
        if classes is not None:
            entry["classes"] = [c if isinstance(c, (str, int, float, bool)) else str(c) for c in classes]
        out.append(entry)
    return out
