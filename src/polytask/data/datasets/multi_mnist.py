"""MultiMNIST: two overlapping MNIST digits per image, one 10-way task per digit.

The construction follows the multi-task MultiMNIST of Sener & Koltun ("Multi-Task Learning as
Multi-Objective Optimization", NeurIPS 2018, Sec. 7.1), which builds on the MultiMNIST of Sabour,
Frosst & Hinton ("Dynamic Routing Between Capsules", NeurIPS 2017, Sec. 6) and is also used by
Pareto MTL (Lin et al., NeurIPS 2019). Files: the four raw MNIST IDX files (gzip-compressed) in
``<data dir>/mnist/``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (uncompressed files
without ``.gz`` are read too).

Recipe (what the papers describe):

1. For every example take one MNIST digit (the *left* digit) and a second digit drawn uniformly at
   random from the same split (the *right* digit).
2. Put the left digit in the top-left and the right digit in the bottom-right of an empty 36x36
   canvas; where they overlap, the canvas holds the pixelwise maximum.
3. Resize the canvas to 28x28 (so the LeNet-style networks of the MNIST literature apply).
4. Task ``left`` is the class of the top-left digit, task ``right`` that of the bottom-right digit
   (both multiclass with 10 classes).

Choices that are ours (the papers leave them open or differ between implementations):

* Placement: each 28x28 digit is shifted by up to 4 pixels along each axis (uniform integer
  shifts, drawn independently per digit and axis): the left digit's top-left corner lies at
  ``(dy, dx)`` with ``dy, dx in {0, ..., 4}``, the right digit's at ``(8 - dy', 8 - dx')`` with
  ``dy', dx' in {0, ..., 4}`` (8 = 36 - 28: the corners of the canvas). So the left digit is never
  below or to the right of the right digit; the two coincide exactly only when all four shifts are
  4 (probability 1/625). (Sabour et al. shift each digit by up to 4 pixels around the centre;
  Sener & Koltun's released code uses fixed offsets 0 and 6.)
* The right digit is a different image than the left one (drawn uniformly among the other images
  of the split); its class may equal the left one's (Sabour et al. require different classes,
  Sener & Koltun do not).
* Resizing: bilinear with antialiasing (``torch.nn.functional.interpolate(..., antialias=True)``)
  from 36x36 to ``image_size`` x ``image_size`` (Sener & Koltun's code uses nearest-neighbour).
  Pixel values are scaled to [0, 1] (``uint8 / 255``); no mean/std normalisation.
* Splits: MNIST's 60,000 training images are permuted (seeded) and cut into 50,000 train and
  10,000 validation images; the 10,000 ``t10k`` images are the test split. The right digit is
  drawn from the same split as the left one, so no MNIST image appears in two splits. Train and
  validation rows come in permutation order, test rows in ``t10k`` file order.
* ``max_rows`` caps the train split at its first ``max_rows`` rows and validation and test
  proportionally (``ceil(max_rows / 5)`` each, the full dataset's 50k : 10k : 10k ratio). A capped
  dataset is a prefix of each split of the full one for the same seed (every random draw is made
  for the full splits first).

Everything random (split permutation, partners, shifts) comes from one
``numpy.random.Generator(PCG64(seed))`` in a fixed order, so ``seed`` fixes the data.

Storage: one ``dense`` feature ``image`` of per-row shape ``[1, image_size, image_size]`` float32
(a nested fixed-size list column, zero-copy from numpy), int8 label columns ``left``, ``right`` and,
for provenance only (not features), int32 ``left_index``/``right_index``: the row numbers of the
two digits in the MNIST file of the split (``train-*`` for train/validation, ``t10k-*`` for test).
About 190 MB for the full train split at 28x28; the canvases are built in chunks of 8,192 rows.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.registry import DATASETS

FOLDER = "mnist"
PUBLISHED_AT = "http://yann.lecun.com/exdb/mnist/"
PAPER = "Sener & Koltun, NeurIPS 2018, Sec. 7.1 (MultiMNIST), after Sabour et al., NeurIPS 2017"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGIT = 28  #: MNIST digit size
CANVAS = 36  #: canvas side: the digit plus 2 x MAX_SHIFT
MAX_SHIFT = 4  #: largest shift of a digit from its canvas corner, per axis
N_VALIDATION = 10_000  #: MNIST training images held out as validation
CHUNK = 8_192

TASKS: list[dict[str, object]] = [
    {"name": "left", "kind": "multiclass", "label": "left", "num_classes": 10},
    {"name": "right", "kind": "multiclass", "label": "right", "num_classes": 10},
]


# -- reading IDX ---------------------------------------------------------------------------------
def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataNotFoundError(
        f"{folder} holds neither {stem}.gz nor {stem}: put the raw MNIST IDX files there (published at {PUBLISHED_AT})."
    )


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzip-compressed) as a uint8 array: ``[n, rows, cols]`` for images
    (magic 2051), ``[n]`` for labels (magic 2049). Raises ValueError naming the file otherwise."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic not in (2049, 2051):
        raise ValueError(f"{path}: not an MNIST IDX file of uint8 labels (2049) or images (2051): magic number {magic}")
    ndim = magic - 2048
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(data) != header + size:
        raise ValueError(f"{path}: header says shape {dims} ({header + size} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, 28, 28] uint8, labels [n] uint8)`` of MNIST ``train`` or ``test`` (t10k)."""
    images_path, labels_path = (_find(folder, stem) for stem in FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"{images_path}: expected 28x28 images, got shape {list(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_path}: {labels.shape} labels for {len(images)} images in {images_path.name}")
    if labels.max(initial=0) > 9:
        raise ValueError(f"{labels_path}: labels must be digits 0-9, found {int(labels.max())}")
    return images, labels


