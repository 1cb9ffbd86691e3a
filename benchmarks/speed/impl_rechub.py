"""torch-rechub 0.9.0 ``MMOE`` with its ``MTLTrainer``, the way its examples use them.

``SparseFeature(name, cardinality, embed_dim=4)`` / ``DenseFeature(name)``;
``DataGenerator(x_dict, y).generate_dataloader(x_val, y_val, x_test, y_test, batch_size=1024)``;
``MMOE(features, ["classification"] * 2, n_expert=8, expert_params={"dims": [16]},
tower_params_list=[{"dims": [8]}] * 2)``; ``MTLTrainer(..., optimizer_params={"lr": 1e-3,
"weight_decay": 0}, n_epoch=2)``; ``trainer.fit(train_dl, val_dl)``; ``trainer.predict(model, dl)``.

Where it differs from the others and cannot be configured away: every MLP (experts, towers
AND the softmax gates) is Linear -> BatchNorm1d -> activation -> Dropout(0), so it has BN
layers the others lack; batches are built row by row (a dict of 40 scalars per row, then
collated); the loss is the mean of the task losses.  ``fit`` evaluates on validation data
after every epoch and saves the weights; to time only training, the trainer's own
``train_one_epoch`` is wrapped with a timer (the validation set is a 10,000-row slice of the
prediction rows, so that evaluation does not dominate the run time).  Its weight decay
default (1e-5) is set to 0.  tqdm progress bars are left on, as in its examples (they go to
the worker's log).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

NAME = "rechub"
REQUIRES = ("torch_rechub",)
NOTES = (
    "torch-rechub MMOE + MTLTrainer; BatchNorm in every MLP (experts, gates, towers); "
    "row-by-row DataLoader batches; mean of task losses; timed via train_one_epoch"
)

BATCH = 1024
N_VALIDATION = 10_000


def package_version():
    try:
        from importlib.metadata import version

        return version("torch-rechub")
    except Exception:
        return None


def run(data, epochs: int = 2) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator, PredictDataset

    features = [
        SparseFeature(name, vocab_size=int(card), embed_dim=4)
        for name, card in zip(data.categorical_names, data.cardinalities)
    ] + [DenseFeature(name) for name in data.numeric_names]
    names = data.categorical_names + data.numeric_names

    train_cols = data.columns("train")
    test_cols = data.columns("test")
    x_train = {k: train_cols[k] for k in names}
    x_test = {k: test_cols[k] for k in names}
    x_val = {k: v[:N_VALIDATION] for k, v in x_test.items()}
    y_val = data.test_y[:N_VALIDATION]

    torch.manual_seed(0)
    generator = DataGenerator(x_train, data.train_y)
    train_dl, val_dl, _ = generator.generate_dataloader(
        x_val=x_val, y_val=y_val, x_test=x_val, y_test=y_val, batch_size=BATCH
    )

    task_types = ["classification", "classification"]
    model = MMOE(
        features,
        task_types,
        n_expert=8,
        expert_params={"dims": [16], "dropout": 0.0},
        tower_params_list=[{"dims": [8], "dropout": 0.0}, {"dims": [8], "dropout": 0.0}],
    )
    with tempfile.TemporaryDirectory() as model_dir:
        trainer = MTLTrainer(
            model,
            task_types=task_types,
            optimizer_params={"lr": 1e-3, "weight_decay": 0.0},
            n_epoch=epochs,
            earlystop_patience=epochs + 1,
            device="cpu",
            model_path=model_dir,
        )

        epoch_seconds = []
        inner = trainer.train_one_epoch

        def timed_train_one_epoch(data_loader):
            t0 = time.perf_counter()
            out = inner(data_loader)
            epoch_seconds.append(time.perf_counter() - t0)
            return out

        trainer.train_one_epoch = timed_train_one_epoch
        trainer.fit(train_dl, val_dl)

    predict_seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        test_dl = DataLoader(PredictDataset(x_test), batch_size=BATCH, shuffle=False)
        pred = trainer.predict(trainer.model, test_dl)
        predict_seconds.append(time.perf_counter() - t0)

    n = data.n_train
    return {
        "train_samples_per_s": n / epoch_seconds[-1],
        "train_samples_per_s_epoch1": n / epoch_seconds[0],
        "predict_samples_per_s": data.n_test / min(predict_seconds),
        "epoch_seconds": epoch_seconds,
        "predict_seconds": predict_seconds,
        "predictions": np.asarray(pred, dtype=np.float64),
        "n_parameter_tensors": len(list(model.parameters())),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
