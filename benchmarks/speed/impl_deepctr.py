"""DeepCTR-Torch 0.3.0 ``MMOE``, trained and used the way its documentation shows.

Feature columns ``SparseFeat(name, cardinality, embedding_dim=4)`` / ``DenseFeat(name, 1)``,
``model.compile("adam", ["binary_crossentropy"] * 2)`` (torch Adam, lr 1e-3),
``model.fit(x_dict, y, batch_size=1024, epochs=2, verbose=0)``, ``model.predict(x_dict, 1024)``.

Matched settings: 8 experts x [16], towers [8] (+ its final Linear(8, 1)), linear+softmax
gates (``gate_dnn_hidden_units=()``), emb dim 4, no dropout, no BN, L2 on embeddings and
linear part set to 0 (its defaults are 1e-5).  Left at its defaults, as a user would:
weights initialised N(0, 1e-4); loss is the SUM over the batch (not the mean); ``fit``
still walks the (zero-strength) regularisation list every step; per-batch ``loss.item()``.
Epoch time is taken with a DeepCTR ``Callback`` (``on_epoch_begin`` .. ``on_epoch_end``),
which brackets exactly its training loop (no validation data is passed).
"""

from __future__ import annotations

import time

import numpy as np

NAME = "deepctr"
REQUIRES = ("deepctr_torch",)
NOTES = (
    "DeepCTR-Torch MMOE via model.fit(verbose=0)/predict; loss summed over the batch; "
    "init N(0,1e-4); gates linear (no bias)+softmax; l2 set to 0"
)

BATCH = 1024


def package_version():
    import deepctr_torch

    return getattr(deepctr_torch, "__version__", None)


def run(data, epochs: int = 2) -> dict:
    import torch
    from deepctr_torch.callbacks import Callback
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE

    class EpochTimer(Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)

    feature_columns = [
        SparseFeat(name, vocabulary_size=int(card), embedding_dim=4)
        for name, card in zip(data.categorical_names, data.cardinalities)
    ] + [DenseFeat(name, 1) for name in data.numeric_names]

    torch.manual_seed(0)
    model = MMOE(
        feature_columns,
        num_experts=8,
        expert_dnn_hidden_units=(16,),
        gate_dnn_hidden_units=(),
        tower_dnn_hidden_units=(8,),
        l2_reg_linear=0.0,
        l2_reg_embedding=0.0,
        l2_reg_dnn=0.0,
        dnn_dropout=0.0,
        dnn_use_bn=False,
        task_types=("binary", "binary"),
        task_names=tuple(data.task_names),
        device="cpu",
    )
    model.compile("adam", loss=["binary_crossentropy", "binary_crossentropy"])

    train_cols = data.columns("train")
    test_cols = data.columns("test")
    x_train = {name: train_cols[name] for name in data.categorical_names + data.numeric_names}
    x_test = {name: test_cols[name] for name in data.categorical_names + data.numeric_names}
    y_train = data.train_y

    timer = EpochTimer()
    model.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True, callbacks=[timer])

    predict_seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        pred = model.predict(dict(x_test), batch_size=BATCH)
        predict_seconds.append(time.perf_counter() - t0)

    n = data.n_train
    return {
        "train_samples_per_s": n / timer.seconds[-1],
        "train_samples_per_s_epoch1": n / timer.seconds[0],
        "predict_samples_per_s": data.n_test / min(predict_seconds),
        "epoch_seconds": timer.seconds,
        "predict_seconds": predict_seconds,
        "predictions": np.asarray(pred),
        "n_parameter_tensors": len(list(model.parameters())),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
