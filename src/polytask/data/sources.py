"""Assemble a run's splits, features and tasks from the ``data`` config section: a registered
dataset, or CSV/Parquet files (with a seeded split of ``train`` when validation/test files are
not given). All checks that can fail on bad input run here, before anything is trained or written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from polytask.config import DataConfig, FeatureOptions, FeaturesConfig, TaskConfig
from polytask.data.conditions import parse_condition
from polytask.data.io import read_table
from polytask.data.schema import FEATURE_TYPES, FeatureSpec
from polytask.errors import ConfigError, DataError
from polytask.params import validate_params
from polytask.registry import DATASETS
from polytask.tasks import Task


@dataclass
class Splits:
    train: pa.Table
    validation: pa.Table | None
    test: pa.Table | None
    features: list[FeatureSpec]
    tasks: list[Task]
    notes: str = ""
    sources: dict[str, str] = field(default_factory=dict)


def feature_specs(config: FeaturesConfig) -> list[FeatureSpec]:
    specs = []
    for kind in FEATURE_TYPES:
        for entry in getattr(config, kind):
            if isinstance(entry, FeatureOptions):
                specs.append(FeatureSpec(type=kind, **entry.model_dump()))
            else:
                specs.append(FeatureSpec(name=entry, type=kind))
    return specs


def make_tasks(configs: list[TaskConfig]) -> list[Task]:
    names = [t.name for t in configs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"data.tasks: task name(s) used twice: {', '.join(sorted(dup))}")
    return [Task(**t.model_dump(exclude_none=True)) for t in configs]


def infer_features(table: pa.Table, tasks: list[Task], exclude: list[str]) -> list[FeatureSpec]:
    """Every column that is not a label, weight, condition column or excluded: strings ->
    categorical, numbers/booleans -> numeric, lists of strings/ints -> sequence, lists of floats -> dense."""
    skip = set(exclude)
    for t in tasks:
        skip.update(t.label_columns())
        if t.weight_column:
            skip.add(t.weight_column)
        if t.where:
            skip.update(c for c, _, _ in parse_condition(t.where))
    specs = []
    for name, typ in zip(table.column_names, table.schema.types):
        if name in skip:
            continue
        if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ):
            specs.append(FeatureSpec(name, "categorical"))
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ) or pa.types.is_decimal(typ):
            specs.append(FeatureSpec(name, "numeric"))
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            inner = typ.value_type
            specs.append(FeatureSpec(name, "dense" if pa.types.is_floating(inner) or pa.types.is_list(inner) else "sequence"))
        elif pa.types.is_null(typ):
            raise DataError(f"train: column {name!r} is entirely empty; exclude it (data.features.exclude)")
        else:
            raise DataError(f"train: cannot infer the feature type of column {name!r} ({typ}); declare it in data.features")
    if not specs:
        raise DataError("train: no feature columns left after removing labels and excluded columns")
    return specs


def split_table(table: pa.Table, fractions: list[float], seed: int) -> list[pa.Table]:
    """Seeded random split into consecutive parts with the given fractions (the rest is the first)."""
    order = np.random.default_rng(seed).permutation(table.num_rows)
    sizes = [int(round(f * table.num_rows)) for f in fractions]
    first = table.num_rows - sum(sizes)
    if first <= 0:
        raise ConfigError("data.split: validation + test fractions leave no training rows")
    bounds = np.cumsum([0, first, *sizes])
    return [table.take(pa.array(order[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


def load_splits(
    config: DataConfig, data_dir: str | os.PathLike | None = None, tables: dict[str, pa.Table] | None = None
) -> Splits:
    """Read and split the data named by ``config``; validate tasks and feature declarations.

    ``tables`` supplies in-memory splits (from the Python API) in place of files.
    """
    tables = tables or {}

    def read(split: str) -> pa.Table:
        return tables[split] if split in tables else read_table(getattr(config, split))

    if config.dataset is not None:
        loader = DATASETS.get(config.dataset)
        params = validate_params(loader, config.params, where="data.params", skip=("data_dir",))
        try:
            bundle = loader(data_dir, **params)
        except ValueError as exc:  # bad parameter values (group=5, max_rows=0) or an unreadable file
            if isinstance(exc, (ConfigError, DataError)):
                raise
            raise ConfigError(f"data.params (dataset {config.dataset!r}): {exc}") from None
        tasks = make_tasks(config.tasks) if config.tasks else make_tasks([TaskConfig(**t) for t in bundle.tasks])
        if config.features is not None and not config.features.is_empty():
            features = feature_specs(config.features)
        else:
            # a dataset lists names, or option dicts ({"name": ..., "max_len": ...}) for non-default options
            features = [
                FeatureSpec(**{**n, "type": k}) if isinstance(n, dict) else FeatureSpec(n, k)
                for k, names in bundle.features.items()
                for n in names
            ]
        splits = Splits(bundle.train, bundle.validation, bundle.test, features, tasks, bundle.notes, dict(bundle.sources))
    else:
        if config.params:
            raise ConfigError("data.params: only used with data.dataset")
        tasks = make_tasks(config.tasks or [])
        train = read("train")
        sources = {"train": str(config.train)}
        validation = test = None
        fractions, notes = [], []
        if config.validation:
            validation = read("validation")
            sources["validation"] = str(config.validation)
        elif config.split.validation > 0:
            fractions.append(config.split.validation)
        if config.test:
            test = read("test")
            sources["test"] = str(config.test)
        elif config.split.test > 0:
            fractions.append(config.split.test)
        if fractions:
            parts = split_table(train, fractions, config.split.seed)
            train, rest = parts[0], parts[1:]
            if not config.validation and config.split.validation > 0:
                validation = rest.pop(0)
                sources["validation"] = f"{config.train} ({config.split.validation:.0%} seeded split, seed {config.split.seed})"
            if not config.test and config.split.test > 0:
                test = rest.pop(0)
                sources["test"] = f"{config.train} ({config.split.test:.0%} seeded split, seed {config.split.seed})"
            notes.append(f"split of {config.train} with seed {config.split.seed}")
        features_cfg = config.features or FeaturesConfig()
        features = (
            infer_features(train, tasks, features_cfg.exclude) if features_cfg.is_empty() else feature_specs(features_cfg)
        )
        splits = Splits(train, validation, test, features, tasks, "; ".join(notes), sources)
    splits.sources.setdefault("train", "train")
    return splits
