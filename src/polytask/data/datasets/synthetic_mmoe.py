"""Synthetic two-task regression data with a controlled task correlation (MMoE, Sec. 3.2).

Generative process (Ma et al., "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018, Sec. 3.2, Eqs. 2-4):

1. Draw two orthogonal unit vectors ``u1, u2`` in ``R^d``. Here: a ``d x 2`` standard Gaussian
   matrix orthonormalised by a QR decomposition (its two columns).
2. For a scale ``c`` and a correlation score ``-1 <= p <= 1`` set
   ``w1 = c * u1`` and ``w2 = c * (p * u1 + sqrt(1 - p^2) * u2)``, so ``cos(w1, w2) = p``.
3. Draw inputs ``x ~ N(0, I_d)``.
4. Labels ``y_t = w_t^T x + sum_{i=1..m} sin(alpha_i * w_t^T x + beta_i) + eps_t`` (t = 1, 2),
   with the SAME ``alpha_i, beta_i`` for both tasks, drawn once per dataset, and independent
   noise ``eps_t ~ N(0, sigma^2)`` per task.

In the linear case (``m = 0``) the Pearson correlation of ``y1`` and ``y2`` is
``p * c^2 / (c^2 + sigma^2)``, i.e. ``p`` up to the noise; with the sine terms the labels stay
positively correlated but no longer equal ``p`` (the paper's Fig. 2).

Constants (the MMoE paper does not give c, m, alpha, beta or the dataset size):

* ``d = 100``: the input dimension of the MMoE paper's Sec. 5.1 models (8 experts x 16 units
  over 100 inputs; the 13,056-parameter budget is computed from it).
* ``c = 1``, ``m = 10``, ``alpha_i, beta_i ~ N(0, 1)``: the PLE paper's re-statement of this
  generator (Tang et al., RecSys 2020, Sec. 5.1), which notes the MMoE paper omits them.
* noise: the paper writes ``N(0, 0.01)``, which is ambiguous; it is read here as variance 0.01,
  i.e. ``sigma = 0.1`` (``noise_std``).
* sizes: 10,000 / 2,000 / 2,000 rows (train / validation / test) by default; the whole set is
  drawn once and then cut in that order.

Everything is drawn from one ``numpy.random.Generator(PCG64(seed))`` in a fixed order
(directions, alpha, beta, x, noise of task 1, noise of task 2), so a seed fixes the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from polytask.data.datasets.base import DatasetBundle
from polytask.registry import DATASETS

PAPER = "Ma et al., KDD 2018, Sec. 3.2 (MMoE synthetic data)"


@dataclass(frozen=True)
class SyntheticParams:
    """The per-dataset constants of the generator (all float64)."""

    u1: np.ndarray
    u2: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def _check(
    *,
    correlation: float,
    dim: int,
    scale: float,
    num_sines: int,
    noise_std: float,
    sizes: dict[str, int],
) -> None:
    if not (abs(float(correlation)) <= 1.0):
        raise ValueError(f"correlation must satisfy -1 <= correlation <= 1, got {correlation!r}")
    if int(dim) != dim or dim < 2:
        raise ValueError(f"dim must be an integer >= 2 (two orthogonal directions), got {dim!r}")
    if not (math.isfinite(float(scale)) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if int(num_sines) != num_sines or num_sines < 0:
        raise ValueError(f"num_sines must be an integer >= 0, got {num_sines!r}")
    if not (math.isfinite(float(noise_std)) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    for name, value in sizes.items():
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be an integer > 0, got {value!r}")


def sample_params(
    rng: np.random.Generator,
    *,
    dim: int = 100,
    correlation: float = 0.5,
    scale: float = 1.0,
    num_sines: int = 10,
) -> SyntheticParams:
    """Draw ``u1, u2`` (QR of a Gaussian ``dim x 2`` matrix), build ``w1, w2`` (MMoE Eq. 2) and
    draw the shared sine parameters ``alpha, beta ~ N(0, 1)``."""
    q, r = np.linalg.qr(rng.standard_normal((dim, 2)))
    # Fix the sign ambiguity of QR so the directions are a deterministic function of the draw.
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    u1, u2 = q[:, 0].copy(), q[:, 1].copy()
    p = float(correlation)
    w1 = scale * u1
    w2 = scale * (p * u1 + math.sqrt(max(0.0, 1.0 - p * p)) * u2)
    alpha = rng.standard_normal(num_sines)
    beta = rng.standard_normal(num_sines)
    return SyntheticParams(u1=u1, u2=u2, w1=w1, w2=w2, alpha=alpha, beta=beta)


def _labels(z: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``z + sum_i sin(alpha_i z + beta_i)`` for a vector of projections ``z = w^T x``."""
    out = z.copy()
    for a, b in zip(alpha, beta):  # m is small; avoids an n x m temporary
        out += np.sin(a * z + b)
    return out