# -- composition ---------------------------------------------------------------------------------
def compose(left: np.ndarray, right: np.ndarray, left_shift: np.ndarray, right_shift: np.ndarray) -> np.ndarray:
    """Overlay digit pairs on 36x36 canvases (before any resizing).

    ``left``/``right``: ``[n, 28, 28]`` uint8; ``left_shift``/``right_shift``: ``[n, 2]`` integer
    (dy, dx) in ``0..4``. The left digit's top-left corner goes to ``left_shift``, the right
    digit's to ``(8, 8) - right_shift``; the canvas is the pixelwise maximum of the two.
    Vectorised over rows: one slice assignment per distinct shift (25 per digit).
    """
    n = len(left)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=left.dtype)
    for images, shifts, flip in ((left, left_shift, False), (right, right_shift, True)):
        offset = (CANVAS - DIGIT) - shifts if flip else shifts
        key = offset[:, 0] * (CANVAS - DIGIT + 1) + offset[:, 1]
        for k in np.unique(key):
            rows = np.flatnonzero(key == k)
            y, x = divmod(int(k), CANVAS - DIGIT + 1)
            window = canvas[rows, y : y + DIGIT, x : x + DIGIT]
            canvas[rows, y : y + DIGIT, x : x + DIGIT] = np.maximum(window, images[rows])
    return canvas


