"""Truth-based metrics of click/conversion predictions on the ``entire_space`` simulator's splits.

The simulator (:mod:`polytask.data.datasets.entire_space`) keeps every impression's true click and
conversion probabilities and a conversion outcome drawn even when it was not clicked, so a CVR
model can be scored over the *entire* impression space, which real logs cannot show:
:func:`entire_space_metrics`. :func:`auc` is the task kinds' AUC (:func:`polytask.tasks.scores.auroc`)
on numpy, Arrow or torch inputs, NaN when only one class is present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from polytask.tasks.scores import auroc, average_ranks

__all__ = ["auc", "entire_space_metrics"]


def auc(scores: Any, labels: Any) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels`` (ties counted one half), NaN when only one
    class is present; :func:`polytask.tasks.scores.auroc`, the AUC of the task kinds."""
    s = _array(scores, "scores")
    y = _array(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"auc: scores and labels differ in length ({len(s)} vs {len(y)})")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("auc: labels must be 0 or 1")
    n1 = int(y.sum())
    if n1 == 0 or n1 == len(y):
        return float("nan")
    return auroc(torch.tensor(s), torch.tensor(y))  # copies: Arrow's arrays are read-only


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (float64: exact at any table size)."""
    return average_ranks(torch.tensor(x, dtype=torch.float64)).numpy()  # a copy: Arrow arrays are read-only


def _array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    elif isinstance(x, (pa.Array, pa.ChunkedArray)):
        x = x.to_numpy(zero_copy_only=False)
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: non-finite values")
    return a


def _column(table: Any, name: str) -> np.ndarray:
    if isinstance(table, pa.Table):
        if name not in table.column_names:
            raise ValueError(f"entire_space_metrics: the table has no column {name!r} (an entire_space split is needed)")
        return _array(table.column(name), name)
    if isinstance(table, Mapping) or hasattr(table, "columns"):  # dict of arrays or pandas.DataFrame
        if name not in table:
            raise ValueError(f"entire_space_metrics: the table has no column {name!r} (an entire_space split is needed)")
        return _array(table[name], name)
    raise TypeError(
        f"entire_space_metrics: expected a pyarrow.Table, a dict of arrays or a DataFrame, got {type(table).__name__}"
    )


def _ece(pred: np.ndarray, truth: np.ndarray, bins: int) -> float:
    """Expected calibration error against the true probabilities: rows sorted by prediction and
    cut into ``bins`` equal-count bins, then the row-weighted mean |mean pred - mean truth|."""
    order = np.argsort(pred, kind="mergesort")
    total = 0.0
    for part in np.array_split(order, min(bins, len(order))):
        total += len(part) * abs(pred[part].mean() - truth[part].mean())
    return total / len(order)


def entire_space_metrics(table: Any, pcvr: Any, pctr: Any = None, pctcvr: Any = None, *, bins: int = 10) -> dict[str, float]:
    """Truth-based metrics of CVR (and CTR/CTCVR) predictions on an ``entire_space`` split.

    ``table``: the split (pyarrow Table, dict of arrays or DataFrame with the truth columns);
    ``pcvr``: predicted P(conversion | click, x) for EVERY row; ``pctr``/``pctcvr``: optional
    predicted click and click-and-convert probabilities (``pctcvr`` defaults to ``pctr * pcvr``).

    Returns (NaN where a class is missing):

    * ``cvr_auc_entire``: AUC of ``pcvr`` against ``conversion_if_clicked`` over all impressions
      (what a CVR model is used for, and what clicked-only evaluation cannot see);
    * ``cvr_auc_clicked``: the same on clicked rows (labels = observed purchase): the usual
      clicked-space CVR AUC;
    * ``cvr_auc_entire_oracle``: the entire-space AUC of the true ``p_cvr`` on this table, the
      ceiling for ``cvr_auc_entire`` (below 1: outcomes are random);
    * ``cvr_spearman``: rank correlation of ``pcvr`` with the true ``p_cvr`` (no label noise);
    * ``cvr_calibration`` / ``cvr_calibration_clicked``: ``mean(pcvr) / mean(p_cvr)`` over all /
      clicked impressions (1 = calibrated on average; a CVR model fitted on clicks typically
      over-predicts on the entire space);
    * ``cvr_ece``: expected calibration error against ``p_cvr`` (``bins`` equal-count bins of
      ``pcvr``), ``cvr_mae``: ``mean |pcvr - p_cvr|``;
    * with ``pctr``: ``ctr_auc`` (vs click), ``ctr_calibration`` (``mean(pctr) / mean(p_click)``);
      with ``pctr`` or ``pctcvr``: ``ctcvr_auc`` (vs ctcvr over all impressions) and
      ``ctcvr_calibration`` (``mean(pctcvr) / mean(p_ctcvr)``).
    """
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    p_cvr = _column(table, "p_cvr")
    converted = _column(table, "conversion_if_clicked")
    click = _column(table, "click").astype(bool)
    purchase = _column(table, "purchase")
    pred = _array(pcvr, "pcvr")
    if len(pred) != len(p_cvr):
        raise ValueError(f"entire_space_metrics: {len(pred)} pcvr values for a table of {len(p_cvr)} rows")
    out = {
        "cvr_auc_entire": auc(pred, converted),
        "cvr_auc_clicked": auc(pred[click], purchase[click]) if click.any() else float("nan"),
        "cvr_auc_entire_oracle": auc(p_cvr, converted),
        "cvr_spearman": float(np.corrcoef(_ranks(pred), _ranks(p_cvr))[0, 1]) if len(pred) > 1 else float("nan"),
        "cvr_calibration": float(pred.mean() / p_cvr.mean()),
        "cvr_calibration_clicked": float(pred[click].mean() / p_cvr[click].mean()) if click.any() else float("nan"),
        "cvr_ece": _ece(pred, p_cvr, int(bins)),
        "cvr_mae": float(np.abs(pred - p_cvr).mean()),
    }
    if pctr is not None:
        ctr = _array(pctr, "pctr")
        if len(ctr) != len(p_cvr):
            raise ValueError(f"entire_space_metrics: {len(ctr)} pctr values for a table of {len(p_cvr)} rows")
        out["ctr_auc"] = auc(ctr, click.astype(np.float64))
        out["ctr_calibration"] = float(ctr.mean() / _column(table, "p_click").mean())
        if pctcvr is None:
            pctcvr = ctr * pred
    if pctcvr is not None:
        joint = _array(pctcvr, "pctcvr")
        if len(joint) != len(p_cvr):
            raise ValueError(f"entire_space_metrics: {len(joint)} pctcvr values for a table of {len(p_cvr)} rows")
        out["ctcvr_auc"] = auc(joint, _column(table, "ctcvr"))
        out["ctcvr_calibration"] = float(joint.mean() / _column(table, "p_ctcvr").mean())
    return out