def generate(
    n: int,
    *,
    correlation: float = 0.5,
    dim: int = 100,
    scale: float = 1.0,
    num_sines: int = 10,
    noise_std: float = 0.1,
    seed: int = 0,
    return_params: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, SyntheticParams]:
    """Draw ``n`` rows of the MMoE synthetic data (Ma et al. 2018, Eqs. 2-4).

    Returns float32 arrays ``x`` (``n x dim``), ``y1`` and ``y2`` (length ``n``); with
    ``return_params=True`` also the :class:`SyntheticParams` used. Computation is in float64,
    the cast to float32 is the last step.
    """
    _check(
        correlation=correlation, dim=dim, scale=scale, num_sines=num_sines, noise_std=noise_std, sizes={"n": n}
    )
    rng = np.random.Generator(np.random.PCG64(seed))
    params = sample_params(rng, dim=int(dim), correlation=correlation, scale=float(scale), num_sines=int(num_sines))
    x = rng.standard_normal((int(n), int(dim)))
    eps1 = rng.standard_normal(int(n)) * noise_std
    eps2 = rng.standard_normal(int(n)) * noise_std
    y1 = _labels(x @ params.w1, params.alpha, params.beta) + eps1
    y2 = _labels(x @ params.w2, params.alpha, params.beta) + eps2
    arrays = (x.astype(np.float32), y1.astype(np.float32), y2.astype(np.float32))
    if return_params:
        return (*arrays, params)
    return arrays


def _table(x: np.ndarray, y1: np.ndarray, y2: np.ndarray, names: list[str]) -> pa.Table:
    columns: dict[str, Any] = {name: pa.array(x[:, j]) for j, name in enumerate(names)}
    columns["y1"] = pa.array(y1)
    columns["y2"] = pa.array(y2)
    return pa.table(columns)


@DATASETS.register("synthetic_mmoe")
def synthetic_mmoe(
    data_dir: Any = None,
    *,
    correlation: float = 0.5,
    n_train: int = 10_000,
    n_validation: int = 2_000,
    n_test: int = 2_000,
    dim: int = 100,
    scale: float = 1.0,
    num_sines: int = 10,
    noise_std: float = 0.1,
    seed: int = 0,
) -> DatasetBundle:
    """Synthetic two-task regression with controlled task correlation (MMoE, KDD 2018, Sec. 3.2).

    ``correlation`` is the cosine similarity ``p`` of the two tasks' weight vectors.
    ``data_dir`` is accepted for a uniform loader signature and ignored.
    """
    _check(
        correlation=correlation,
        dim=dim,
        scale=scale,
        num_sines=num_sines,
        noise_std=noise_std,
        sizes={"n_train": n_train, "n_validation": n_validation, "n_test": n_test},
    )
    n_train, n_validation, n_test = int(n_train), int(n_validation), int(n_test)
    total = n_train + n_validation + n_test
    x, y1, y2 = generate(
        total,
        correlation=correlation,
        dim=dim,
        scale=scale,
        num_sines=num_sines,
        noise_std=noise_std,
        seed=seed,
    )
    x = np.asfortranarray(x)  # contiguous columns -> zero-copy-friendly pyarrow columns
    names = [f"x{j}" for j in range(int(dim))]
    cuts = [(0, n_train), (n_train, n_train + n_validation), (n_train + n_validation, total)]
    train, validation, test = (_table(x[a:b], y1[a:b], y2[a:b], names) for a, b in cuts)
    notes = (
        f"MMoE synthetic data ({PAPER}): correlation (weight cosine) p={float(correlation)}, "
        f"dim d={int(dim)}, scale c={float(scale)}, num_sines m={int(num_sines)}, "
        f"alpha_i, beta_i ~ N(0, 1) drawn once and shared by both tasks, "
        f"noise eps_t ~ N(0, {float(noise_std)}^2) independent per task "
        "(the paper's N(0, 0.01) read as variance 0.01 for the default std 0.1), "
        f"x ~ N(0, I); seed={seed} (numpy PCG64); {total} rows drawn once and cut in order into "
        f"train {n_train} / validation {n_validation} / test {n_test}. "
        "c, m and alpha/beta follow the PLE paper's re-statement (RecSys 2020); d=100 follows MMoE Sec. 5.1."
    )
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"numeric": names},
        tasks=[
            {"name": "y1", "kind": "regression", "label": "y1"},
            {"name": "y2", "kind": "regression", "label": "y2"},
        ],
        notes=notes,
        sources={"generator": PAPER},
    )