def _resize(canvas: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[n, 36, 36]`` -> float32 ``[n, 1, size, size]`` in [0, 1] (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(canvas).unsqueeze(1).float().div_(255.0)
    if size != CANVAS:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 1.0).numpy()


def make_split(
    left: np.ndarray,
    right: np.ndarray,
    left_labels: np.ndarray,
    right_labels: np.ndarray,
    left_shift: np.ndarray,
    right_shift: np.ndarray,
    image_size: int,
) -> pa.Table:
    """The table of one split: row ``i`` overlays ``left[i]`` (top-left) and ``right[i]``
    (bottom-right). Built in chunks so the 36x36 canvases never exist for all rows at once."""
    n = len(left)
    out = np.empty((n, 1, image_size, image_size), dtype=np.float32)
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        out[a:b] = _resize(compose(left[a:b], right[a:b], left_shift[a:b], right_shift[a:b]), image_size)
    values = pa.array(out.reshape(-1))  # zero-copy float32 buffer
    column = pa.FixedSizeListArray.from_arrays(values, image_size)
    column = pa.FixedSizeListArray.from_arrays(column, image_size)
    column = pa.FixedSizeListArray.from_arrays(column, 1)
    return pa.table(
        {"image": column, "left": pa.array(left_labels.astype(np.int8)), "right": pa.array(right_labels.astype(np.int8))}
    )


def _with_sources(table: pa.Table, left: np.ndarray, right: np.ndarray) -> pa.Table:
    """Add the provenance columns ``left_index``/``right_index`` (int32 row numbers in the MNIST file)."""
    table = table.append_column("left_index", pa.array(left.astype(np.int32)))
    return table.append_column("right_index", pa.array(right.astype(np.int32)))


def _draws(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partner index (never the row itself), left shifts, right shifts of ``n`` rows."""
    partner = (np.arange(n) + rng.integers(1, n, size=n)) % n
    left_shift = rng.integers(0, MAX_SHIFT + 1, size=(n, 2))
    right_shift = rng.integers(0, MAX_SHIFT + 1, size=(n, 2))
    return partner, left_shift, right_shift


def _check(max_rows: int | None, seed: int, image_size: int) -> None:
    if max_rows is not None and (isinstance(max_rows, bool) or int(max_rows) != max_rows or max_rows <= 0):
        raise ValueError(f"max_rows must be None or an integer > 0, got {max_rows!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(image_size, bool) or int(image_size) != image_size or not (1 <= image_size <= CANVAS):
        raise ValueError(f"image_size must be an integer in 1..{CANVAS} (the canvas is {CANVAS}x{CANVAS}), got {image_size!r}")


@DATASETS.register("multi_mnist")
def multi_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    max_rows: int | None = None,
    seed: int = 0,
    image_size: int = 28,
) -> DatasetBundle:
    """MultiMNIST (Sener & Koltun, NeurIPS 2018): two overlapping digits, tasks ``left`` and ``right`` (10-way).

    Train/validation are 50,000/10,000 images of a seeded permutation of MNIST train, test is
    MNIST t10k (10,000). ``max_rows`` keeps the first ``max_rows`` train rows and the first
    ``ceil(max_rows / 5)`` validation and test rows; ``image_size`` is the side the 36x36 canvas
    is resized to. See the module docstring for the construction.
    """
    _check(max_rows, seed, image_size)
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    train_images, train_labels = load_mnist(folder, "train")
    test_images, test_labels = load_mnist(folder, "test")
    if len(train_images) <= N_VALIDATION + 1 or len(test_images) < 2:
        raise ValueError(f"{folder}: too few MNIST images ({len(train_images)} train, {len(test_images)} test)")

    rng = np.random.Generator(np.random.PCG64(int(seed)))
    order = rng.permutation(len(train_images))
    parts = {
        "train": order[: len(order) - N_VALIDATION],
        "validation": order[len(order) - N_VALIDATION :],
        "test": np.arange(len(test_images)),
    }
    caps = {"train": max_rows, "validation": None, "test": None}
    if max_rows is not None:
        caps["validation"] = caps["test"] = math.ceil(int(max_rows) / 5)
    tables: dict[str, pa.Table] = {}
    for split, index in parts.items():  # fixed order: the draws of each split are made in turn
        images, labels = (test_images, test_labels) if split == "test" else (train_images, train_labels)
        partner, left_shift, right_shift = _draws(rng, len(index))
        keep = len(index) if caps[split] is None else min(int(caps[split]), len(index))
        left, right = index[:keep], index[partner[:keep]]
        table = make_split(
            images[left], images[right], labels[left], labels[right], left_shift[:keep], right_shift[:keep], int(image_size)
        )
        tables[split] = _with_sources(table, left, right)

    sizes = {k: t.num_rows for k, t in tables.items()}
    notes = (
        f"MultiMNIST ({PAPER}): tasks left (top-left digit) and right (bottom-right digit), 10 classes each. "
        f"Two MNIST digits on a {CANVAS}x{CANVAS} canvas, each shifted by up to {MAX_SHIFT} px from its corner, "
        f"pixelwise max, resized to {image_size}x{image_size} (bilinear, antialiased), values in [0, 1]. "
        f"Splits: MNIST train permuted (seed={seed}) into 50,000 train / 10,000 validation images, MNIST t10k = test; "
        f"the right digit is drawn from the same split. Rows: train {sizes['train']} / validation {sizes['validation']} / "
        f"test {sizes['test']}" + ("" if max_rows is None else f" (max_rows={max_rows}; validation/test capped to max_rows/5)")
        + ". Placement and resizing are this library's choices (Sener & Koltun's code uses fixed offsets 0 and 6 px "
        "and nearest-neighbour resizing), so accuracies are not directly comparable with the papers' tables."
    )
    return DatasetBundle(
        train=tables["train"],
        validation=tables["validation"],
        test=tables["test"],
        features={"dense": ["image"]},
        tasks=[dict(t) for t in TASKS],
        notes=notes,
        sources={
            "train": f"{folder} (MNIST train, seeded 50,000-image part, seed={seed})",
            "validation": f"{folder} (MNIST train, seeded 10,000-image part, seed={seed})",
            "test": f"{folder} (MNIST t10k)",
            "published_at": PUBLISHED_AT,
            "paper": PAPER,
        },
    )
