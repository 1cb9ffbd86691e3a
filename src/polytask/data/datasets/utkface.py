"""UTKFace (crop_part1): age, gender and race from one face image.

Zhang, Song & Qi, "Age Progression/Regression by Conditional Adversarial Autoencoder", CVPR 2017
(susanqq.github.io/UTKFace). The images are for **non-commercial research only**; polytask uses
them in tests and benchmarks and never ships them. Files in ``<data dir>/utkface_crop_part1/``:
``utkface_crop_part1.tar.gz`` (``crop_part1/<age>_<gender>_<race>_<datetime>.jpg.chip.jpg``, 9,780
JPEG crops of 200x200) and ``labels.csv`` (the labels parsed from the file names: ``file, age,
gender, race, datetime, label_ok``).

Tasks (the multi-task setup of Pareto MTL's supplement, Lin et al. NeurIPS 2019):

* ``age``: regression in years (1-110; MAE and RMSE in years);
* ``gender``: binary (0 male, 1 female, as in the file names; AUC, and accuracy at P >= 0.5);
* ``race``: 5-way (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others).

Two files have malformed names with three fields: their age is known, their gender and race are
not (``label_ok = 0``); those two labels are null, so the tasks mask them (missing labels are
masks, not dropped rows).

Storage: the JPEG bytes themselves, read straight from the archive (nothing is extracted), in a
binary ``image`` column declared as an ``image`` feature of ``image_size`` x ``image_size`` RGB:
the image encoder decodes and resizes every image once and keeps it as uint8; normalisation uses
the training images' per-channel mean and standard deviation; ``flip`` adds random horizontal
flips while training (faces are left-right symmetric). ``file`` keeps the file name (provenance,
not a feature).

Split (ours; the dataset has none and holds no identity labels, so a person may appear in more than
one split): the 9,780 rows of ``labels.csv`` permuted with ``numpy.random.Generator(PCG64(seed))``
and cut 70 % train (6,846), 10 % validation (978), 20 % test (1,956). ``max_rows`` keeps the first
``max_rows`` training rows and the same share of validation and test.

crop_part1 is skewed toward children and the elderly compared with all of UTKFace (about 23.7k
images), so its numbers are not comparable with full-UTKFace papers.
"""

from __future__ import annotations

import math
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.errors import DataError
from polytask.registry import DATASETS

FOLDER = "utkface_crop_part1"
ARCHIVE = "utkface_crop_part1.tar.gz"
LABELS = "labels.csv"
PUBLISHED_AT = "https://susanqq.github.io/UTKFace/"
MEMBER_DIR = "crop_part1/"
SHARES = (0.7, 0.1, 0.2)  #: train / validation / test
RACES = 5
TASKS: list[dict[str, object]] = [
    {"name": "age", "kind": "regression", "label": "age"},
    {"name": "gender", "kind": "binary", "label": "gender", "threshold": 0.5},
    {"name": "race", "kind": "multiclass", "label": "race", "num_classes": RACES},
]


def read_labels(path: os.PathLike | str) -> pa.Table:
    """``labels.csv`` as ``file, age, gender, race`` (gender and race null where ``label_ok`` is 0);
    a DataError naming the file and the row on a value out of range."""
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"file": pa.string()}))
    missing = [c for c in ("file", "age", "gender", "race", "label_ok") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    ok = table["label_ok"].to_numpy(zero_copy_only=False) == 1
    age = table["age"].to_numpy(zero_copy_only=False).astype(np.float64)
    gender = table["gender"].to_numpy(zero_copy_only=False).astype(np.float64)
    race = table["race"].to_numpy(zero_copy_only=False).astype(np.float64)
    checks = (("age", age, np.ones_like(ok), lambda v: (v >= 0) & (v <= 130)),
              ("gender", gender, ok, lambda v: np.isin(v, (0, 1))),
              ("race", race, ok, lambda v: np.isin(v, range(RACES))))
    for name, values, needed, valid in checks:
        bad = np.flatnonzero(needed & ~valid(np.nan_to_num(values, nan=-1)))
        if bad.size:
            raise DataError(f"{path}: row {int(bad[0])}: {name} {float(values[bad[0]])!r} is out of range",
                            row=int(bad[0]))
    return pa.table({
        "file": table["file"],
        "age": pa.array(age, pa.float32()),
        "gender": pa.array(np.where(ok, gender, 0).astype(np.int8), pa.int8(), mask=~ok),
        "race": pa.array(np.where(ok, race, 0).astype(np.int8), pa.int8(), mask=~ok),
    })


def read_images(path: os.PathLike | str, files: list[str]) -> list[bytes]:
    """The bytes of ``crop_part1/<file>`` for every file, in order, read from the archive in one
    pass; a DataError naming the archive and the first file it lacks."""
    wanted = set(files)
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name[len(MEMBER_DIR):] if member.name.startswith(MEMBER_DIR) else None
            if name in wanted and member.isfile():
                handle = tar.extractfile(member)
                found[name] = handle.read() if handle is not None else b""
    for f in files:
        if f not in found:
            raise DataError(f"{path}: no member {MEMBER_DIR}{f} (listed in {LABELS})")
    return [found[f] for f in files]


def split_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train, validation and test: a seeded permutation cut 70/10/20."""
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    n_train, n_val = round(n * SHARES[0]), round(n * SHARES[1])
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


@DATASETS.register("utkface")
def utkface(
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    seed: int = 0,
    flip: bool = True,
    max_rows: int | None = None,
) -> DatasetBundle:
    """UTKFace crop_part1 as image bytes with age, gender and race; a seeded 70/10/20 split (see
    the module doc). ``image_size``: side of the square the faces are resized to."""
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    for name in (ARCHIVE, LABELS):
        if not (folder / name).is_file():
            raise DataNotFoundError(f"{folder}: {name} not found (UTKFace crop_part1, {PUBLISHED_AT})")
    labels = read_labels(folder / LABELS)
    parts = split_rows(labels.num_rows, seed)
    if max_rows is not None:
        full = len(parts[0])
        parts = (parts[0][:max_rows], *(p[:max(1, math.ceil(len(p) * max_rows / full))] for p in parts[1:]))
    keep = np.concatenate(parts)
    files = labels["file"].take(pa.array(keep)).to_pylist()
    images = dict(zip(files, read_images(folder / ARCHIVE, files)))

    def table(rows: np.ndarray) -> pa.Table:
        part = labels.take(pa.array(rows))
        column = pa.array([images[f] for f in part["file"].to_pylist()], pa.binary())
        return part.add_column(1, "image", column)

    train, validation, test = (table(p) for p in parts)
    notes = (
        f"UTKFace crop_part1 (Zhang et al. CVPR 2017; non-commercial research use only): {labels.num_rows:,} JPEG face "
        f"crops, labels from the file names. Split: a permutation with seed {seed} cut 70/10/20 (no identity labels, "
        f"so one person may appear in several splits): {train.num_rows:,} train, {validation.num_rows:,} validation, "
        f"{test.num_rows:,} test. Faces resized to {image_size}x{image_size} RGB"
        + (", random horizontal flips while training" if flip else "")
        + ". Two files with malformed names have age only (gender and race masked). crop_part1 is skewed toward "
        "children and the elderly: not comparable with full-UTKFace numbers."
    )
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"image": [{"name": "image", "size": [image_size, image_size], "channels": 3, "flip": flip}]},
        tasks=[dict(t) for t in TASKS],
        notes=notes,
        sources={"train": str(folder / ARCHIVE), "validation": str(folder / ARCHIVE), "test": str(folder / ARCHIVE)},
    )
