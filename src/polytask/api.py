"""Train from a config (file, dict or keywords) in one call: :func:`fit`.

Every check that can fail on bad input (config keys, files, columns, label values, model and
weighting parameters, the monitor) runs before the first training step and before anything is
written. A run directory is written under ``<out>.partial`` and renamed to ``<out>`` when the run
completes, so ``<out>`` is either a complete run or absent; ``<out>.lock`` keeps a second training
off the same ``<out>``, ``--overwrite`` replaces only a polytask run (never another directory), and
the remains of an interrupted run are never deleted without ``--overwrite``. ``--resume``
(``resume=True``) continues them from ``<out>.partial/resume.pt``, written at the end of every
epoch, and ends with the weights and metrics the uninterrupted run would have had.
"""

from __future__ import annotations

import inspect
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from polytask.config import Config, config_from_dict, load_config
from polytask.data.io import to_arrow
from polytask.data.preprocessor import Preprocessor
from polytask.data.sources import load_splits
from polytask.errors import ConfigError, DataError
from polytask.fileio import atomic_write_text, check_not_locked, json_dumps
from polytask.models import create_model
from polytask.run import CONFIG, DATA, ENCODERS, LOG, RESUME, Run, check_output, writing_run
from polytask.train.loggers.jsonl import jsonable
from polytask.train.trainer import RESUME_FORMAT, Trainer
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
    resume: bool = False,
    callbacks: list[Any] | None = None,
    **train_options: Any,
) -> Run:
    """Train a multi-task model and return the :class:`~polytask.run.Run`.

    Either pass a config (YAML path, dict or :class:`~polytask.config.Config`), or build one from
    keywords: ``train``/``validation``/``test`` (paths, pyarrow tables, pandas DataFrames) or
    ``dataset`` (a registered name), ``features``, ``tasks``, ``model``, ``weighting``,
    ``optimizer``, ``scheduler``; ``callbacks`` are called with ``(trainer, epoch_record)`` after
    every epoch; ``resume=True`` continues an interrupted run of ``out`` from its last completed
    epoch (or starts fresh when there is none); remaining keywords go to the ``train`` section
    (``epochs=10, batch_size=512, monitor="income.auc"``). ``init_from`` (a run directory or a
    :class:`~polytask.run.Run`) and ``freeze`` (``none``/``shared``/``loaded``) start from a trained
    run's representation; ``freeze`` may also be a list of parameter-name patterns
    (``["input.trunk.*"]``, no ``init_from`` needed) (see :mod:`polytask.transfer`).

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
                     init_run=init_run, resume=resume)


def train_run(
    cfg: Config,
    *,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    tables: dict[str, pa.Table] | None = None,
    callbacks: list[Any] | None = None,
    init_run: Run | None = None,
    resume: bool = False,
) -> Run:
    """The whole job: data -> encoders -> model -> training -> final metrics (-> run directory).
    ``init_run`` is the run ``train.init_from`` names, when the caller holds it in memory;
    ``resume`` continues ``<out>.partial`` from its ``resume.pt``."""
    from polytask.train.distributed import setup_from_environment, shutdown

    launch = setup_from_environment(cfg.train.device)  # torchrun: one process per device
    try:
        run = _train_run(cfg, launch, data_dir=data_dir, out=out, overwrite=overwrite, tables=tables,
                         callbacks=callbacks, init_run=init_run, resume=resume)
    except BaseException:
        shutdown(launch, failed=True)  # no barrier: the other processes may never reach it
        raise
    shutdown(launch)
    return run


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
    resume: bool = False,
) -> Run:
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and out_dir.name in ("", ".", ".."):  # `--out .`: name the folder itself
        out_dir = Path(os.path.abspath(out_dir))
    if resume and out_dir is None:
        raise ConfigError("--resume continues an interrupted run of --out: give --out")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --overwrite discards what --resume continues")
    if out_dir is not None and launch.is_main:  # refused before any data is read
        # rank 0 alone: it writes the run; another rank would race with its own rank 0 (which may
        # already hold the lock or have made <out>.partial), and a refusal on rank 0 ends every
        # process (no barrier after a failure, torchrun stops the rest)
        check_not_locked(out_dir)
        check_output(out_dir, overwrite, resume)
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
    splits = load_splits(cfg.data, data_dir, tables=tables, stream=True)  # a streamed set stays streamed
    if splits.inferred and launch.is_main:
        _show_inference(splits.inferred)
    pre = Preprocessor(splits.features, splits.tasks)
    src = splits.sources
    if splits.stream is not None:  # larger than memory: fitted in one streaming pass (polytask.data.stream_sources)
        from polytask.data.stream_sources import fit_streamed, streamed_splits

        pre = fit_streamed(pre, splits, launch.rank, launch.world_size)
    else:
        pre.check_columns(splits.train, splits.sources.get("train", "train"))  # the train file first
        for name, table in (("validation", splits.validation), ("test", splits.test)):
            if table is not None:
                pre.check_columns(table, splits.sources.get(name, name))
        pre.fit(splits.train, src.get("train", "train"))
    if source is not None:
        from polytask.transfer import reuse_encoders

        reused = reuse_encoders(pre, source.preprocessor)
    loader = None  # the trainer's batches come from train_t, unless the split is streamed
    if splits.stream is not None:
        train_t, val_t, test_t, loader = streamed_splits(pre, splits, cfg.train, launch.rank, launch.world_size)
    else:
        train_t = pre.transform(splits.train, src.get("train", "train"))
        val_t = pre.transform(splits.validation, src.get("validation", "validation")) if splits.validation is not None else None
        test_t = pre.transform(splits.test, src.get("test", "test")) if splits.test is not None else None

    # under torchrun only rank 0 writes the run directory and shows progress
    partial = out_dir.with_name(out_dir.name + ".partial") if out_dir is not None else None
    work_dir = partial if launch.is_main else None
    # every process reads the state (each restores its own RNG states); rank 0 alone writes it
    state = _read_resume(partial) if resume and partial is not None else None
    if resume and state is None and launch.is_main:
        print(f"--resume: {partial} has no completed epoch to continue from; starting a fresh run")

    # 2. model, weighting, trainer (parameter checks raise ConfigError naming the key)
    def build(structure: dict[str, Any]) -> tuple[Any, Any, Run, Trainer]:
        model = create_model(cfg.model.name, pre.input_spec(), pre.tasks, {**cfg.model.params(), **structure})
        transfer = None
        if source is not None:
            from polytask.transfer import initialise

            transfer = initialise(model, source, cfg.train.freeze, encoders=reused)
        elif not isinstance(cfg.train.freeze, str):  # parameter-name patterns need no source run
            from polytask.transfer import freeze_by_patterns

            transfer = freeze_by_patterns(model, cfg.train.freeze)
        trained = set(model.loss_task_names())
        weighting = create_weighting(cfg.weighting.name, [t for t in pre.tasks if t.name in trained],
                                     cfg.weighting.params())
        run = Run(cfg, pre, model)
        trainer = Trainer(
            model,
            pre.tasks,
            weighting=weighting,
            optimizer=cfg.optimizer.name,
            lr=cfg.optimizer.lr,
            weight_decay=cfg.optimizer.weight_decay,
            optimizer_params=cfg.optimizer.params(),
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
            resume_path=(partial / RESUME) if partial is not None else None,
        )
        return model, transfer, run, trainer

    seed_everything(cfg.train.seed)
    model, transfer, run, trainer = build({})
    # every hyperparameter as used, defaults included: config.yaml documents the run and rebuilds it
    run.config = cfg = resolve_config(cfg, trainer)
    trainer.log_params = cfg.to_dict()  # what a logger records as the run's parameters (MLflow)
    if state is not None:
        _check_same_config(partial, cfg)
        _check_same_encoders(partial, pre)
        if state["structure"] and state["structure"] != model.structure():  # a model that changed shape (FAFS)
            model, transfer, run, trainer = build(state["structure"])
            run.config, trainer.log_params = cfg, cfg.to_dict()
        trainer.load_resume_state(state)

    if work_dir is None or out_dir is None:
        return _fit(run, trainer, cfg, train_t, val_t, test_t, transfer, loader)
    # 3. the run directory: under an exclusive lock, written into <out>.partial, renamed when complete
    # (a resumed run's .partial holds the stopped run's progress: it is kept on an error)
    with writing_run(out_dir, overwrite=overwrite, resume=resume, keep=state is not None) as work_dir:
        if state is not None and not (work_dir / RESUME).is_file():
            raise ConfigError(f"--resume: {work_dir / RESUME} disappeared while this run started; nothing to continue")
        run.save_static(work_dir)
        atomic_write_text(work_dir / DATA, json_dumps({
            "sources": splits.sources, "notes": splits.notes,
            "inferred_features": [{"column": c, "decision": d, "reason": r} for c, d, r in splits.inferred],
            "rows": {"train": len(train_t), "validation": len(val_t) if val_t else 0,
                     "test": len(test_t) if test_t else 0}}, indent=1))
        if state is not None:  # one log line per epoch: drop those of an epoch the stopped run did not save
            atomic_write_text(work_dir / LOG, "".join(json.dumps(r, default=jsonable) + "\n"
                                                      for r in state["history"]))
        _fit(run, trainer, cfg, train_t, val_t, test_t, transfer, loader)
        run.save_checkpoint(work_dir, trainer.best_epoch)
        run.save_metrics(work_dir)
    run.directory = out_dir
    return run


def _read_resume(work_dir: Path) -> dict[str, Any] | None:
    """The state in ``<out>.partial/resume.pt``; None when there is none (no ``.partial``, or one
    stopped before its first epoch ended). A damaged file is a DataError naming it."""
    path = work_dir / RESUME
    if not path.is_file():
        return None
    try:
        # our own file, written by Trainer.save_resume: it holds numpy and Python RNG states
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise DataError(f"{path}: cannot be read as a resume state ({' '.join(str(exc).split())[:200]}); "
                        "pass --overwrite to discard the interrupted run") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise DataError(f"{path}: not a polytask resume state; pass --overwrite to discard the interrupted run")
    return state


def _check_same_config(work_dir: Path, cfg: Config) -> None:
    """ConfigError naming the first key where the interrupted run's config.yaml differs from this
    invocation's resolved config."""
    import yaml

    path = work_dir / CONFIG
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read the interrupted run's config ({exc})") from None
    now = yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    key = _first_difference(saved, now)
    if key is not None:
        where, old, new = key
        raise ConfigError(
            f"--resume: the config differs from the interrupted run's ({path}) at {where or 'the top level'}: "
            f"{old} there, {new} now; resume with the same config, or pass --overwrite to start over"
        )


