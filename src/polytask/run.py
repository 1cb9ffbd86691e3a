"""A trained model with everything needed to use it: config, fitted encoders, weights.

A run directory holds:

- ``config.yaml``: the resolved configuration (every default filled in, the model's, weighting's,
  optimiser's and scheduler's hyperparameters included);
- ``encoders.json``: the encoders fitted on the training split, and the tasks;
- ``model.pt``: the best checkpoint (by the validation monitor), the model's input spec and tasks;
- ``metrics.jsonl``: one line per epoch (training losses, task weights, validation metrics,
  gate diagnostics, timings);
- ``metrics.json``: final ``{"validation": {task: {metric: value}}, "test": {...}}``;
- ``data.json``: where each split came from and how it was made;
- ``tensorboard/``: TensorBoard event files, when ``train.loggers`` has ``tensorboard``;
- ``manifest.json``: written last, marks the directory as a polytask run and records the size and
  sha256 of every other file, which :meth:`Run.load` checks.

Every file is written atomically (a temporary name, then :func:`os.replace`). Loading checks the
files before using them: checksums (when there is a manifest: runs written before it existed load
without), a readable checkpoint, every weight finite, and that ``encoders.json`` and ``model.pt``
agree (features, tasks, output sizes). Each failure is one :class:`~polytask.errors.DataError`
naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import yaml

from polytask.config import Config, config_from_dict
from polytask.data.io import to_arrow
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import InputSpec
from polytask.data.stream_predict import StreamedOutput
from polytask.errors import ConfigError, DataError
from polytask.fileio import OutputLock, atomic_path, atomic_write_text, file_ancestor, json_dumps, make_dirs, sha256_file
from polytask.models import MultiTaskModel, create_model
from polytask.train.trainer import evaluate_table, predict_raw, resolve_device

CONFIG, ENCODERS, CHECKPOINT, LOG, METRICS, DATA = (
    "config.yaml", "encoders.json", "model.pt", "metrics.jsonl", "metrics.json", "data.json"
)
MANIFEST = "manifest.json"
#: the state an unfinished run (``<out>.partial``) continues from with ``--resume``; deleted
#: before the manifest is written, so a finished run never holds it
RESUME = "resume.pt"
#: every file a run directory (or its ``.partial``) may hold
RUN_FILES = (CONFIG, ENCODERS, CHECKPOINT, LOG, METRICS, DATA, MANIFEST, RESUME)
#: folders a run directory may hold: a logger's own files (``train.loggers: [tensorboard]``)
RUN_FOLDERS = ("tensorboard",)
#: the files a run cannot be loaded without: a checksum mismatch in one of them is an error (in the
#: others, a warning)
ESSENTIAL = (CONFIG, ENCODERS, CHECKPOINT)
FORMAT = "polytask-run"


class RunFileWarning(UserWarning):
    """A run file that is not needed to predict (the epoch log, the saved metrics) is damaged."""


class Run:
    """Predict with, evaluate and save a trained multi-task model.

    In memory: :meth:`predict` (arrays), :meth:`predict_table` (the output columns),
    :meth:`predict_labels` (the input with predicted labels), :meth:`evaluate`. Larger than
    memory: :meth:`predict_file` streams a directory, glob or file of Parquet into a Parquet or CSV
    file, and :meth:`evaluate` streams a directory or glob of Parquet."""

    def __init__(
        self,
        config: Config,
        preprocessor: Preprocessor,
        model: MultiTaskModel,
        *,
        history: list[dict[str, Any]] | None = None,
        metrics: dict[str, Any] | None = None,
        directory: str | os.PathLike | None = None,
    ) -> None:
        self.config = config
        self.preprocessor = preprocessor
        self.model = model
        self.tasks = preprocessor.tasks
        self.history = history or []
        self.metrics = metrics or {}
        self.directory = Path(directory) if directory else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- use -------------------------------------------------------------------------------------
    def predict(self, data: Any, *, source: str = "input") -> dict[str, np.ndarray]:
        """``{task: predictions}``: P(y=1) for binary, values for regression, class probabilities
        ``[N, C]`` for multiclass. Labels in ``data`` are not needed."""
        table = self.preprocessor.transform(to_arrow(data, source), source, with_labels=False)
        raw = predict_raw(self.model, table, [t.name for t in self.tasks], self.config.train.eval_batch_size, self.device)
        return {t.name: t.predict(raw[t.name]).numpy() for t in self.tasks}

    def predict_table(self, data: Any, *, source: str = "input", keep: list[str] | None = None,
                      flat: bool = False) -> pa.Table:
        """Predictions as a table with the columns each task's kind writes (one named column per
        task; multiclass adds ``<task>_proba`` with the class probabilities), after any ``keep``
        columns of ``data``. ``flat=True`` (for CSV, which has no list type) gives one column per
        class instead of a list column: ``<task>_proba_<class>``; a list of names (multilabel's
        chosen labels) becomes one string joined by ``|``."""
        arrow = to_arrow(data, source)
        missing = [c for c in keep or [] if c not in arrow.column_names]
        if missing:
            raise DataError(f"{source}: --keep column(s) {', '.join(map(repr, missing))} not found")
        preds = self.predict(arrow, source=source)
        columns: dict[str, Any] = {c: arrow.column(c) for c in keep or []}
        for t in self.tasks:
            produced = t.spec.prediction_columns(t.name, preds[t.name], arrow)
            if flat:
                produced = _flatten_columns(t, produced)
            for name, column in produced.items():
                if name in columns:
                    raise DataError(f"{source}: output column {name!r} is both a --keep column and a prediction")
                columns[name] = column
        return pa.table(columns)

    def predict_labels(self, data: Any, *, source: str = "input") -> pa.Table:
        """The input table with each task's label column(s) replaced by its predictions in the
        label's own form (:meth:`~polytask.tasks.base.TaskKind.label_predictions`: a class name,
        one tag per token, head indices), every other column as it was, so the table can be written
        back in the input's own format (CoNLL-U, CoNLL-2000 columns). A label column the input
        lacks is appended. A token-level prediction covers the tokens the text feature kept (the
        last ``max_len``): where a sentence is longer, its first tokens get null (written ``_``)."""
        arrow = to_arrow(data, source)
        preds = self.predict(arrow, source=source)

        def align(column: pa.Array, tokens: str | None) -> pa.Array:
            # a list of per-token predictions shorter than its row's token list: pad it in front
            if tokens not in arrow.column_names or not pa.types.is_list(column.type):
                return column
            text = arrow.column(tokens)
            if not (pa.types.is_list(text.type) or pa.types.is_large_list(text.type)):
                return column  # text given as a string: nothing to line up with
            lengths = [len(v) if v is not None else 0 for v in text.to_pylist()]
            values = column.to_pylist()
            if all(v is None or len(v) >= n for v, n in zip(values, lengths)):
                return column
            padded = [v if v is None or len(v) >= n else [None] * (n - len(v)) + v for v, n in zip(values, lengths)]
            return pa.array(padded, column.type)

        table = arrow
        for t in self.tasks:
            for name, column in t.spec.label_predictions(t, preds[t.name], arrow).items():
                column = align(column, t.spec.token_feature)
                if name in table.column_names:
                    original = table.schema.field(name).type
                    if column.type != original:
                        try:
                            column = column.cast(original)
                        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                            pass  # predictions of another type than the gold column (kept as predicted)
                    table = table.set_column(table.column_names.index(name), name, column)
                else:
                    table = table.append_column(name, column)
        return table

    def predict_file(self, input: str | os.PathLike, output: str | os.PathLike, *, keep: list[str] | None = None,
                     read_rows: int | None = None) -> StreamedOutput:
        """Predict Parquet data larger than memory: ``input`` (a directory, a glob or one Parquet
        file) is streamed in file order, ``read_rows`` rows at a time (default: the run's
        ``data.stream.read_rows``), and each chunk's :meth:`predict_table` rows are appended to
        ``output`` (``.parquet``, or ``.csv`` with flat columns), written atomically. Memory is
        bounded by a row group and a chunk. Returns what was written (:class:`StreamedOutput`)."""
        from polytask.data.stream_files import ParquetFiles
        from polytask.data.stream_predict import check_input, predict_stream, stream_format
        from polytask.train.progress import batch_reporter

        fmt = stream_format(output)
        files = ParquetFiles(input)
        keep = list(keep or [])
        pre = self.preprocessor
        columns = check_input(files, pre.required_columns(with_labels=False), pre._optional(), keep)

        def predict_chunk(rows: pa.Table, source: str) -> pa.Table:
            return self.predict_table(rows, source=source, keep=keep, flat=fmt == "csv")

        return predict_stream(files, columns, predict_chunk, output, fmt, read_rows=read_rows or self._read_rows(),
                              report=batch_reporter())

    def evaluate(self, data: Any, *, source: str = "input", stream: bool = False) -> dict[str, Any]:
        """``{task: {metric: value}}`` (plus ``loss``) on a labelled table or file. A directory or
        glob of Parquet files (or one Parquet file with ``stream=True``, or a
        :class:`~polytask.data.stream_files.ParquetFiles`) is streamed in file order: only the
        predictions, labels and masks are held, and the metrics are those of the data read whole."""
        from polytask.data.stream_files import ParquetFiles, is_file_set

        if isinstance(data, ParquetFiles) or (isinstance(data, (str, os.PathLike)) and (stream or is_file_set(data))):
            from polytask.data.stream_split import StreamedSplit

            files = data if isinstance(data, ParquetFiles) else ParquetFiles(data)
            files.check_columns(self.preprocessor.required_columns(), self.preprocessor._optional())
            table = StreamedSplit(files, self.preprocessor, read_rows=self._read_rows())
        else:
            table = self.preprocessor.transform(to_arrow(data, source), source)
        return evaluate_table(self.model, self.tasks, table, self.config.train.eval_batch_size, self.device)

    def _read_rows(self) -> int:
        """Rows read and encoded at a time when streaming: the run's ``data.stream.read_rows``."""
        from polytask.config import StreamConfig
        from polytask.data.streaming import DEFAULT_READ_ROWS

        stream = self.config.data.stream
        return stream.read_rows if isinstance(stream, StreamConfig) else DEFAULT_READ_ROWS

    # -- persistence -------------------------------------------------------------------------------
    def save_static(self, directory: str | os.PathLike) -> None:
        """Write config and encoders (known before training)."""
        d = Path(directory)
        make_dirs(d)
        atomic_write_text(d / CONFIG, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        atomic_write_text(d / ENCODERS, json.dumps(self.preprocessor.to_dict(), indent=1))

    def save_checkpoint(self, directory: str | os.PathLike, epoch: int | None = None) -> None:
        """Write ``model.pt`` (atomically: a checkpoint is never seen half written)."""
        payload = {
            "model": self.config.model.name,
            "params": {**self.config.model.params(), **self.model.structure()},
            "input_spec": self.model.input_spec.to_dict(),
            # as JSON text (what encoders.json holds), so weights_only loading never meets a numpy scalar
            "tasks": json.dumps([t.to_dict() for t in self.tasks]),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "epoch": epoch,
        }
        with atomic_path(Path(directory) / CHECKPOINT) as tmp:
            torch.save(payload, tmp)

    def save_metrics(self, directory: str | os.PathLike) -> None:
        atomic_write_text(Path(directory) / METRICS, json_dumps(self.metrics, indent=1))

    def save(self, directory: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the run directory ``directory`` as training does: complete or not at all (written
        as ``<directory>.partial`` under the ``<directory>.lock`` lock, then renamed). An existing
        run there is replaced only with ``overwrite=True``; a folder that is not a run, never."""
        d = Path(directory)
        if d.name in ("", ".", ".."):
            d = Path(os.path.abspath(d))
        check_output(d, overwrite)
        with writing_run(d, overwrite=overwrite) as work:
            self.save_static(work)
            self.save_checkpoint(work)
            if self.metrics:
                self.save_metrics(work)
            if self.history:
                atomic_write_text(work / LOG, "".join(json_dumps(r) + "\n" for r in self.history))
        self.directory = d

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str = "cpu") -> Run:
        """Load a run directory written by ``polytask train`` / :func:`polytask.fit`, checking its
        files first (see the module docstring)."""
        d = Path(directory)
        if not d.is_dir():
            raise DataError(f"{d}: run directory not found" if not d.exists() else f"{d}: not a directory")
        for name in ESSENTIAL:
            if not (d / name).is_file():
                raise DataError(f"{d}: not a run directory ({name} is missing)")
        verify_manifest(d)
        config = _load_config(d / CONFIG)
        pre = _load_encoders(d / ENCODERS)
        ckpt = _load_checkpoint(d / CHECKPOINT)
        _check_agreement(d, config, pre, ckpt)
        try:
            model = create_model(ckpt["model"], InputSpec.from_dict(ckpt["input_spec"]), pre.tasks, ckpt["params"])
        except (ConfigError, KeyError, TypeError) as exc:
            message = exc.args[0] if exc.args else exc
            raise DataError(f"{d / CHECKPOINT}: cannot rebuild the model it records: {message}") from None
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:  # missing/unexpected keys, shape mismatches
            detail = " ".join(str(exc).split())
            raise DataError(
                f"{d / CHECKPOINT}: its weights do not fit the model built from {ENCODERS} and the checkpoint's "
                f"parameters ({detail[:300]})"
            ) from None
        model.to(resolve_device(device)).eval()
        metrics = _load_metrics(d / METRICS)
        history = _load_log(d / LOG)
        return cls(config, pre, model, history=history, metrics=metrics, directory=d)


# -- the manifest ------------------------------------------------------------------------------------
def write_manifest(directory: str | os.PathLike) -> None:
    """Record the size and sha256 of every run file in ``directory`` (written last)."""
    d = Path(directory)
    files = {}
    for name in RUN_FILES:
        if name != MANIFEST and (d / name).is_file():
            files[name] = {"bytes": (d / name).stat().st_size, "sha256": sha256_file(d / name)}
    atomic_write_text(d / MANIFEST, json.dumps({"format": FORMAT, "version": 1, "files": files}, indent=1))


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest, None when the run has none (written before manifests existed)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(files, dict):
            raise ValueError("not a polytask run manifest")
        for entry in files.values():
            str(entry["sha256"]), int(entry["bytes"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable run manifest ({exc})") from None
    return manifest


def verify_manifest(directory: str | os.PathLike) -> None:
    """Check every file the manifest lists: an essential file that is missing or differs is a
    DataError naming it; another (the epoch log, the final metrics) a :class:`RunFileWarning`."""
    d = Path(directory)
    manifest = read_manifest(d)
    if manifest is None:
        return
    for name, entry in manifest["files"].items():
        path = d / name
        if not path.is_file():
            problem = "is missing (the manifest lists it)"
        elif path.stat().st_size != int(entry["bytes"]):
            problem = (f"has {path.stat().st_size} bytes, the manifest recorded {entry['bytes']} "
                       "(truncated or changed after the run was written)")
        elif sha256_file(path) != entry["sha256"]:
            problem = "does not match its sha256 in the manifest (damaged or changed after the run was written)"
        else:
            continue
        if name in ESSENTIAL:
            raise DataError(f"{path}: {problem}")
        warnings.warn(f"{path}: {problem}", RunFileWarning, stacklevel=3)


def is_run_directory(directory: str | os.PathLike) -> bool:
    """A directory polytask wrote: it has a manifest, or (a run from before manifests) the three
    files a run cannot be without."""
    d = Path(directory)
    if (d / MANIFEST).is_file():
        try:
            return json.loads((d / MANIFEST).read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError, UnicodeDecodeError):
            return False
    return all((d / name).is_file() for name in ESSENTIAL)


def is_temporary_file(name: str) -> bool:
    """A temporary file of an atomic write (:func:`polytask.fileio.atomic_path`)."""
    return name.startswith(".") and name.endswith(".tmp")


def foreign_entries(directory: str | os.PathLike) -> list[str]:
    """The entries of a run directory that polytask did not write there (never deleted for the user)."""
    return sorted(p.name for p in Path(directory).iterdir()
                  if not (p.name in RUN_FILES and p.is_file()) and not (is_temporary_file(p.name) and p.is_file())
                  and not (p.name in RUN_FOLDERS and p.is_dir() and not p.is_symlink()))


# -- where a run directory may be written ---------------------------------------------------------
def check_output(out_dir: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse an ``--out`` that cannot or must not be written (ConfigError naming it): a path under
    a file, a file, a non-empty directory that is not a polytask run (never deleted, even with
    ``--overwrite``), a run without ``--overwrite``, and the remains of an interrupted run
    without ``--overwrite`` or ``--resume``."""
    blocking = file_ancestor(out_dir)
    if blocking is not None:
        raise ConfigError(f"--out {out_dir}: {blocking} is a file, not a directory")
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir}: exists and is not a directory")
        entries = sorted(p.name for p in out_dir.iterdir())
        if entries:
            if not is_run_directory(out_dir):
                raise ConfigError(
                    f"--out {out_dir}: exists and is not a polytask run directory (holds {_some(entries)}); "
                    "refusing to replace it, even with --overwrite: choose another --out"
                )
            foreign = foreign_entries(out_dir)
            if foreign:
                raise ConfigError(
                    f"--out {out_dir}: the run directory also holds files polytask did not write ({_some(foreign)}); "
                    "refusing to replace it, even with --overwrite: move them out or choose another --out"
                )
            if not overwrite:
                raise ConfigError(f"--out {out_dir}: directory exists and is not empty (use --overwrite to replace it)")
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists() or partial.is_symlink():
        if not partial.is_dir() or partial.is_symlink() or foreign_entries(partial):
            raise ConfigError(
                f"--out {out_dir}: {partial} exists and is not an unfinished polytask run; remove or rename it"
            )
        if not overwrite and not resume:
            raise ConfigError(
                f"--out {out_dir}: {partial} holds the remains of an interrupted run (it was stopped before it "
                "finished); pass --resume to continue it from its last completed epoch, or --overwrite to "
                "discard it (or delete it yourself)"
            )


def _some(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def replace_directory(new: Path, final: Path) -> None:
    """Move the finished run onto ``final``; an existing run there (checked replaceable) is moved
    aside first and deleted only once the new one is in place."""
    aside = None
    if final.exists() and any(final.iterdir()):
        aside = final.with_name(f".{final.name}.replaced-{os.getpid()}")
        os.rename(final, aside)
    try:
        os.rename(new, final)  # onto an empty directory or a free name
    except OSError:
        if aside is not None:
            os.rename(aside, final)
        raise
    if aside is not None:
        if aside.is_symlink():  # the link goes; what it pointed to is not ours to delete
            aside.unlink()
        else:
            shutil.rmtree(aside, ignore_errors=True)


# -- loading, one file at a time -----------------------------------------------------------------------
def _load_config(path: Path) -> Config:
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DataError(f"{path}: not valid YAML{where}: the run's config is damaged") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: the run's config is damaged (not a mapping of sections)")
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise DataError(f"{path}: the run's config is damaged: {' '.join(str(exc).split())}") from None


@contextmanager
def writing_run(out_dir: Path, *, overwrite: bool, resume: bool = False, keep: bool = False) -> Iterator[Path]:
    """Write a run directory as every writer must: under the ``<out>.lock`` lock, into
    ``<out>.partial`` (yielded), then a manifest and the rename into ``<out>``. A stale
    ``.partial`` is cleared first and this writer's own is removed on an error, unless ``keep``
    (a resumed run's ``.partial`` holds the stopped run's progress). The finished run does not
    keep its resume state."""
    make_dirs(out_dir.parent)
    with OutputLock(out_dir):
        check_output(out_dir, overwrite, resume)  # again, now that no other run can change it
        work = out_dir.with_name(out_dir.name + ".partial")
        if not keep and (work.exists() or work.is_symlink()):
            shutil.rmtree(work)  # the remains of an interrupted run: --overwrite given, or nothing to resume
        try:
            yield work
            (work / RESUME).unlink(missing_ok=True)
            write_manifest(work)
        except Exception:
            # this writer's own unfinished run: leaving it would make the next run refuse it as the
            # remains of an interrupted one
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
            raise
        replace_directory(work, out_dir)


def _load_encoders(path: Path) -> Preprocessor:
    try:
        return Preprocessor.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}): the run's encoders are damaged") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid JSON: the run's encoders are damaged") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        message = exc.args[0] if exc.args else type(exc).__name__
        raise DataError(f"{path}: the run's encoders are damaged ({message})") from None


