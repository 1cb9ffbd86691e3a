"""Safe file output: atomic writes, an exclusive lock on a run directory, checksums.

Every file polytask writes (a run directory's files, predictions, checkpoints during training) is
written to a temporary name in the same directory and moved onto its final name with
:func:`os.replace`, so a reader sees the old file or the complete new one, never a truncated one
(a full disk, a killed process or an exception mid-write leave the final name untouched).

A failed write raises :class:`WriteError` naming the path that could not be written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from polytask.errors import ConfigError, DataError, PolytaskError


class WriteError(PolytaskError, OSError):
    """A file or directory could not be written (read-only location, full disk, ...)."""


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return WriteError(f"{path}: could not write ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds the file written there
    replaces ``path`` in one step, and when it fails the temporary file is removed and ``path``
    is left as it was. The parent directory must exist."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp makes the file private (0600): give it the mode a plain open() would, or keep the
        # mode of the file it replaces
        os.chmod(tmp_path, _mode_for(path))
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # the bytes are on disk before the name points at them
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        _discard(tmp_path)
        raise write_error(path, exc) from None
    except BaseException:
        _discard(tmp_path)
        raise


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> None:
    """``writer(tmp_path)`` writes the file; it then replaces ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def make_dirs(path: str | os.PathLike) -> None:
    """``mkdir -p`` whose failure is a :class:`WriteError` naming the directory."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"{path}: could not create the directory (a file of that name exists)") from None
    except NotADirectoryError:
        raise WriteError(f"{path}: could not create the directory ({file_ancestor(path)} is a file)") from None
    except OSError as exc:
        raise write_error(path, exc) from None


def file_ancestor(path: str | os.PathLike) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a directory, if any."""
    for parent in Path(path).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
        if parent.is_symlink():  # a dangling link: not a directory either
            return parent
    return None


def to_json_value(value: Any) -> Any:
    """A copy of ``value`` that :func:`json.dumps` writes as valid JSON: NaN and infinities become
    ``null`` (json writes them as the bare tokens ``NaN``/``Infinity``, which JSON does not have)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return to_json_value(item())
    return str(value)


def json_dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(to_json_value(value), allow_nan=False, **kwargs)


# -- checksums -------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- an exclusive lock on an output path -------------------------------------------------------------
def lock_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (held by process {pid})" if pid.isdigit() else ""


class OutputLock:
    """An exclusive, non-blocking lock on ``<out>.lock`` (``fcntl.flock``): a second process that
    asks for it gets a ConfigError naming the path. The kernel drops a flock when its process dies,
    so a killed run never leaves a lock that blocks the next one; the file (holding the pid, for
    the message) is removed on release."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = lock_path(out)
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise write_error(self.path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(
                        f"--out {self.out}: another training is writing this run directory{_holder(self.path)}; "
                        f"lock file {self.path}"
                    ) from None
                raise write_error(self.path, exc) from None
            # the previous holder may have removed the file between our open and our lock: then we
            # hold a lock on a name nobody sees, so start again on the current file
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_not_locked(out: str | os.PathLike) -> None:
    """ConfigError when another process holds the lock on ``out`` (takes and drops it otherwise)."""
    import fcntl

    path = lock_path(out)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise ConfigError(
            f"--out {out}: another training is writing this run directory{_holder(path)}; lock file {path}"
        ) from None
    finally:
        os.close(fd)  # drops the probe's lock, if it got it


# -- predictions ----------------------------------------------------------------------------------------
def write_predictions(table: Any, path: str | os.PathLike, fmt: str) -> None:
    """Write a pyarrow table as ``fmt`` (``parquet``, ``csv``, ``conllu`` or ``conll``: CoNLL-2000
    columns) to ``path`` atomically (the parent directory is created when missing): an existing
    file is replaced only by a complete one. The text formats take one row per sentence
    (:mod:`polytask.data.text_formats`); a ``.gz`` path is gzipped."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path}: is a directory")
    make_dirs(path.parent)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        def write(tmp: Path) -> None:
            pq.write_table(table, tmp)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        def write(tmp: Path) -> None:
            pacsv.write_csv(table, tmp)
    elif fmt in ("conllu", "conll"):
        from polytask.data import text_formats

        writer = text_formats.write_conllu if fmt == "conllu" else text_formats.write_conll_columns
        gz = path.name.lower().endswith(".gz")

        def write(tmp: Path) -> None:  # the temporary name has no .gz: compress by the final name
            writer(table, tmp, compress=gz)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    try:
        atomic_write_with(path, write)
    except (WriteError, DataError):
        raise
    except Exception as exc:  # noqa: BLE001 - the writer refused the table (a type CSV cannot hold)
        raise WriteError(f"{path}: could not write the predictions as {fmt} ({' '.join(str(exc).split())[:200]})") from None