def _check_same_encoders(work_dir: Path, pre: Preprocessor) -> None:
    """ConfigError when the encoders fitted now differ from the interrupted run's: the same config
    over changed training data would otherwise continue on other data."""
    path = work_dir / ENCODERS
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the interrupted run's encoders ({exc})") from None
    key = _first_difference(saved, json.loads(json.dumps(pre.to_dict())))
    if key is not None:
        raise ConfigError(
            f"--resume: the training data differs from the interrupted run's: the encoders fitted now differ from "
            f"{path} at {key[0] or 'the top level'}; resume on the same data, or pass --overwrite to start over"
        )


_MISSING = object()


def _first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, str, str] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(k, _MISSING), new.get(k, _MISSING), f"{prefix}.{k}" if prefix else str(k))
            if found is not None:
                return found
        return None
    if old == new and type(old) is type(new):
        return None

    def show(v: Any) -> str:
        return "(absent)" if v is _MISSING else repr(v)

    return prefix, show(old), show(new)


def _fit(run: Run, trainer: Trainer, cfg: Config, train_t: Any, val_t: Any, test_t: Any, transfer: Any,
         loader: Any = None) -> Run:
    """Train (model selection on validation only), then read the test split once. ``loader``: the
    training batches when they do not come from ``train_t`` (a streamed training set)."""
    history = trainer.fit(train_t, val_t, loader=loader)
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
