"""Run an exported model (ONNX with onnxruntime, TorchScript with torch.jit.load) on the inputs the
reference preprocessor gives: what a serving process does, without polytask's model code."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import torch

from polytask.export import ExportResult


def run_exported(result: ExportResult, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{output name: array}`` of the exported model at ``result.model`` on ``inputs``."""
    names = [o["name"] for o in result.outputs]
    if result.spec["model"]["format"] == "onnx":
        session = onnxruntime.InferenceSession(str(result.model), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(inputs)
        return dict(zip(names, session.run(names, inputs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        module = torch.jit.load(str(result.model))
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
    return {n: o.numpy() for n, o in zip(names, outputs)}
