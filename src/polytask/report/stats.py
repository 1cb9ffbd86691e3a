"""What the report computes from a run's log, apart from drawing it: gradient conflict shares,
gradient norms, gate layouts, expert utilisation and dead experts, gate entropy, calibration bins.
Plain functions of plain data (the parsed ``metrics.jsonl`` records), tested on hand-made logs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


# -- task gradients ----------------------------------------------------------------------------------
@dataclass
class CosineTable:
    """Pairwise task-gradient cosines of the logged steps: ``values[p, s]`` is the cosine of
    ``pairs[p]`` at ``steps[s]`` (NaN where that step did not log the pair: a batch without a
    label of one of the tasks)."""

    pairs: list[tuple[str, str]]
    steps: list[int]
    values: np.ndarray

    def conflict_shares(self) -> dict[tuple[str, str], tuple[float, int]]:
        """Per pair: ``(share of its logged steps with cosine < 0, number of logged steps)``."""
        out = {}
        for p, pair in enumerate(self.pairs):
            row = self.values[p]
            seen = row[~np.isnan(row)]
            out[pair] = (float((seen < 0).mean()) if seen.size else float("nan"), int(seen.size))
        return out


def cosine_table(steps: Sequence[Mapping[str, Any]]) -> CosineTable | None:
    """The cosines of every logged step that has them (``step["cosine"] = {"tasks", "matrix"}``),
    pairs in the order their tasks are first listed; None when no step logged any."""
    logged = []
    for step in steps:
        cos = step.get("cosine")
        if not isinstance(cos, Mapping):
            continue
        names, matrix = cos.get("tasks"), cos.get("matrix")
        if not isinstance(names, list) or not isinstance(matrix, list) or len(matrix) != len(names):
            continue
        logged.append((int(step["step"]), [str(n) for n in names], matrix))
    if not logged:
        return None
    order: dict[str, int] = {}
    for _, names, _ in logged:
        for n in names:
            order.setdefault(n, len(order))
    pairs_set = {tuple(sorted((a, b), key=order.__getitem__)) for _, names, _ in logged
                 for i, a in enumerate(names) for b in names[i + 1:]}
    pairs = sorted(pairs_set, key=lambda ab: (order[ab[0]], order[ab[1]]))
    if not pairs:
        return None
    index = {pair: p for p, pair in enumerate(pairs)}
    values = np.full((len(pairs), len(logged)), np.nan)
    for s, (_, names, matrix) in enumerate(logged):
        for i, a in enumerate(names):
            row = matrix[i] if isinstance(matrix[i], list) else []
            for j in range(i + 1, len(names)):
                b = names[j]
                key = (a, b) if (a, b) in index else (b, a)
                if j < len(row):
                    values[index[key], s] = _number(row[j])
    return CosineTable(pairs, [s for s, _, _ in logged], values)


def gradient_norms(steps: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[int], np.ndarray] | None:
    """``(tasks, steps, norms[t, s])`` from the steps whose cosine log has ``norms`` (the L2 norm
    of each task's gradient on the shared parameters; NaN where a step did not log the task);
    None when no step has them (runs logged before the norms were)."""
    logged = []
    for step in steps:
        cos = step.get("cosine")
        if isinstance(cos, Mapping) and isinstance(cos.get("norms"), list) and isinstance(cos.get("tasks"), list):
            logged.append((int(step["step"]), [str(n) for n in cos["tasks"]], cos["norms"]))
    if not logged:
        return None
    tasks: dict[str, int] = {}
    for _, names, _ in logged:
        for n in names:
            tasks.setdefault(n, len(tasks))
    values = np.full((len(tasks), len(logged)), np.nan)
    for s, (_, names, norms) in enumerate(logged):
        for name, value in zip(names, norms):
            values[tasks[name], s] = _number(value)
    return list(tasks), [s for s, _, _ in logged], values


# -- gates ---------------------------------------------------------------------------------------------
@dataclass
class GateLevel:
    """One level of gates as a ``gates x experts`` matrix of mean gate weights. ``matrix[g, e]`` is
    NaN where gate ``g`` cannot select expert ``e`` (PLE/CGC: another task's own experts).
    ``width`` is the number of experts each gate mixes (the dead-expert threshold depends on it)."""

    name: str
    gates: list[str]
    experts: list[str]
    matrix: np.ndarray
    width: int

    def utilisation(self) -> np.ndarray:
        """Each expert's mean gate weight over the gates that can select it."""
        with np.errstate(all="ignore"):
            counts = (~np.isnan(self.matrix)).sum(0)
            sums = np.nansum(self.matrix, 0)
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def threshold(self) -> float:
        """Below this utilisation an expert counts as dead: a tenth of the uniform gate's weight,
        ``1 / (10 E)`` with ``E`` the experts a gate mixes."""
        return 1.0 / (10 * self.width)

    def dead_experts(self) -> list[tuple[str, float]]:
        util = self.utilisation()
        return [(name, float(u)) for name, u in zip(self.experts, util) if not math.isnan(u) and u < self.threshold()]


def gate_levels(gates: Any, model_config: Mapping[str, Any] | None = None) -> list[GateLevel]:
    """The levels of a ``diagnostics["gates"]`` entry: ``{gate: [weight per expert]}`` (one level,
    named ``""``) or ``{level: {gate: [weights over the gate's experts]}}``. A level whose gates
    each mix ``specific_experts`` own experts then ``shared_experts`` shared ones (the model
    section of the config gives the two numbers; the weights are read in that order) is laid out
    over all of the level's experts, each gate's own experts in its row; any other level
    column by column as logged."""
    if not isinstance(gates, Mapping) or not gates:
        return []
    if all(isinstance(v, Mapping) for v in gates.values()):
        levels = [(str(name), level) for name, level in gates.items()]
    else:
        levels = [("", gates)]
    out = []
    for name, level in levels:
        rows = {str(g): [_number(v) for v in w] for g, w in level.items() if isinstance(w, list) and w}
        if rows:
            out.append(_layout(name, rows, model_config or {}))
    return out


def _layout(name: str, rows: dict[str, list[float]], model: Mapping[str, Any]) -> GateLevel:
    gates = list(rows)
    widths = {len(w) for w in rows.values()}
    own, shared = model.get("specific_experts"), model.get("shared_experts")
    width = max(widths)
    if (len(widths) == 1 and isinstance(own, int) and isinstance(shared, int) and own >= 1 and shared >= 0
            and own + shared == width):
        n = len(gates) * own + shared
        matrix = np.full((len(gates), n), np.nan)
        experts = [f"{g} own" if own == 1 else f"{g} own {k}" for g in gates for k in range(own)]
        experts += ["shared" if shared == 1 else f"shared {k}" for k in range(shared)]
        for i, g in enumerate(gates):
            w = rows[g]
            matrix[i, i * own:(i + 1) * own] = w[:own]
            matrix[i, len(gates) * own:] = w[own:]
        return GateLevel(name, gates, experts, matrix, width)
    matrix = np.full((len(gates), width), np.nan)
    for i, g in enumerate(gates):
        matrix[i, :len(rows[g])] = rows[g]
    return GateLevel(name, gates, [f"expert {k}" for k in range(width)], matrix, width)


def entropy(weights: Sequence[float]) -> float:
    """Entropy in nats of a weight vector (normalised to sum 1 first)."""
    p = np.asarray([w for w in weights if w == w], dtype=float)
    p = p[p > 0]
    if p.size == 0:
        return float("nan")
    p = p / p.sum()
    return float(-(p * np.log(p)).sum())


def gate_entropy_series(records: Sequence[tuple[int, Mapping[str, Any]]]) -> tuple[dict[str, dict[str, list[tuple[int, float]]]], bool]:
    """``({level: {gate: [(epoch, entropy)]}}, logged)`` from ``(epoch, diagnostics)`` pairs: the
    logged ``gate_entropy`` (mean per-row entropy, nats) when every epoch with gates has it, else
    (older runs) the entropy of each epoch's mean gate, ``logged`` False. The entropy of the mean
    gate is an upper bound of the mean per-row entropy (entropy is concave)."""
    with_gates = [(e, d) for e, d in records if isinstance(d, Mapping) and isinstance(d.get("gates"), Mapping)]
    logged = bool(with_gates) and all(isinstance(d.get("gate_entropy"), Mapping) for _, d in with_gates)
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for epoch, diag in with_gates:
        source = diag["gate_entropy"] if logged else diag["gates"]
        nested = all(isinstance(v, Mapping) for v in source.values())
        for level, gates in (source.items() if nested else [("", source)]):
            for gate, value in gates.items():
                h = _number(value) if logged else entropy([_number(v) for v in value] if isinstance(value, list) else [])
                out.setdefault(str(level), {}).setdefault(str(gate), []).append((epoch, h))
    return out, logged


# -- calibration -------------------------------------------------------------------------------------------
@dataclass
class Reliability:
    """Equal-width bins of predicted probability: per bin the row count, the mean prediction and
    the observed rate of positives (NaN in an empty bin); ``ece`` is the expected calibration
    error (count-weighted mean of |observed - predicted|)."""

    edges: np.ndarray
    counts: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    rows: int
    base_rate: float
    mean_prediction: float

    @property
    def ece(self) -> float:
        filled = self.counts > 0
        if not filled.any():
            return float("nan")
        gap = np.abs(self.observed[filled] - self.predicted[filled])
        return float((gap * self.counts[filled]).sum() / self.counts[filled].sum())


def reliability(probability: Any, label: Any, bins: int = 10) -> Reliability:
    """Bin ``probability`` (P(y=1)) into ``bins`` equal-width bins over [0, 1] (1.0 in the last)
    and compare with ``label`` (0/1) in each."""
    p = np.asarray(probability, dtype=float).reshape(-1)
    y = np.asarray(label, dtype=float).reshape(-1)
    keep = ~(np.isnan(p) | np.isnan(y))
    p, y = p[keep], y[keep]
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(all="ignore"):
        predicted = np.where(counts > 0, np.bincount(which, weights=p, minlength=bins) / counts, np.nan)
        observed = np.where(counts > 0, np.bincount(which, weights=y, minlength=bins) / counts, np.nan)
    return Reliability(edges, counts, predicted, observed, int(p.size),
                       float(y.mean()) if y.size else float("nan"), float(p.mean()) if p.size else float("nan"))
