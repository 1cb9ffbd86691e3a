"""Train from a config (file, dict or keywords) in one call: :func:`fit`.

Every check that can fail on bad input (config keys, files, columns, label values, model and
weighting parameters, the monitor) runs before the first training step and before anything is
written. A run directory is written under ``<out>.partial`` and renamed to ``<out>`` when the run
completes, so ``<out>`` is either a complete run or absent; ``<out>.lock`` keeps a second training
off the same ``<out>``, ``--overwrite`` replaces only a polytask run (never another directory), and
the remains of an interrupted run are never deleted without ``--overwrite``.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from polytask.config import Config, config_from_dict, load_config
from polytask.data.io import to_arrow
from polytask.data.preprocessor import Preprocessor
from polytask.data.sources import load_splits
from polytask.errors import ConfigError
from polytask.fileio import OutputLock, atomic_write_text, check_not_locked, json_dumps, make_dirs
from polytask.models import create_model
from polytask.run import DATA, LOG, Run, check_output, replace_directory, write_manifest
from polytask.train.trainer import Trainer
from polytask.weighting import create_weighting


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _as_config(config: Config | dict | str | os.PathLike | None, overrides: list[str] | None, sections: dict[str, Any]) -> Config:
    if isinstance(config, Config):
        raw = config.to_dict()
    elif isinstance(config, (str, os.PathLike)):
        raw = load_config(config).to_dict()
    else:
        raw = dict(config or {})
    for key, value in sections.items():
        if value is None:
            continue
        if key in ("model", "weighting", "optimizer", "scheduler") and isinstance(value, str):
            value = {"name": value}
        if key == "train" and isinstance(raw.get("train"), dict):
            value = {**raw["train"], **value}
        raw[key] = value
    return config_from_dict(raw, overrides)


def fit(
    config: Config | dict | str | os.PathLike | None = None,
    *,
    train: Any = None,
    validation: Any = None,
    test: Any = None,
    dataset: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    tasks: list[dict[str, Any]] | None = None,
    model: str | dict[str, Any] | None = None,
    weighting: str | dict[str, Any] | None = None,
    optimizer: str | dict[str, Any] | None = None,
    scheduler: str | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
    **train_options: Any,
) -> Run:
    """Train a multi-task model and return the :class:`~polytask.run.Run`.

    Either pass a config (YAML path, dict or :class:`~polytask.config.Config`), or build one from
    keywords: ``train``/``validation``/``test`` (paths, pyarrow tables, pandas DataFrames) or
    ``dataset`` (a registered name), ``features``, ``tasks``, ``model``, ``weighting``,
    ``optimizer``, ``scheduler``; ``callbacks`` are called with ``(trainer, epoch_record)`` after
    every epoch; remaining keywords go to the ``train`` section
    (``epochs=10, batch_size=512, monitor="income.auc"``). ``init_from`` (a run directory or a
    :class:`~polytask.run.Run`) and ``freeze`` (``none``/``shared``/``loaded``) start from a trained
    run's representation (see :mod:`polytask.transfer`).

    Example::

        run = polytask.fit(train="clicks.parquet", tasks=[{"name": "click"}, {"name": "buy", "where": "click == 1"}],
                           model={"name": "mmoe", "num_experts": 4}, epochs=5)
        run.predict("new.parquet")  # {"click": array, "buy": array}
    """
    tables: dict[str, pa.Table] = {}
    data: dict[str, Any] | None = None
    if train is not None or dataset is not None:
        data = {}
        if dataset is not None:
            data.update(dataset=dataset, params=dataset_params or {})
        for split, value in (("train", train), ("validation", validation), ("test", test)):
            if value is None:
                continue
            if isinstance(value, (str, os.PathLike)):
                data[split] = str(value)
            else:
                tables[split] = to_arrow(value, split)
                data[split] = f"<in-memory {split} table>"
        if features is not None:
            data["features"] = features
        if tasks is not None:
            data["tasks"] = tasks
    elif features is not None or tasks is not None:
        raise ConfigError("features/tasks given without data: pass train=... or dataset=...")
    init_run = train_options.get("init_from")
    if isinstance(init_run, Run):  # an in-memory run: the config records its directory, if it has one
        from polytask.transfer import IN_MEMORY

        train_options["init_from"] = str(init_run.directory) if init_run.directory is not None else IN_MEMORY
    else:
        init_run = None
    if data is not None and isinstance(config, dict) and "data" in config:
        data = {**config["data"], **data}
    cfg = _as_config(
        config,
        overrides,
        {
            "data": data,
            "model": model,
            "weighting": weighting,
            "optimizer": optimizer,
            "scheduler": scheduler,
            "train": train_options or None,
        },
    )
    return train_run(cfg, data_dir=data_dir, out=out, overwrite=overwrite, tables=tables, callbacks=callbacks,
                     init_run=init_run)


def train_run(
    cfg: Config,
    *,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    tables: dict[str, pa.Table] | None = None,
    callbacks: list[Any] | None = None,
    init_run: Run | None = None,
) -> Run:
    """The whole job: data -> encoders -> model -> training -> final metrics (-> run directory).
    ``init_run`` is the run ``train.init_from`` names, when the caller holds it in memory."""
    from polytask.train.distributed import setup_from_environment, shutdown

    launch = setup_from_environment(cfg.train.device)  # torchrun: one process per device
    try:
        return _train_run(cfg, launch, data_dir=data_dir, out=out, overwrite=overwrite, tables=tables,
                          callbacks=callbacks, init_run=init_run)
    finally:
        shutdown(launch)


def _train_run(
    cfg: Config,
    launch: Any,
    *,
    data_dir: str | os.PathLike | None,
    out: str | os.PathLike | None,
    overwrite: bool,
    tables: dict[str, pa.Table] | None,
    callbacks: list[Any] | None,
    init_run: Run | None,
) -> Run:
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.name in ("", ".", ".."):  # `--out .`: name the folder itself
        out_dir = Path(os.path.abspath(out_dir))
    if out_dir is not None:  # refused before any data is read
        check_not_locked(out_dir)
        check_output(out_dir, overwrite)
    # data files as absolute paths, so the saved config.yaml (and `polytask evaluate RUN`) does not
    # depend on the working directory the run was started from
    files = {s: str(Path(getattr(cfg.data, s)).resolve()) for s in ("train", "validation", "test")
             if getattr(cfg.data, s) is not None and s not in (tables or {})}
    if files:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update=files)})
    source = init_run
    if source is None and cfg.train.init_from is not None:  # transfer: the run to start from, loaded first
        from polytask.transfer import load_source

        source = load_source(cfg.train.init_from)
        resolved = str(source.directory.resolve())
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"init_from": resolved})})
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    # 1. data and every check on it, before anything is trained or written
    splits = load_splits(cfg.data, data_dir, tables=tables)
    if splits.inferred and launch.is_main:
        _show_inference(splits.inferred)
    pre = Preprocessor(splits.features, splits.tasks)
    pre.check_columns(splits.train, splits.sources.get("train", "train"))  # the train file first
    for name, table in (("validation", splits.validation), ("test", splits.test)):
        if table is not None:
            pre.check_columns(table, splits.sources.get(name, name))
    src = splits.sources
    pre.fit(splits.train, src.get("train", "train"))
    if source is not None:
        from polytask.transfer import reuse_encoders

        reused = reuse_encoders(pre, source.preprocessor)
    train_t = pre.transform(splits.train, src.get("train", "train"))
    val_t = pre.transform(splits.validation, src.get("validation", "validation")) if splits.validation is not None else None
    test_t = pre.transform(splits.test, src.get("test", "test")) if splits.test is not None else None

    # 2. model, weighting, trainer (parameter checks raise ConfigError naming the key)
    seed_everything(cfg.train.seed)
    model = create_model(cfg.model.name, pre.input_spec(), pre.tasks, cfg.model.params())
    transfer = None
    if source is not None:
        from polytask.transfer import initialise

        transfer = initialise(model, source, cfg.train.freeze, encoders=reused)
    trained = set(model.loss_task_names())
    weighting = create_weighting(cfg.weighting.name, [t for t in pre.tasks if t.name in trained], cfg.weighting.params())
    run = Run(cfg, pre, model)
    # under torchrun only rank 0 writes the run directory and shows progress
    work_dir = out_dir.with_name(out_dir.name + ".partial") if out_dir is not None and launch.is_main else None
    opt = cfg.optimizer.params()
    trainer = Trainer(
        model,
        pre.tasks,
        weighting=weighting,
        optimizer=cfg.optimizer.name,
        lr=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        optimizer_params=opt,
        scheduler=cfg.scheduler.name,
        scheduler_params=cfg.scheduler.params(),
        **{
            **cfg.train.trainer_settings(),  # the train: section is the trainer's keywords
            "device": launch.device,
            "progress": cfg.train.progress and launch.is_main,
        },
        log_path=(work_dir / LOG) if work_dir is not None else None,
        on_improve=(lambda tr: run.save_checkpoint(work_dir, tr.best_epoch)) if work_dir is not None else None,
        callbacks=callbacks or (),
    )
    # every hyperparameter as used, defaults included: config.yaml documents the run and rebuilds it
    run.config = cfg = resolve_config(cfg, trainer)

    if work_dir is None or out_dir is None:
        return _fit(run, trainer, cfg, train_t, val_t, test_t, transfer)
    # 3. the run directory: under an exclusive lock, written into <out>.partial, renamed when complete
    make_dirs(out_dir.parent)
    with OutputLock(out_dir):
        check_output(out_dir, overwrite)  # again, now that no other run can change it
        if work_dir.exists() or work_dir.is_symlink():  # the remains of an interrupted run: --overwrite given
            shutil.rmtree(work_dir)
        try:
            run.save_static(work_dir)
            atomic_write_text(work_dir / DATA, json_dumps({
                "sources": splits.sources, "notes": splits.notes,
                "inferred_features": [{"column": c, "decision": d, "reason": r} for c, d, r in splits.inferred],
                "rows": {"train": len(train_t), "validation": len(val_t) if val_t else 0,
                         "test": len(test_t) if test_t else 0}}, indent=1))
            _fit(run, trainer, cfg, train_t, val_t, test_t, transfer)
            run.save_checkpoint(work_dir, trainer.best_epoch)
            run.save_metrics(work_dir)
            write_manifest(work_dir)
        except Exception:
            # this process's own unfinished run: nothing in it is the user's, and leaving it would
            # make the next run refuse <out>.partial as the remains of an interrupted one
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        replace_directory(work_dir, out_dir)
    run.directory = out_dir
    return run


def _fit(run: Run, trainer: Trainer, cfg: Config, train_t: Any, val_t: Any, test_t: Any, transfer: Any) -> Run:
    """Train (model selection on validation only), then read the test split once."""
    history = trainer.fit(train_t, val_t)
    metrics: dict[str, Any] = {"best_epoch": trainer.best_epoch, "monitor": cfg.train.monitor}
    if transfer is not None:
        metrics["transfer"] = transfer
    if val_t is not None:
        metrics["validation"] = trainer.evaluate(val_t)
    if test_t is not None:
        metrics["test"] = trainer.evaluate(test_t)
    run.history, run.metrics = history, metrics
    return run


# -- the resolved config ----------------------------------------------------------------------------
def signature_defaults(fn: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{keyword: default}`` of ``fn``'s parameters that have one (``self``, ``*args`` and
    ``**kwargs`` and ``skip`` left out)."""
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not p.empty:
            out[name] = p.default
    return out