def _load_checkpoint(path: Path) -> dict[str, Any]:
    # torch.load on a damaged archive can fail in C++ with an unhelpful message; a flipped byte in a
    # stored tensor is not noticed at all. The zip's own CRCs catch both, before torch reads it.
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise DataError(f"{path}: not a readable checkpoint (truncated or damaged)") from None
    if bad is not None:
        raise DataError(f"{path}: damaged checkpoint (entry {bad} fails its CRC check)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise DataError(f"{path}: not a readable checkpoint ({' '.join(str(exc).split())[:200]})") from None
    missing = [k for k in ("model", "params", "input_spec", "state_dict") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise DataError(f"{path}: not a polytask checkpoint (missing {', '.join(missing)})")
    for name, value in ckpt["state_dict"].items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{path}: weight {name!r} is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DataError(f"{path}: weight {name!r} holds NaN or infinite values")
    return ckpt


def _check_agreement(d: Path, config: Config, pre: Preprocessor, ckpt: dict[str, Any]) -> None:
    """encoders.json and model.pt describe the same inputs and tasks."""
    spec = pre.input_spec()
    try:
        saved = InputSpec.from_dict(ckpt["input_spec"])
    except TypeError:
        raise DataError(f"{d / CHECKPOINT}: damaged input spec") from None
    if spec != saved:
        diff = [k for k in spec.to_dict() if spec.to_dict()[k] != saved.to_dict().get(k)]
        raise DataError(
            f"{d / ENCODERS}: the features it encodes disagree with {CHECKPOINT} ({', '.join(diff)} differ): "
            "the files come from different runs or were edited"
        )
    have = [(t.name, t.kind) for t in pre.tasks]
    if "tasks" in ckpt:
        try:
            recorded = json.loads(ckpt["tasks"])
            want = [(t["name"], t["kind"]) for t in recorded]
        except (TypeError, ValueError, KeyError):
            raise DataError(f"{d / CHECKPOINT}: damaged task list") from None
        mine = json.loads(json.dumps([t.to_dict() for t in pre.tasks]))
        if have != want or mine != recorded:
            raise DataError(
                f"{d / ENCODERS}: its tasks disagree with {CHECKPOINT} (encoders: {_tasks(have)}; model: {_tasks(want)}"
                f"{'' if have != want else '; the task options (classes, labels) differ'})"
            )
    elif config.data.tasks:  # a run from before the checkpoint recorded its tasks: the config does
        want = [(t.name, t.kind) for t in config.data.tasks]
        if have != want:
            raise DataError(f"{d / ENCODERS}: its tasks disagree with {CONFIG} (encoders: {_tasks(have)}; config: {_tasks(want)})")


def _tasks(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{n} ({k})" for n, k in pairs)


def _load_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return value
    except (ValueError, UnicodeDecodeError) as exc:
        warnings.warn(f"{path}: unreadable, the saved metrics are ignored ({exc})", RunFileWarning, stacklevel=3)
        return {}


def _load_log(path: Path) -> list[dict[str, Any]]:
    """The epoch records; a line that does not parse (a run killed while writing its last line) is
    skipped with a warning."""
    if not path.is_file():
        return []
    history = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            warnings.warn(f"{path}: line {number} is not a complete JSON record (skipped)", RunFileWarning, stacklevel=3)
            continue
        history.append(record)
    return history


def _flatten_columns(task: Any, columns: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """List-typed prediction columns as flat ones (see :meth:`Run.predict_table`)."""
    out: dict[str, pa.Array] = {}
    for name, column in columns.items():
        typ = column.type
        if not (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)):
            out[name] = column
            continue
        if pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type):
            out[name] = pa.array(["|".join(v) if v is not None else None for v in column.to_pylist()], pa.string())
            continue
        values = column.to_pylist()
        width = max((len(v) for v in values if v is not None), default=0)
        classes = [str(c) for c in (getattr(task.spec, "classes", None) or [])]
        if len(classes) != width:
            classes = [str(j) for j in range(width)]
        for j, cls in enumerate(classes):
            out[f"{name}_{cls}"] = pa.array([v[j] if v is not None else None for v in values], typ.value_type)
    return out
