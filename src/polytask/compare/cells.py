"""The cells of ``polytask compare``: which (model, weighting) or baseline rows the grid holds, and
each cell's config (the comparison's config with the cell's model, weighting and scoped
``--set`` overrides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polytask.compare.grid import merge
from polytask.compare.stats import SINGLE_TASK


@dataclass(frozen=True)
class Cell:
    """One row of the comparison: a neural model with a weighting, or a baseline."""

    label: str
    model: str
    weighting: str | None = None
    baseline: bool = False


def plan_cells(models: Sequence[str], weightings: Sequence[str] = (), baselines: Sequence[str] = ()) -> list[Cell]:
    """The cells of a comparison: ``single_task`` (with equal weighting) first, then every model
    with every weighting (labelled ``<model>-<weighting>`` when weightings are given), then the
    baselines. ConfigError on an unknown model or weighting, listing the known ones."""
    from polytask.errors import ConfigError
    from polytask.registry import MODELS, WEIGHTINGS

    for name in models:
        if name not in MODELS:
            raise ConfigError(f"--models: unknown model {name!r}; known: {', '.join(MODELS.names())}")
    for name in weightings:
        if name not in WEIGHTINGS:
            raise ConfigError(f"--weightings: unknown weighting {name!r}; known: {', '.join(WEIGHTINGS.names())}")
    if not models:
        raise ConfigError("--models: name at least one model")
    cells = [Cell(SINGLE_TASK, SINGLE_TASK, "equal")]
    for m in dict.fromkeys(models):
        if m == SINGLE_TASK:
            continue
        if weightings:
            cells += [Cell(f"{m}-{w}", m, w) for w in dict.fromkeys(weightings)]
        else:
            cells.append(Cell(m, m))
    return cells + [Cell(b, b, baseline=True) for b in baselines]


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``--set`` items for the whole config, and those scoped to one model's cells: the key
    ``<model>.<param>`` (``single_task.hidden=[64]``) sets ``model.<param>`` of that model only."""
    from polytask.registry import MODELS

    common: list[str] = []
    scoped: dict[str, list[str]] = {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        head, _, rest = key.partition(".")
        if rest and head in MODELS:
            scoped.setdefault(head, []).append(f"{rest}={item.split('=', 1)[1]}" if "=" in item else item)
        else:
            common.append(item)
    return common, scoped


def cell_config(raw: Mapping[str, Any], cell: Cell, scoped: Mapping[str, Sequence[str]] = ()) -> dict[str, Any]:
    """The config of ``cell`` from the comparison's config (a raw dict): the model section keeps
    the keys the cell's model accepts (``embedding_dim``, ``tower_hidden``, ...), then the model's
    scoped overrides; the weighting section is replaced when the cell names another weighting."""
    from polytask.api import signature_defaults
    from polytask.config import apply_overrides
    from polytask.registry import MODELS

    out = merge(raw, {})
    given = dict(out.get("model", {}))
    if given.get("name") != cell.model:
        accepted = signature_defaults(MODELS.get(cell.model), ("input_spec", "tasks"))
        given = {k: v for k, v in given.items() if k in accepted}
    model = {"name": cell.model, **{k: v for k, v in given.items() if k != "name"}}
    out["model"] = apply_overrides(model, list(dict(scoped).get(cell.model, [])))
    if cell.weighting is not None and dict(out.get("weighting", {})).get("name") != cell.weighting:
        out["weighting"] = {"name": cell.weighting}
    out.setdefault("train", {})["progress"] = False
    return out


def run_name(cell: Cell, seed: int) -> str:
    """The cell's run directory name under ``OUT_DIR/runs``."""
    return f"{cell.label}-seed{seed}"
