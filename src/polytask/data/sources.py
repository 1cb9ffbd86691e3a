"""Assemble a run's splits, features and tasks from the ``data`` config section: a registered
dataset, or CSV/Parquet files (with a seeded split of ``train`` when validation/test files are
not given). All checks that can fail on bad input run here, before anything is trained or written.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from polytask.config import DataConfig, FeaturesConfig, StreamConfig, TaskConfig, is_column_pattern
from polytask.data.conditions import parse_condition
from polytask.data.io import read_table, split_permutation, tag_split
from polytask.data.schema import FEATURE_TYPES, FeatureSpec
from polytask.errors import ConfigError, DataError
from polytask.params import validate_params
from polytask.registry import DATASETS
from polytask.tasks import Task


@dataclass
class Splits:
    """The run's tables, features and tasks. ``inferred`` holds, when the features were inferred
    (``data.features`` omitted), one ``(column, decision, reason)`` per column of the training
    file, in file order (:func:`describe_inference` turns it into lines to print before training).
    ``stream`` is set when the training set is streamed (:mod:`polytask.data.stream_sources`):
    the splits are then :class:`~polytask.data.stream_files.ParquetFiles`, not tables."""

    train: pa.Table
    validation: pa.Table | None
    test: pa.Table | None
    features: list[FeatureSpec]
    tasks: list[Task]
    notes: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    inferred: list[tuple[str, str, str]] = field(default_factory=list)
    stream: StreamConfig | None = None


def task_columns(tasks: list[Task]) -> dict[str, str]:
    """Every column a task reads that is not a feature -> why: label (``task.label_columns()``),
    weight and ``where`` columns."""
    out: dict[str, str] = {}
    for t in tasks:
        for c in t.label_columns():
            out.setdefault(c, f"label column of task {t.name!r}")
        if t.weight_column:
            out.setdefault(t.weight_column, f"weight column of task {t.name!r}")
        if t.where:
            for c, _, _ in parse_condition(t.where):
                out.setdefault(c, f"where column of task {t.name!r}")
    return out


def match_columns(pattern: str, columns: list[str]) -> list[str]:
    """The columns a feature name selects, in file order: the columns a ``re:`` regular
    expression matches in full, the columns a glob (``*``, ``?``, ``[...]``) matches, or the
    name itself."""
    if pattern.startswith("re:"):
        try:
            rx = re.compile(pattern[3:])
        except re.error as exc:
            raise ConfigError(f"data.features: {pattern!r} is not a valid regular expression: {exc}") from None
        return [c for c in columns if rx.fullmatch(c)]
    if is_column_pattern(pattern):
        return [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
    return [pattern]


def feature_specs(
    config: FeaturesConfig, columns: list[str] | None = None, *, skip: set[str] | None = None, source: str = "train"
) -> list[FeatureSpec]:
    """The declared features; column patterns (``"fp*"``, ``"re:^fp_\\d+$"``) expand to the
    matching ``columns`` (the training file's, in file order), leaving out ``skip`` (task
    columns) and columns declared by name. A pattern that matches nothing is a DataError."""
    named = {e.name for kind in FEATURE_TYPES for e in getattr(config, kind) if not e.is_pattern()}
    specs = []
    for kind in FEATURE_TYPES:
        for i, entry in enumerate(getattr(config, kind)):
            options = entry.options()
            if not entry.is_pattern():
                specs.append(FeatureSpec(type=kind, **options))
                continue
            if columns is None:
                raise ConfigError(f"data.features.{kind}.{i}: pattern {entry.name!r} needs the training file's columns")
            hits = [c for c in match_columns(entry.name, columns) if c not in named and c not in (skip or ())]
            if not hits:
                raise DataError(f"{source}: data.features.{kind}.{i}: pattern {entry.name!r} matches no column")
            specs.extend(FeatureSpec(type=kind, **{**options, "name": c}) for c in hits)
            named.update(hits)
    return specs


def make_tasks(configs: list[TaskConfig]) -> list[Task]:
    names = [t.name for t in configs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"data.tasks: task name(s) used twice: {', '.join(sorted(dup))}")
    return [Task(**t.model_dump(exclude_none=True)) for t in configs]


#: names that mark an identifier column (``id``, ``uid``, ``user_id``, ``userId``, ``order-uuid``)
ID_NAME = re.compile(r"^(?i:id|uid|uuid|guid|key|.*[_\-. ](?:id|uid|uuid|guid|key))$|^.*[a-z0-9](?:Id|ID|Uuid|UUID)$")
#: below this many rows, a string column unique per row may just be a small table's categories
MIN_ROWS_FOR_UNIQUE = 20
#: a text column whose every value ends like this holds image file paths
IMAGE_PATH = r"(?i)\.(png|jpe?g|bmp|gif|webp|tiff?)$"


def infer_features(
    table: pa.Table, tasks: list[Task], exclude: list[str], *, source: str = "train"
) -> tuple[list[FeatureSpec], list[tuple[str, str, str]]]:
    """Feature specs for the columns of ``table``, and one ``(column, decision, reason)`` per
    column. Left out: every task's label columns, weight and ``where`` columns, ``exclude``, and
    identifiers (a string column with a different value in every row, or a column named like an
    id -- ``id``, ``*_id``, ``userId`` -- with a different value in (nearly) every row).
    Strings -> categorical, or sequence when a value holds the separator ``|``, or image when every
    value is a path ending in an image extension (``.png``, ``.jpg``, ...); binary (encoded bytes)
    -> image; numbers and booleans -> numeric; lists of strings/ints -> sequence, lists of floats
    -> dense."""
    import pyarrow.compute as pc

    skip = task_columns(tasks)
    skip.update({c: "data.features.exclude" for c in exclude if c not in skip})
    specs: list[FeatureSpec] = []
    decisions: list[tuple[str, str, str]] = []
    n = table.num_rows

    def distinct(col) -> int:
        return int(pc.count_distinct(col, mode="only_valid").as_py())

    for name, typ in zip(table.column_names, table.schema.types):
        if name in skip:
            decisions.append((name, "label" if skip[name].startswith("label") else "skipped", skip[name]))
            continue
        col = table.column(name)
        id_name = bool(ID_NAME.match(name))
        if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ):
            strings = pc.cast(col, typ.value_type) if pa.types.is_dictionary(typ) else col
            valid = pc.drop_null(strings)
            if len(valid) and pc.all(pc.match_substring_regex(valid, IMAGE_PATH)).as_py():
                specs.append(FeatureSpec(name, "image"))
                decisions.append((name, "image", "every value is an image file path"))
                continue
            k = distinct(strings)
            if (k == n and n >= MIN_ROWS_FOR_UNIQUE) or (id_name and n >= 2 and k >= 0.9 * n):
                decisions.append((name, "skipped", f"identifier: {k} distinct values in {n} rows"))
                continue
            if pc.any(pc.match_substring(strings, "|")).as_py():
                specs.append(FeatureSpec(name, "sequence"))
                decisions.append((name, "sequence", "text holding the separator '|'"))
            else:
                specs.append(FeatureSpec(name, "categorical"))
                decisions.append((name, "categorical", f"text, {k} distinct values"))
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ) or pa.types.is_decimal(typ):
            if id_name and pa.types.is_integer(typ) and n >= 2 and distinct(col) == n:
                decisions.append((name, "skipped", f"identifier: integer named like an id, unique in all {n} rows"))
                continue
            specs.append(FeatureSpec(name, "numeric"))
            decisions.append((name, "numeric", f"{typ} column"))
        elif pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            inner = typ.value_type
            kind = "dense" if pa.types.is_floating(inner) or pa.types.is_list(inner) else "sequence"
            specs.append(FeatureSpec(name, kind))
            decisions.append((name, kind, f"list of {inner}"))
        elif pa.types.is_binary(typ) or pa.types.is_large_binary(typ) or pa.types.is_fixed_size_binary(typ):
            specs.append(FeatureSpec(name, "image"))
            decisions.append((name, "image", "binary column (encoded image bytes)"))
        elif pa.types.is_null(typ):
            raise DataError(f"{source}: column {name!r} is entirely empty; exclude it (data.features.exclude)")
        else:
            raise DataError(f"{source}: cannot infer the feature type of column {name!r} ({typ}); declare it in data.features")
    if not specs:
        raise DataError(f"{source}: no feature columns left after removing labels, identifiers and excluded columns")
    return specs, decisions


def describe_inference(inferred: list[tuple[str, str, str]]) -> list[str]:
    """One line per column of an inferred feature set: ``column: decision (reason)``, columns
    aligned; empty when nothing was inferred."""
    width = max((len(c) for c, _, _ in inferred), default=0)
    return [f"{c.ljust(width)}  {d} ({why})" for c, d, why in inferred]


def split_table(
    table: pa.Table, fractions: list[float], seed: int, *, names: list[str] | None = None, source: str = "train"
) -> list[pa.Table]:
    """Seeded random split into consecutive parts with the given fractions (the rest is the first).

    Each part records in its schema metadata where its rows are in ``table``
    (:func:`polytask.data.io.file_rows`), so errors name the file's row. A fraction that would
    give no row (a file too small for it) is a DataError naming ``source``."""
    n = table.num_rows
    order = split_permutation(seed, n)
    sizes = [int(round(f * n)) for f in fractions]
    names = names or [f"part {i + 1}" for i in range(len(fractions))]
    for f, size, name in zip(fractions, sizes, names):
        if f > 0 and size == 0:
            raise DataError(
                f"{source}: {n} row(s) are too few to carve a {f:.0%} {name} split from (it would get no row); "
                f"give more rows, a {name} file, or set data.split.{name}: 0"
            )
    first = n - sum(sizes)
    if first <= 0:
        raise ConfigError("data.split: validation + test fractions leave no training rows")
    bounds = [int(b) for b in np.cumsum([0, first, *sizes])]
    return [
        tag_split(table.take(pa.array(order[a:b])), seed=seed, rows=n, bounds=bounds, index=i)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


def load_sources(config: DataConfig, data_dir: str | os.PathLike | None = None) -> Splits:
    """Several data sets in one run (``data.sources``): each source is loaded like a run's data
    (a dataset or files), its split tables get a ``_source`` column naming it and are stacked
    (a column one source lacks is empty in its rows), and every task learns from its own
    source's rows only (``Task.source``: the label encoder masks every other source's rows). The
    tasks are ``data.tasks`` (each naming its ``source``), or else every source's own tasks. The
    features are the union of the sources' features; a feature two sources declare differently
    is a ConfigError (declare it the same way, or give ``data.features``)."""
    from polytask.data.labels import SOURCE_COLUMN

    parts = {name: load_splits(sub, data_dir) for name, sub in config.sources.items()}
    if config.tasks:
        tasks = make_tasks(config.tasks)
    else:
        tasks = []
        for name, part in parts.items():
            for t in part.tasks:
                t.source = name
                tasks.append(t)
        names = [t.name for t in tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"data.sources: task name(s) {', '.join(dup)} come from more than one source; list the tasks in "
                f"data.tasks with distinct names (each naming its source)"
            )
    features: dict[str, FeatureSpec] = {}
    declared_by: dict[str, str] = {}
    for name, part in parts.items():
        for f in part.features:
            if f.name in features and features[f.name].to_dict() != f.to_dict():
                raise ConfigError(
                    f"data.sources: feature {f.name!r} is declared differently by sources {declared_by[f.name]!r} "
                    f"({features[f.name].to_dict()}) and {name!r} ({f.to_dict()}); declare it the same way in both"
                )
            features.setdefault(f.name, f)
            declared_by.setdefault(f.name, name)
    feature_list = list(features.values())
    if config.features is not None and not config.features.is_empty():
        feature_list = feature_specs(config.features, None)

    def stack(split: str) -> pa.Table | None:
        tables = []
        for name, part in parts.items():
            table = getattr(part, split)
            if table is None:
                continue
            if SOURCE_COLUMN in table.column_names:
                raise DataError(f"data.sources.{name}: column {SOURCE_COLUMN!r} is reserved (it names each row's source)")
            tables.append(table.append_column(SOURCE_COLUMN, pa.array([name] * table.num_rows, pa.string())))
        if not tables:
            return None
        try:
            return pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"data.sources: the {split} tables of the sources cannot be stacked: {exc}") from None

    sources = {f"{name}.{split}": where for name, part in parts.items() for split, where in part.sources.items()}
    notes = "; ".join(f"{name}: {part.notes}" for name, part in parts.items() if part.notes)
    return Splits(stack("train"), stack("validation"), stack("test"), feature_list, tasks, notes, sources)


def load_splits(
    config: DataConfig, data_dir: str | os.PathLike | None = None, tables: dict[str, pa.Table] | None = None,
    *, stream: bool = False,
) -> Splits:
    """Read and split the data named by ``config``; validate tasks and feature declarations.

    ``tables`` supplies in-memory splits (from the Python API) in place of files. A streamed
    training set (a directory or glob of Parquet files, or ``data.stream``) gives, with
    ``stream`` (training), splits of :class:`~polytask.data.stream_files.ParquetFiles` to stream
    (:mod:`polytask.data.stream_sources`); without it the same splits (the same carved row groups)
    read whole, for the commands that read a run's data again (evaluate, report, baselines).
    """
    from polytask.data.stream_sources import load_streamed, stream_settings

    if config.sources is not None:
        if tables:
            raise ConfigError("data.sources: in-memory tables cannot be given for a multi-source run")
        if any(stream_settings(s) is not None for s in config.sources.values()):
            raise ConfigError("data.sources: a source cannot be streamed (a directory, a glob or data.stream); "
                              "give each source one file, or data.stream: false to read its files whole")
        return load_sources(config, data_dir)
    tables = tables or {}
    settings = stream_settings(config) if config.dataset is None and "train" not in tables else None
    if settings is not None:
        splits = load_streamed(config, settings)
        if stream:
            return splits
        for name in ("train", "validation", "test"):
            if getattr(splits, name) is not None:
                setattr(splits, name, getattr(splits, name).to_table())
        splits.stream = None
        return splits

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
            features = feature_specs(
                config.features, bundle.train.column_names, skip=set(task_columns(tasks)), source=bundle.sources.get("train", "train")
            )
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
            carved = [n for n in ("validation", "test") if not getattr(config, n) and getattr(config.split, n) > 0]
            parts = split_table(train, fractions, config.split.seed, names=carved, source=str(config.train))
            train, rest = parts[0], parts[1:]
            if not config.validation and config.split.validation > 0:
                validation = rest.pop(0)
                sources["validation"] = f"{config.train} ({config.split.validation:.0%} seeded split, seed {config.split.seed})"
            if not config.test and config.split.test > 0:
                test = rest.pop(0)
                sources["test"] = f"{config.train} ({config.split.test:.0%} seeded split, seed {config.split.seed})"
            notes.append(f"split of {config.train} with seed {config.split.seed}")
        features_cfg = config.features or FeaturesConfig()
        inferred: list[tuple[str, str, str]] = []
        if features_cfg.is_empty():
            features, inferred = infer_features(train, tasks, features_cfg.exclude, source=str(config.train))
        else:
            features = feature_specs(features_cfg, train.column_names, skip=set(task_columns(tasks)), source=str(config.train))
        splits = Splits(train, validation, test, features, tasks, "; ".join(notes), sources, inferred)
    splits.sources.setdefault("train", "train")
    return splits
