"""A run's data when the training set is streamed (``data.train`` a directory or glob of Parquet
files, or ``data.stream`` given): the splits as :class:`ParquetFiles`, the streaming encoder fit,
and the split objects and training loader the trainer gets.

Validation and test are their own files when given (streamed for evaluation); otherwise they
are carved from the training set as whole row groups: a seeded order of the row groups (by
``data.split.seed``), the first ones holding at least ``data.split.validation`` of the rows
become validation, the next ones test. Carving whole row groups keeps every split readable
without touching the others' rows; a set with too few row groups to carve is refused with the
advice to give the files.
"""

from __future__ import annotations

import numpy as np

from polytask.config import DataConfig, FeaturesConfig, StreamConfig, TrainConfig
from polytask.data.preprocessor import Preprocessor
from polytask.data.stream_files import ParquetFiles, is_file_set
from polytask.errors import ConfigError, DataError


def stream_settings(config: DataConfig) -> StreamConfig | None:
    """The streaming settings when ``config`` streams its training set, else None: streaming is on
    for a directory or glob (unless ``stream: false``), and for a single file with ``stream``
    given (``true`` or a section)."""
    if config.train is None or config.stream is False:
        return None
    if config.stream is None and not is_file_set(config.train):
        return None
    return config.stream if isinstance(config.stream, StreamConfig) else StreamConfig()


def carve(files: ParquetFiles, fractions: list[float], names: list[str], seed: int) -> list[ParquetFiles]:
    """``[train, *parts]``: whole row groups, in a seeded order, the first ones holding at least
    each fraction of the rows going to each part (see the module docstring)."""
    order = [files.units[i] for i in np.random.default_rng(seed).permutation(len(files.units))]
    total, parts = files.num_rows, []
    for fraction, name in zip(fractions, names):
        taken, rows = [], 0
        while order and rows < fraction * total:
            taken.append(order.pop(0))
            rows += taken[-1].rows
        if not taken or not order:
            raise DataError(
                f"{files.path}: {len(files.units)} row group(s) are too few to carve a {fraction:.0%} {name} split "
                f"of whole row groups from; give data.{name} (a file, directory or glob) or set data.split.{name}: 0"
            )
        parts.append(files.select(sorted(taken, key=lambda u: (u.file, u.group))))
    return [files.select(sorted(order, key=lambda u: (u.file, u.group))), *parts]


def load_streamed(config: DataConfig, settings: StreamConfig):
    """The :class:`~polytask.data.sources.Splits` of a streamed run (its splits :class:`ParquetFiles`)."""
    from polytask.data.sources import Splits, feature_specs, infer_features, make_tasks, task_columns

    if config.params:
        raise ConfigError("data.params: only used with data.dataset")
    tasks = make_tasks(config.tasks or [])
    train = ParquetFiles(config.train)
    sources = {"train": str(config.train)}
    given = {name: ParquetFiles(getattr(config, name)) for name in ("validation", "test") if getattr(config, name)}
    for name in given:
        sources[name] = str(getattr(config, name))
    carved = [n for n in ("validation", "test") if n not in given and getattr(config.split, n) > 0]
    notes = [f"streamed: {len(train.paths)} Parquet file(s), {len(train.units)} row group(s)"]
    if carved:
        train, *parts = carve(train, [getattr(config.split, n) for n in carved], carved, config.split.seed)
        for name, part in zip(carved, parts):
            given[name] = part
            sources[name] = (f"{config.train} ({len(part.units)} row groups, ~{getattr(config.split, name):.0%}, "
                             f"seed {config.split.seed})")
        notes.append(f"row-group split of {config.train} with seed {config.split.seed}")
    features_cfg = config.features or FeaturesConfig()
    inferred: list[tuple[str, str, str]] = []
    if features_cfg.is_empty():  # inferred from the first row group: the set is not read whole for it
        sample = train.read(train.units[0], train.column_names)
        features, inferred = infer_features(sample, tasks, features_cfg.exclude, source=str(train.paths[0]))
        notes.append("features inferred from the first row group")
    else:
        features = feature_specs(features_cfg, train.column_names, skip=set(task_columns(tasks)), source=str(config.train))
    return Splits(train, given.get("validation"), given.get("test"), features, tasks, "; ".join(notes), sources,
                  inferred, stream=settings)


def fit_streamed(pre: Preprocessor, splits, rank: int = 0, world_size: int = 1) -> Preprocessor:
    """Fit ``pre`` on the streamed training set; check the columns of every file of every split.
    Under torchrun rank 0 alone reads the training set for it and hands the fitted encoders to
    the other processes (one broadcast), so the set is read once, not once per process."""
    from polytask.data.stream_fit import fit_streaming

    for split in (splits.validation, splits.test):
        if split is not None:
            split.check_columns(pre.required_columns(), pre._optional())
    if world_size == 1:
        return fit_streaming(pre, splits.train, splits.stream.read_rows)
    import torch.distributed as dist

    state = [fit_streaming(pre, splits.train, splits.stream.read_rows).to_dict() if rank == 0 else None]
    dist.broadcast_object_list(state, src=0)
    return pre if rank == 0 else Preprocessor.from_dict(state[0])


def streamed_splits(pre: Preprocessor, splits, train: TrainConfig, rank: int = 0, world_size: int = 1):
    """``(train, validation, test, loader)``: the splits as :class:`StreamedSplit` s (validation and
    test None when absent) and the trainer's loader of this process's training batches."""
    from polytask.data.stream_split import StreamedSplit
    from polytask.data.streaming import StreamSchedule

    if train.schedule != "joint":
        raise ConfigError(f"train.schedule: a streamed training set trains with the joint schedule only, "
                          f"not {train.schedule!r}; read the data whole (data.stream: false) for it")
    read_rows = splits.stream.read_rows
    parts = [StreamedSplit(s, pre, read_rows=read_rows) if s is not None else None
             for s in (splits.train, splits.validation, splits.test)]
    loader = StreamSchedule(parts[0].stream(train.batch_size, shuffle_buffer=splits.stream.shuffle_buffer,
                                            seed=train.seed, rank=rank, world_size=world_size))
    return (*parts, loader)
