"""The contract every built-in dataset fulfils.

A dataset loader turns files (or a generator) into three pyarrow tables plus a description of
which columns are features and which are labels. Everything after that (encoders, tensors,
batches) is the generic data path, so a built-in dataset and a user's CSV behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class DatasetBundle:
    """Splits and column roles of one dataset.

    ``features`` maps a feature type (``numeric``, ``categorical``, ``sequence``, ``dense``) to
    column names, or to option dicts for options other than the defaults (``{"name": "history",
    "max_len": 20}``: the keys of :class:`~polytask.data.schema.FeatureSpec`); ``tasks`` is a
    list of task dicts in the config's form
    (``{"name": ..., "kind": "binary"|"regression"|"multiclass", "label": column, ...}``).
    ``test`` may be None when a dataset has no held-out split. ``notes`` says how the splits
    were made (it is written into the run directory so results can be read honestly).
    """

    train: pa.Table
    validation: pa.Table
    test: pa.Table | None
    features: dict[str, list[str]]
    tasks: list[dict[str, Any]]
    notes: str = ""
    sources: dict[str, str] = field(default_factory=dict)
