"""polytask through its public Python API, as a user would call it.

    run = polytask.fit(train=arrow_table, validation=arrow_table,
                       features={"numeric": [...], "categorical": [...]},
                       tasks=[{"name": "t1", "kind": "binary", "label": "t1"}, ...],
                       model={"name": "mmoe", "num_experts": 8, "expert_hidden": [16],
                              "tower_hidden": [8], "embedding_dim": 4},
                       epochs=2, batch_size=1024, eval_batch_size=1024, threads=2,
                       patience=None, progress=False)
    run.predict(arrow_table)  # {task: np.ndarray}

Training speed is read from the trainer's own per-epoch record (``run.history[-1]``:
``train_samples / train_seconds``, epoch 2); prediction is ``run.predict`` over the
prediction rows (encoding the table included, as it is part of polytask's predict path) at
``eval_batch_size=1024``; no test split is carved from the training rows (``data.split.test=0``), so
polytask trains on every training row, as the peers do.  The validation split is the same 10,000-row slice of the prediction
rows that torch-rechub gets; it is evaluated after each epoch, outside the timed training.
Categorical columns are the same integer codes the peers get (polytask encodes them itself).
"""

from __future__ import annotations

import time

import numpy as np

NAME = "polytask"
REQUIRES = ("polytask",)
NOTES = "polytask.fit(...) / Run.predict(table); epoch time from the trainer's history"

BATCH = 1024
N_VALIDATION = 10_000


def package_version():
    import polytask

    return getattr(polytask, "__version__", None)


def available():
    """None when polytask's public API can be used, else why not."""
    try:
        import polytask

        polytask.fit  # noqa: B018 - lazily imported attribute
    except Exception as exc:  # the package is being written: report, do not crash
        return f"polytask.fit is not available: {type(exc).__name__}: {exc}"
    return None


def train(data, epochs: int = 2):
    """``(run, prediction input table)``: the benchmark's MMoE trained with ``polytask.fit``."""
    import polytask

    train = data.to_arrow("train")
    test = data.to_arrow("test")
    validation = test.slice(0, N_VALIDATION)
    predict_input = test.drop_columns(list(data.task_names))

    result = polytask.fit(
        train=train,
        validation=validation,
        features={"numeric": list(data.numeric_names), "categorical": list(data.categorical_names)},
        tasks=[{"name": t, "kind": "binary", "label": t} for t in data.task_names],
        model={
            "name": "mmoe",
            "num_experts": 8,
            "expert_hidden": [16],
            "tower_hidden": [8],
            "embedding_dim": 4,
        },
        optimizer={"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        # the peers train on every training row and hold no test split: without this, polytask
        # would carve its default 10 % test split out of the training rows (a shuffled copy of the
        # table, about 65 MB of peak RSS) and evaluate it after training
        overrides=["data.split.test=0.0"],
        epochs=epochs,
        batch_size=BATCH,
        eval_batch_size=BATCH,
        threads=2,
        patience=None,
        device="cpu",
        progress=False,
    )
    return result, predict_input


def run(data, epochs: int = 2) -> dict:
    result, predict_input = train(data, epochs)
    history = result.history
    epoch_seconds = [float(r["train_seconds"]) for r in history]
    samples = [int(r["train_samples"]) for r in history]

    predict_seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        preds = result.predict(predict_input)
        predict_seconds.append(time.perf_counter() - t0)
    pred = np.stack([np.asarray(preds[t], dtype=np.float64).reshape(-1) for t in data.task_names], axis=1)

    model = result.model
    return {
        "train_samples_per_s": samples[-1] / epoch_seconds[-1],
        "train_samples_per_s_epoch1": samples[0] / epoch_seconds[0],
        "predict_samples_per_s": data.n_test / min(predict_seconds),
        "epoch_seconds": epoch_seconds,
        "predict_seconds": predict_seconds,
        "predictions": pred,
        "n_parameter_tensors": len(list(model.parameters())),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