_UNWRITABLE = object()


def _plain(value: Any) -> Any:
    """``value`` as YAML-safe plain data, or ``_UNWRITABLE``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _UNWRITABLE if any(v is _UNWRITABLE for v in items) else items
    if isinstance(value, dict):
        items = {k: _plain(v) for k, v in value.items()}
        if any(v is _UNWRITABLE for v in items.values()) or not all(isinstance(k, str) for k in items):
            return _UNWRITABLE
        return items
    return _UNWRITABLE


def _resolved(defaults: dict[str, Any], given: dict[str, Any], fn: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``given`` plus each default of ``fn`` not given, as plain data. A default that YAML cannot
    hold, or that ``fn``'s own signature would refuse when given explicitly (``x: int = None``),
    stays implicit: recording it must never make the config unloadable."""
    out = {}
    for key, value in {**defaults, **given}.items():
        if key in given:
            out[key] = given[key]
            continue
        plain = _plain(value)
        if plain is _UNWRITABLE:
            continue
        if _accepts(fn, key, plain):
            out[key] = plain
    return out


def _accepts(fn: Any, key: str, value: Any) -> bool:
    """Whether ``fn``'s annotation of ``key`` accepts ``value`` given explicitly."""
    import pydantic

    try:
        hints = inspect.get_annotations(fn.__init__ if inspect.isclass(fn) else fn, eval_str=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
        return True
    if key not in hints:
        return True
    try:
        pydantic.TypeAdapter(hints[key], config=pydantic.ConfigDict(arbitrary_types_allowed=True)).validate_python(value)
    except pydantic.ValidationError:
        return False
    except Exception:  # noqa: BLE001 - an annotation pydantic cannot check (a plain class): keep it
        return True
    return True


def resolve_model_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The model's hyperparameters with every default filled in (its encoder's and column family's
    too)."""
    from polytask.registry import ENCODERS, MODELS

    model_skip = ("input_spec", "tasks")
    resolved = _resolved(signature_defaults(MODELS.get(name), model_skip), params, MODELS.get(name), model_skip)
    encoder = resolved.get("encoder")
    if isinstance(encoder, str) and isinstance(resolved.get("encoder_params"), dict) and encoder in ENCODERS:
        enc_skip = ("spec", "embedding_dim")
        resolved["encoder_params"] = _resolved(signature_defaults(ENCODERS.get(encoder), enc_skip),
                                               resolved["encoder_params"], ENCODERS.get(encoder), enc_skip)
    columns = resolved.get("columns")
    if isinstance(columns, str) and isinstance(resolved.get("column_params"), dict):
        from polytask.nn.columns.base import COMMON_ARGS
        from polytask.registry import COLUMNS

        if columns in COLUMNS:
            resolved["column_params"] = _resolved(signature_defaults(COLUMNS.get(columns), COMMON_ARGS),
                                                  resolved["column_params"], COLUMNS.get(columns), COMMON_ARGS)
    return resolved


def resolve_config(cfg: Config, trainer: Trainer | None = None) -> Config:
    """``cfg`` with every hyperparameter of the model, the weighting, the optimiser and the
    scheduler written out (defaults included; the optimiser's and scheduler's as ``trainer`` built
    them, so a scheduler default that depends on the epochs is recorded as used)."""
    from polytask.registry import WEIGHTINGS
    from polytask.train.optim import OPTIMIZERS, SCHEDULERS

    raw = cfg.to_dict()
    raw["model"] = {"name": cfg.model.name, **resolve_model_params(cfg.model.name, cfg.model.params())}
    raw["weighting"] = {"name": cfg.weighting.name,
                        **_resolved(signature_defaults(WEIGHTINGS.get(cfg.weighting.name), ("tasks",)), cfg.weighting.params(),
                                    WEIGHTINGS.get(cfg.weighting.name), ("tasks",))}
    opt_cls = OPTIMIZERS.get(cfg.optimizer.name)
    if opt_cls is not None:
        names = signature_defaults(opt_cls, ("params", "lr", "weight_decay"))
        used = dict(trainer.optimizer.defaults) if trainer is not None else {}
        defaults = {k: used.get(k, v) for k, v in names.items()}
        raw["optimizer"] = {**raw["optimizer"], **_resolved(defaults, cfg.optimizer.params(), opt_cls, ("params",))}
    sched_cls = SCHEDULERS.get(cfg.scheduler.name)
    if sched_cls is not None:
        given = cfg.scheduler.params()
        built = trainer.scheduler if trainer is not None else None
        defaults = {}
        for key, p in inspect.signature(sched_cls).parameters.items():
            if key in ("self", "optimizer", "last_epoch", "verbose") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if hasattr(built, key):  # as the trainer built it (cosine's T_max = epochs)
                defaults[key] = getattr(built, key)
            elif p.default is not p.empty:
                defaults[key] = p.default
        raw["scheduler"] = {**raw["scheduler"], **_resolved(defaults, given, sched_cls, ("optimizer",))}
    return config_from_dict(raw)


def load_run(directory: str | os.PathLike, *, device: str = "cpu") -> Run:
    """Load a run directory for prediction or evaluation."""
    return Run.load(directory, device=device)


def _show_inference(inferred: list[tuple[str, str, str]]) -> None:
    """Print (stdout; errors alone go to stderr), before training, which columns were inferred as which feature type and why the
    others were left out (``data.features`` omitted), so a user sees it before paying for a run."""
    from polytask.data.sources import describe_inference

    print("features inferred from the training file (declare data.features to choose them):")
    for line in describe_inference(inferred):
        print(f"  {line}")
