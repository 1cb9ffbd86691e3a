"""Census-income-shaped synthetic table for the speed benchmark.

One deterministic generator shared by every implementation:

* 7 numeric features (mixtures of normal, log-normal and zero-inflated columns, like age,
  wage per hour, capital gains, weeks worked ...), standardised with the training rows'
  mean and standard deviation, float32;
* 33 categorical features with cardinalities between 3 and 60 (1,063 categories in all),
  each drawn from its own skewed frequency vector ~ Dirichlet(0.7), stored as per-feature
  integer codes 0..cardinality-1 (int64);
* two binary labels from a fixed random "teacher" network (one shared and one task-specific
  component per task), with biases solved so that the positive rates are about 27% and 46%.

``generate()`` builds the arrays in memory; ``save()``/``load()`` write and read them as plain
``.npy`` files so that ``run.py`` can generate once and every fresh worker process loads the
identical arrays.  Run ``python benchmarks/speed/data.py --out DIR`` to write them by hand.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

N_NUMERIC = 7
N_CATEGORICAL = 33
TOTAL_CATEGORIES = 1063
MIN_CARD, MAX_CARD = 3, 60
DIRICHLET_ALPHA = 0.7
POSITIVE_RATES = (0.27, 0.46)
TASKS = ("t1", "t2")
DEFAULT_SEED = 20240611

NUMERIC_NAMES = [f"num_{i}" for i in range(N_NUMERIC)]
CATEGORICAL_NAMES = [f"cat_{i:02d}" for i in range(N_CATEGORICAL)]

_ARRAYS = ("train_num", "train_cat", "train_y", "test_num", "test_cat", "test_y", "cardinalities")


@dataclass
class CensusData:
    """The benchmark table, split into training and prediction rows."""

    train_num: np.ndarray  # float32 [n_train, 7], standardised
    train_cat: np.ndarray  # int64 [n_train, 33], per-feature codes
    train_y: np.ndarray  # float32 [n_train, 2], 0/1
    test_num: np.ndarray  # float32 [n_test, 7]
    test_cat: np.ndarray  # int64 [n_test, 33]
    test_y: np.ndarray  # float32 [n_test, 2]
    cardinalities: np.ndarray  # int64 [33]
    seed: int = DEFAULT_SEED
    numeric_names: list = field(default_factory=lambda: list(NUMERIC_NAMES))
    categorical_names: list = field(default_factory=lambda: list(CATEGORICAL_NAMES))
    task_names: list = field(default_factory=lambda: list(TASKS))

    @property
    def n_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_y.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """Start of each categorical feature in one concatenated vocabulary."""
        return np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int64)

    def summary(self) -> dict:
        y = np.concatenate([self.train_y, self.test_y])
        return {
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_numeric": len(self.numeric_names),
            "n_categorical": len(self.categorical_names),
            "total_categories": int(self.cardinalities.sum()),
            "cardinality_range": [int(self.cardinalities.min()), int(self.cardinalities.max())],
            "positive_rates": [round(float(r), 4) for r in y.mean(axis=0)],
            "label_correlation": round(float(np.corrcoef(y[:, 0], y[:, 1])[0, 1]), 4),
        }

    # -- views used by the implementations -------------------------------------------------
    def columns(self, split: str) -> dict:
        """``{column name: 1-d numpy array}`` for ``split`` in {"train", "test"}, labels included."""
        num = getattr(self, f"{split}_num")
        cat = getattr(self, f"{split}_cat")
        y = getattr(self, f"{split}_y")
        cols = {name: num[:, i] for i, name in enumerate(self.numeric_names)}
        cols.update({name: cat[:, i] for i, name in enumerate(self.categorical_names)})
        cols.update({name: y[:, i] for i, name in enumerate(self.task_names)})
        return cols

    def to_pandas(self, split: str):
        import pandas as pd

        return pd.DataFrame(self.columns(split))

    def to_arrow(self, split: str):
        import pyarrow as pa

        return pa.table(self.columns(split))


def _cardinalities(rng: np.random.Generator) -> np.ndarray:
    """33 cardinalities in [3, 60] summing to exactly 1,063."""
    card = rng.integers(MIN_CARD, MAX_CARD + 1, size=N_CATEGORICAL)
    # Nudge random features up or down (within bounds) until the total matches.
    while card.sum() != TOTAL_CATEGORIES:
        i = rng.integers(N_CATEGORICAL)
        if card.sum() < TOTAL_CATEGORIES and card[i] < MAX_CARD:
            card[i] += 1
        elif card.sum() > TOTAL_CATEGORIES and card[i] > MIN_CARD:
            card[i] -= 1
    return card.astype(np.int64)


def _numeric(rng: np.random.Generator, n: int) -> np.ndarray:
    cols = [
        rng.normal(38.0, 14.0, n).clip(16, 90),  # age-like
        np.where(rng.random(n) < 0.85, 0.0, rng.lognormal(6.5, 0.6, n)),  # wage per hour (mostly 0)
        np.where(rng.random(n) < 0.93, 0.0, rng.lognormal(8.0, 1.2, n)),  # capital gains
        np.where(rng.random(n) < 0.97, 0.0, rng.lognormal(7.3, 0.5, n)),  # capital losses
        np.where(rng.random(n) < 0.90, 0.0, rng.lognormal(5.0, 1.0, n)),  # dividends
        rng.integers(0, 7, n).astype(np.float64),  # persons worked for employer
        np.where(rng.random(n) < 0.45, 0.0, rng.uniform(1, 52, n)).round(),  # weeks worked
    ]
    return np.stack(cols, axis=1)


def _solve_bias(logit: np.ndarray, rate: float) -> float:
    """Bias b with mean(sigmoid(logit + b)) == rate (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if (1.0 / (1.0 + np.exp(-(logit + mid)))).mean() < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def generate(n_train: int = 200_000, n_test: int = 100_000, seed: int = DEFAULT_SEED) -> CensusData:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    card = _cardinalities(rng)

    # Categorical codes from skewed per-feature frequencies.
    cat = np.empty((n, N_CATEGORICAL), dtype=np.int64)
    for j, c in enumerate(card):
        p = rng.dirichlet(np.full(int(c), DIRICHLET_ALPHA))
        cat[:, j] = rng.choice(int(c), size=n, p=p)

    raw = _numeric(rng, n)
    # log1p the heavy-tailed money columns, then standardise with training statistics.
    raw[:, 1:5] = np.log1p(raw[:, 1:5])
    mean = raw[:n_train].mean(axis=0)
    std = raw[:n_train].std(axis=0) + 1e-8
    num = ((raw - mean) / std).astype(np.float32)

    # Fixed random teacher: a random 4-d code per category plus the numeric columns,
    # one hidden tanh layer, a shared and a task-specific logit component per task.
    offsets = np.concatenate([[0], np.cumsum(card)[:-1]])
    table = rng.normal(0.0, 1.0, size=(int(card.sum()), 4))
    x = np.concatenate([table[cat + offsets].reshape(n, -1), num], axis=1)
    w1 = rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), size=(x.shape[1], 32))
    h = np.tanh(x @ w1 * 1.5)
    w_shared = rng.normal(0.0, 1.0 / np.sqrt(32), size=32)
    w_task = rng.normal(0.0, 1.0 / np.sqrt(32), size=(32, 2))
    shared = h @ w_shared
    y = np.empty((n, 2), dtype=np.float32)
    for t, rate in enumerate(POSITIVE_RATES):
        logit = 2.0 * (1.0 * shared + h @ w_task[:, t])
        logit = logit + _solve_bias(logit, rate)
        prob = 1.0 / (1.0 + np.exp(-logit))
        y[:, t] = (rng.random(n) < prob).astype(np.float32)

    return CensusData(
        train_num=np.ascontiguousarray(num[:n_train]),
        train_cat=np.ascontiguousarray(cat[:n_train]),
        train_y=np.ascontiguousarray(y[:n_train]),
        test_num=np.ascontiguousarray(num[n_train:]),
        test_cat=np.ascontiguousarray(cat[n_train:]),
        test_y=np.ascontiguousarray(y[n_train:]),
        cardinalities=card,
        seed=seed,
    )


def save(data: CensusData, directory: str | os.PathLike) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name in _ARRAYS:
        # column-major, so every feature column is a contiguous array: each implementation can
        # take its columns without a copy (Arrow, pandas and torch all can), none pays for a
        # strided 2-D layout that only one of them would prefer; np.load keeps the order
        np.save(d / f"{name}.npy", np.asfortranarray(getattr(data, name)))
    (d / "meta.json").write_text(json.dumps(data.summary(), indent=2))
    return d


def load(directory: str | os.PathLike) -> CensusData:
    d = Path(directory)
    meta = json.loads((d / "meta.json").read_text())
    arrays = {name: np.load(d / f"{name}.npy") for name in _ARRAYS}
    return CensusData(**arrays, seed=int(meta["seed"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the .npy files")
    ap.add_argument("--rows", type=int, default=200_000, help="training rows")
    ap.add_argument("--predict-rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    data = generate(args.rows, args.predict_rows, args.seed)
    save(data, args.out)
    print(json.dumps(data.summary(), indent=2))


if __name__ == "__main__":
    main()
