"""Where the datasets live: ``--data-dir``, else ``$POLYTASK_DATA_DIR``, else ``../shared/data``
beside the repository checkout, else a clear error saying where to put the files."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "POLYTASK_DATA_DIR"


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where the data directory says."""


def _repo_candidates() -> list[Path]:
    here = Path(__file__).resolve()
    # src/polytask/data/paths.py -> repo root is parents[3]
    roots = [here.parents[3], Path.cwd()]
    return [r.parent / "shared" / "data" for r in roots]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data directory to read datasets from (it must exist)."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"--data-dir {path} is not a directory")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"${ENV_VAR}={env} is not a directory")
        return path
    for cand in _repo_candidates():
        if cand.is_dir():
            return cand
    raise DataNotFoundError(
        "no data directory: pass --data-dir DIR or set "
        f"${ENV_VAR}=DIR (a folder holding one sub-folder per dataset, e.g. DIR/census_income_kdd/)"
    )


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None, *, published_at: str = "") -> Path:
    """The folder of one dataset inside the data directory, with a helpful error if it is absent."""
    root = resolve_data_dir(data_dir)
    path = root / name
    if not path.is_dir():
        where = f" It is published at {published_at}." if published_at else ""
        raise DataNotFoundError(f"dataset folder {path} not found: put the files of {name!r} there.{where}")
    return path
