"""ONNX export of an :class:`~polytask.export.wrapper.ExportWrapper` with a dynamic batch axis.

``torch.onnx.export`` with ``dynamo=True`` (``torch.export``, torch 2.13's default) is tried first:
it exports every tabular, image and behaviour-sequence model, including ops the TorchScript-based
exporter lacks (ESMM's ``logaddexp``). Models it cannot capture (the packed LSTMs of the ``tokens``
encoder, of ``lstm`` columns and of JMT, whose shapes depend on the data) are then exported by the
TorchScript-based exporter (``dynamo=False``), which maps packed sequences to ONNX LSTMs with
sequence lengths. The first file that passes ``onnx.checker`` and reproduces PyTorch with
onnxruntime on batches of 1, 5 and 64 rows is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.errors import ExportError
from polytask.export.checks import check_outputs, first_line


def export_onnx(wrapper: torch.nn.Module, example: Sequence[torch.Tensor], checks: Sequence[Sequence[torch.Tensor]],
                path: Path, input_names: Sequence[str], output_names: Sequence[str]) -> dict[str, Any]:
    """Write ``wrapper`` to ``path`` as ONNX; ``{"opset": ..., "exporter": ...}``. ExportError with
    each exporter's reason when none gives a model that reproduces PyTorch."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({exc.name} is not installed: "
                          "pip install 'polytask[export]')") from None
    expected = [[t.numpy() for t in wrapper.reference(batch)] for batch in checks]
    batches = [[t.numpy() for t in batch] for batch in checks]
    reasons = []
    for dynamo in (True, False):
        exporter = "torch.export (dynamo)" if dynamo else "TorchScript-based"
        try:
            _export(wrapper, tuple(example), path, input_names, output_names, dynamo)
            onnx.checker.check_model(str(path))
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

            def run(batch: Sequence[np.ndarray], session: Any = session) -> list[np.ndarray]:
                return session.run(list(output_names), dict(zip(input_names, batch)))

            check_outputs(run, batches, expected, output_names, f"ONNX ({exporter} exporter)")
        except Exception as exc:  # noqa: BLE001 - every exporter failure is a reason to try the next
            reasons.append(str(exc) if isinstance(exc, ExportError) else f"{exporter} exporter: {first_line(exc)}")
            continue
        model = onnx.load(str(path), load_external_data=False)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        return {"opset": opset, "exporter": exporter}
    raise ExportError("; ".join(reasons))


def _export(wrapper: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, input_names: Sequence[str],
            output_names: Sequence[str], dynamo: bool) -> None:
    """One ``torch.onnx.export`` call, its progress messages and warnings kept off the terminal."""
    quiet = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), \
                _native_output_silenced(), torch.no_grad():
            warnings.simplefilter("ignore")
            if dynamo:
                batch = torch.export.Dim("batch")
                torch.onnx.export(wrapper, example, str(path), input_names=list(input_names), output_names=list(output_names),
                                  dynamic_shapes=(tuple({0: batch} for _ in example),), dynamo=True, external_data=False,
                                  verbose=False)
            else:
                axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
                torch.onnx.export(wrapper, example, str(path), input_names=list(input_names), output_names=list(output_names),
                                  dynamic_axes=axes, dynamo=False, verbose=False)
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """File descriptors 1 and 2 pointed at the null device: the TorchScript-based exporter's C++
    side prints shape-inference warnings there, past Python's ``sys.stdout``/``sys.stderr``."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
