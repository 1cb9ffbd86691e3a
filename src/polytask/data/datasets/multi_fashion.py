"""MultiFashion and Multi-(Fashion+MNIST): two overlapping 28x28 items per image, one 10-way task
per item, after Lin, Zhen, Li, Zhang & Kwong ("Pareto Multi-Task Learning", NeurIPS 2019, Sec. 6.1).

Files: the raw IDX files of Fashion-MNIST in ``<data dir>/fashion_mnist/`` and, for the mixed set,
of MNIST in ``<data dir>/mnist/`` (``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``).

Recipe (Lin et al.): two images go to the top-left (task ``left``) and bottom-right (task
``right``) of a 36x36 canvas, each moved by up to 4 pixels in each direction; in MultiFashion the
two items are of *different* classes (their recipe for MultiMNIST asks for different digits).
Pixels are combined by the pixelwise maximum. Lin et al. keep the 36x36 canvas (``image_size``
defaults to 36 here; smaller sizes are a bilinear, antialiased resize as in ``multi_mnist``).

Choices that are ours (the paper leaves them open), shared with :mod:`.multi_mnist` where they
apply:

* Multi-(Fashion+MNIST): the MNIST digit is top-left (task ``left``, 10 digits), the Fashion item
  bottom-right (task ``right``, 10 clothing classes); the paper does not say which is where.
* Splits: each source's 60,000 training images are permuted (seeded) into 50,000 train and 10,000
  validation images (Lin et al. have no validation split); the partner of a row is drawn from the
  same split of the partner's source, so no image appears in two splits; test pairs the 10,000
  ``t10k`` images (Lin et al. build 120,000 / 20,000 pairs; here one pair per image of the left
  source).
* Placement, shifts and ``max_rows`` work as in :mod:`.multi_mnist`; everything random comes from
  one ``numpy.random.Generator(PCG64(seed))`` in a fixed order.

Storage: a ``dense`` feature ``image`` ``[1, image_size, image_size]`` float32 in [0, 1], int8
labels ``left``/``right``, and int32 ``left_index``/``right_index``: the rows of the two images in
their source files (provenance, not features).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow as pa

from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.multi_mnist import (
    CANVAS,
    MAX_SHIFT,
    N_VALIDATION,
    TASKS,
    _check,
    _with_sources,
    load_mnist,
    make_split,
)
from polytask.data.paths import dataset_dir
from polytask.registry import DATASETS

PAPER = "Lin et al., Pareto Multi-Task Learning, NeurIPS 2019, Sec. 6.1"
SOURCES = {
    "mnist": ("mnist", "http://yann.lecun.com/exdb/mnist/"),
    "fashion": ("fashion_mnist", "https://github.com/zalandoresearch/fashion-mnist"),
}


def draw_partners(rng: np.random.Generator, left_labels: np.ndarray, right_labels: np.ndarray,
                  distinct: bool) -> np.ndarray:
    """For every left row, the index of its partner among the right candidates: uniform, and
    with ``distinct`` redrawn until its class differs from the left row's (so, for one source,
    never the row itself)."""
    n, m = len(left_labels), len(right_labels)
    partner = rng.integers(0, m, size=n)
    if distinct:
        same = right_labels[partner] == left_labels
        while same.any():
            partner[same] = rng.integers(0, m, size=int(same.sum()))
            same = right_labels[partner] == left_labels
    return partner


def pair_dataset(left: str, right: str, data_dir: str | os.PathLike | None, *, max_rows: int | None, seed: int,
                 image_size: int, distinct: bool, title: str) -> DatasetBundle:
    """Pairs of a ``left`` source image (top-left) and a ``right`` source image (bottom-right)."""
    _check(max_rows, seed, image_size)
    folders = {s: dataset_dir(SOURCES[s][0], data_dir, published_at=SOURCES[s][1]) for s in {left, right}}
    data = {s: {split: load_mnist(folders[s], split) for split in ("train", "test")} for s in folders}
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    orders = {s: rng.permutation(len(data[s]["train"][0])) for s in sorted(folders)}
    parts = {
        s: {"train": orders[s][: len(orders[s]) - N_VALIDATION], "validation": orders[s][len(orders[s]) - N_VALIDATION :],
            "test": np.arange(len(data[s]["test"][0]))}
        for s in folders
    }
    cap = None if max_rows is None else {"train": int(max_rows), "validation": math.ceil(int(max_rows) / 5),
                                        "test": math.ceil(int(max_rows) / 5)}
    tables = {}
    for split in ("train", "validation", "test"):
        source = "test" if split == "test" else "train"
        (li_images, li_labels), (ri_images, ri_labels) = data[left][source], data[right][source]
        left_index, candidates = parts[left][split], parts[right][split]
        partner = draw_partners(rng, li_labels[left_index], ri_labels[candidates], distinct)
        shifts = rng.integers(0, MAX_SHIFT + 1, size=(len(left_index), 2, 2))
        keep = len(left_index) if cap is None else min(cap[split], len(left_index))
        a, b = left_index[:keep], candidates[partner[:keep]]
        table = make_split(li_images[a], ri_images[b], li_labels[a], ri_labels[b], shifts[:keep, 0], shifts[:keep, 1],
                           int(image_size))
        tables[split] = _with_sources(table, a, b)
    sizes = {k: t.num_rows for k, t in tables.items()}
    notes = (
        f"{title} ({PAPER}): task left = the top-left {left} item, right = the bottom-right {right} item, 10 classes "
        f"each{' (the two always of different classes)' if distinct else ''}. A {CANVAS}x{CANVAS} canvas, each item "
        f"shifted by up to {MAX_SHIFT} px from its corner, pixelwise max, "
        + ("kept at 36x36 as in Lin et al." if image_size == CANVAS else f"resized to {image_size}x{image_size} (bilinear)")
        + f", values in [0, 1]. Splits: each source's train images permuted (seed={seed}) into 50,000 train / 10,000 "
        f"validation, t10k = test, partners drawn from the same split; one pair per {left} image (Lin et al. build "
        f"120,000 / 20,000 pairs and have no validation split). Rows: train {sizes['train']} / validation "
        f"{sizes['validation']} / test {sizes['test']}" + ("" if max_rows is None else f" (max_rows={max_rows})") + "."
    )
    return DatasetBundle(
        train=tables["train"], validation=tables["validation"], test=tables["test"],
        features={"dense": ["image"]}, tasks=[dict(t) for t in TASKS], notes=notes,
        sources={**{f"{s}": str(folders[s]) for s in folders}, "paper": PAPER},
    )


@DATASETS.register("multi_fashion")
def multi_fashion(data_dir: str | os.PathLike | None = None, *, max_rows: int | None = None, seed: int = 0,
                  image_size: int = 36) -> DatasetBundle:
    """MultiFashion (Lin et al., NeurIPS 2019): two overlapping Fashion-MNIST items of different
    classes, tasks ``left`` and ``right`` (10-way); 50,000 / 10,000 / 10,000 rows."""
    return pair_dataset("fashion", "fashion", data_dir, max_rows=max_rows, seed=seed, image_size=image_size,
                        distinct=True, title="MultiFashion")


@DATASETS.register("multi_fashion_mnist")
def multi_fashion_mnist(data_dir: str | os.PathLike | None = None, *, max_rows: int | None = None, seed: int = 0,
                        image_size: int = 36) -> DatasetBundle:
    """Multi-(Fashion+MNIST) (Lin et al., NeurIPS 2019): an MNIST digit (top-left, task ``left``)
    overlapping a Fashion-MNIST item (bottom-right, task ``right``); 50,000 / 10,000 / 10,000 rows."""
    return pair_dataset("mnist", "fashion", data_dir, max_rows=max_rows, seed=seed, image_size=image_size,
                        distinct=False, title="Multi-(Fashion+MNIST)")
