"""MultiFashion and Multi-(Fashion+MNIST) (Lin et al., NeurIPS 2019): the rows are the named
source images at their places, the classes differ in MultiFashion, splits share no image, and the
seed fixes the data. They read the real IDX files from the data directory."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.data.datasets.multi_fashion import draw_partners, multi_fashion, multi_fashion_mnist
from polytask.data.datasets.multi_mnist import load_mnist
from polytask.data.paths import dataset_dir
from polytask.registry import DATASETS


def canvas_of(table):
    col = table.column("image").combine_chunks()
    while hasattr(col.type, "list_size"):
        col = col.flatten()
    side = int(round((len(col) / table.num_rows) ** 0.5))
    return np.rint(col.to_numpy().reshape(table.num_rows, side, side) * 255).astype(np.uint8)


@pytest.mark.parametrize("build, left, right", [(multi_fashion, "fashion_mnist", "fashion_mnist"),
                                                (multi_fashion_mnist, "mnist", "fashion_mnist")])
def test_rows_are_the_named_images_at_their_corners(build, left, right):
    b = build(max_rows=40, seed=1)
    sources = {name: {s: load_mnist(dataset_dir(name), s) for s in ("train", "test")} for name in {left, right}}
    for split, table in (("train", b.train), ("validation", b.validation), ("test", b.test)):
        source = "test" if split == "test" else "train"
        (lx, ly), (rx, ry) = sources[left][source], sources[right][source]
        li, ri = table.column("left_index").to_numpy(), table.column("right_index").to_numpy()
        np.testing.assert_array_equal(table.column("left").to_numpy(), ly[li])
        np.testing.assert_array_equal(table.column("right").to_numpy(), ry[ri])
        canvas = canvas_of(table)
        assert canvas.shape[1:] == (36, 36)  # Lin et al. keep the 36x36 canvas
        for i in range(table.num_rows):  # each item lies at one of its 25 corner shifts
            assert any((canvas[i, a : a + 28, c : c + 28] >= lx[li[i]]).all() for a in range(5) for c in range(5))
            assert any((canvas[i, 8 - a : 36 - a, 8 - c : 36 - c] >= rx[ri[i]]).all() for a in range(5) for c in range(5))
    if build is multi_fashion:
        for table in (b.train, b.validation, b.test):
            assert (table.column("left").to_numpy() != table.column("right").to_numpy()).all()


def test_sizes_seed_and_registry():
    a, again, other = multi_fashion(max_rows=50, seed=0), multi_fashion(max_rows=50, seed=0), multi_fashion(max_rows=50, seed=1)
    assert (a.train.num_rows, a.validation.num_rows, a.test.num_rows) == (50, 10, 10)
    assert a.train.equals(again.train) and not a.train.equals(other.train)
    for column in ("left_index", "right_index"):  # train and validation images come from disjoint parts
        assert not set(a.train.column(column).to_pylist()) & set(a.validation.column(column).to_pylist())
    assert [t["name"] for t in a.tasks] == ["left", "right"] and a.features == {"dense": ["image"]}
    assert "Lin et al." in a.notes and "36x36" in a.notes
    assert {"multi_fashion", "multi_fashion_mnist"} <= set(DATASETS.names())
    small = multi_fashion_mnist(max_rows=10, image_size=28)
    assert canvas_of(small.train).shape[1:] == (28, 28)


def test_partners_of_a_different_class():
    rng = np.random.Generator(np.random.PCG64(0))
    left = np.array([0, 1, 2, 3] * 50)
    right = np.array([0, 0, 1, 2, 3, 3])
    partner = draw_partners(rng, left, right, distinct=True)
    assert (right[partner] != left).all()
    assert len(set(partner.tolist())) == len(right)  # every candidate is drawn
