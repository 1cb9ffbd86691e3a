"""polytask's MMoE exported to ONNX (``polytask.export.export_run``) and run by onnxruntime.

    run, table = impl_polytask.train(data, epochs)        # the same model polytask's row trains
    export_run(run.directory, "model.onnx", "onnx")
    features = run.preprocessor.transform(table).features  # encoding from Arrow, polytask's preprocessor
    session.run(None, {"numeric": ..., "categorical": ...})  # batches of 1024

Only prediction is this row's subject: training is polytask's (its speed is reported on the
polytask row, not here). predict samples/s = the prediction rows / wall time of encoding the
Arrow table with the run's own preprocessor (vectorised, as ``Run.predict`` does) plus
onnxruntime over batches of 1024 (``intra_op_num_threads`` = the benchmark's threads), best of
2 passes. ``reference_predict_samples_per_s`` (JSON only) is the same with the numpy-only reference
preprocessor (``polytask_preprocess.py``, pure Python per value) encoding a dict of columns
instead, one pass. Skipped when onnxruntime is not installed (``pip install 'polytask[export]'``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "onnxruntime"
REQUIRES = ("polytask", "onnx", "onnxruntime", "onnxscript")
NOTES = "polytask's MMoE exported with polytask export, onnxruntime at batch 1024; encoding by the run's preprocessor"

BATCH = 1024


def package_version():
    import onnxruntime

    return onnxruntime.__version__


def run(data, epochs: int = 2) -> dict:
    import onnxruntime
    import torch

    import impl_polytask
    from polytask.export import export_run
    from polytask.export.reference import ReferencePreprocessor

    result, predict_input = impl_polytask.train(data, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        result.save(run_dir)
        exported = export_run(run_dir, Path(tmp) / "model.onnx", "onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(exported.model), options, providers=["CPUExecutionProvider"])
        reference = ReferencePreprocessor.load(str(exported.preprocess))
        groups = [(i["name"], i["group"]) for i in exported.inputs]

    def predict(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = len(next(iter(inputs.values())))
        parts = [session.run(None, {k: v[a : a + BATCH] for k, v in inputs.items()}) for a in range(0, n, BATCH)]
        return [np.concatenate(p) for p in zip(*parts)]

    predict_seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        features = result.preprocessor.transform(predict_input, "predict", with_labels=False).features
        outputs = predict({name: features[group].numpy() for name, group in groups})
        predict_seconds.append(time.perf_counter() - t0)

    columns = predict_input.to_pydict()
    t0 = time.perf_counter()
    predict(reference(columns))
    reference_seconds = time.perf_counter() - t0

    names = [o["name"] for o in exported.outputs]
    pred = np.stack([outputs[names.index(t)].astype(np.float64) for t in data.task_names], axis=1)
    model = result.model
    return {
        "train_samples_per_s": None,
        "train_samples_per_s_epoch1": None,
        "predict_samples_per_s": data.n_test / min(predict_seconds),
        "reference_predict_samples_per_s": data.n_test / reference_seconds,
        "opset": exported.spec["model"]["opset"],
        "exporter": exported.spec["model"]["exporter"],
        "predict_seconds": predict_seconds,
        "predictions": pred,
        "n_parameter_tensors": len(list(model.parameters())),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
