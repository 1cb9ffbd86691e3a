"""Per-task metrics on labelled rows, and the multi-task gain Delta-m against single-task baselines.

Each task's kind defines its metrics (:class:`~polytask.tasks.base.Metric`, with its direction)
and computes them once per split on the concatenated outputs, not averaged over batches
(batch-averaged AUC is not AUC). Nothing here knows a kind or metric by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from polytask.tasks import Task


def task_metrics(task: Task, output: Tensor, label: Tensor, mask: Tensor) -> dict[str, float]:
    """All metrics of ``task`` on its labelled elements, plus ``count`` (rows with a label)."""
    return task.spec.compute_metrics(output, label, mask)


def compute_metrics(
    tasks: Sequence[Task], outputs: Mapping[str, Tensor], labels: Mapping[str, Tensor], masks: Mapping[str, Tensor]
) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for every task."""
    return {t.name: task_metrics(t, outputs[t.name], labels[t.name], masks[t.name]) for t in tasks}


def higher_is_better(metric: str, task: Task | None = None) -> bool:
    """The direction of ``metric``: asked of ``task``'s kind when given, else of every registered
    kind that defines a metric of that name (``loss`` is lower-is-better). KeyError if unknown."""
    if metric == "loss":
        return False
    if task is not None:
        return task.metric(metric).higher_is_better
    directions = known_directions()
    if metric not in directions:
        raise KeyError(f"unknown metric {metric!r}; registered kinds define {', '.join(sorted(directions))}")
    return directions[metric]


def known_directions() -> dict[str, bool]:
    """``{metric: higher_is_better}`` over the metrics of every registered task kind (built with
    its ``example_options``), plus ``loss``."""
    from polytask.registry import TASK_KINDS

    out: dict[str, bool] = {"loss": False}
    for _, cls in TASK_KINDS.items():
        for m in cls.example().metrics():  # a representative instance lists the kind's metrics
            out.setdefault(m.name, m.higher_is_better)
    return out


def delta_m(
    method: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    metrics: Mapping[str, Sequence[str]] | None = None,
    tasks: Sequence[Task] | None = None,
) -> float:
    """Multi-task gain Delta-m in percent, **higher is better**, averaged per task first.

    ``Delta-m = 100/T * sum_t 1/M_t * sum_m s_m (M_method - M_base) / M_base`` with ``s_m = +1``
    if the metric is higher-is-better, else ``-1`` (the LibMTL ``Delta_p`` convention; the
    Nash-MTL/FAMO papers use the opposite sign and a flat mean over metrics, see
    ``shared/reference/paper-results.md`` Sec. 4). ``metrics`` picks which metrics count per task
    (default: every shared metric with a known direction). Directions are asked of the ``tasks``'
    kinds when given, else of the registered kinds by metric name.
    """
    by_name = {t.name: t for t in tasks or ()}
    directions = known_directions()
    per_task = []
    for task, base in baseline.items():
        if task not in method or not isinstance(base, Mapping):
            continue  # the split-level "loss" entry is not a task
        t = by_name.get(task)

        def direction(m: str) -> bool | None:
            if t is not None and m in t.metrics:
                return t.metric(m).higher_is_better
            return directions.get(m) if m not in ("loss", "count") else None

        names = list(metrics[task]) if metrics and task in metrics else [m for m in base if direction(m) is not None]
        gains = []
        for m in names:
            b, v = base[m], method[task][m]
            up = direction(m)
            if up is None or b == 0 or b != b or v != v:
                continue
            gains.append((1.0 if up else -1.0) * (v - b) / abs(b))
        if gains:
            per_task.append(sum(gains) / len(gains))
    if not per_task:
        return float("nan")
    return 100.0 * sum(per_task) / len(per_task)
