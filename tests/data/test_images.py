"""Image features given as file paths or encoded bytes (``data.features.image``): where paths
resolve, decoding (grayscale/RGB, resizing), the fitted normalisation, decoding each training
column once, the errors (file, column, row, path), the saved state, and an end-to-end run
(train on a CSV of image files, predict from a new CSV, save and load)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import polytask
from polytask.config import FeaturesConfig
from polytask.data.images import channel_stats
from polytask.data.io import read_table
from polytask.data.preprocessor import Preprocessor
from polytask.data.schema import FeatureSpec, InputSpec
from polytask.data.sources import feature_specs, split_table
from polytask.errors import ConfigError, DataError
from polytask.tasks import Task

TASK = Task("y", "regression")


def solid(rgb, h=4, w=5) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (h, w, len(rgb) if isinstance(rgb, tuple) else 1)).copy()


def pattern(seed: int, h: int = 6, w: int = 7, channels: int = 3) -> np.ndarray:
    """An image whose every pixel is known: [h, w, 3] (or [h, w]) uint8 from a seed."""
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels == 3 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def encoded(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def chw(arr: np.ndarray) -> np.ndarray:
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def write_csv(path: Path, columns: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.table(columns), path)
    return path


def encode(table: pa.Table, source: str = "train.csv", **options) -> tuple[Preprocessor, np.ndarray]:
    """Fit a one-image-feature preprocessor on ``table`` and encode it: (preprocessor, pixels)."""
    pre = Preprocessor([FeatureSpec("photo", "image", **options)], [TASK])
    pre.fit(table, source)
    return pre, pre.transform(table, source).features["dense:photo"].numpy()


# -- where paths resolve ----------------------------------------------------------------------------
def test_relative_paths_resolve_against_the_tables_directory_not_the_working_directory(tmp_path, monkeypatch):
    images = [pattern(i) for i in range(3)]
    for i, a in enumerate(images):
        save(tmp_path / "data" / "img" / f"{i}.png", a)
    csv = write_csv(tmp_path / "data" / "train.csv", {"photo": [f"img/{i}.png" for i in range(3)], "y": [0.0, 1.0, 2.0]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pre, pixels = encode(read_table(csv), str(csv))
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 3, 6, 7)
    np.testing.assert_array_equal(pixels, np.stack([chw(a) for a in images]))
    # a table built in memory has no file: relative paths resolve against the working directory
    table = pa.table({"photo": ["img/2.png"], "y": [0.0]})
    with pytest.raises(DataError, match="file not found"):
        pre.transform(table, "memory")
    monkeypatch.chdir(tmp_path / "data")
    np.testing.assert_array_equal(pre.transform(table, "memory").features["dense:photo"].numpy()[0], chw(images[2]))


def test_root_and_absolute_paths(tmp_path, monkeypatch):
    a, b = pattern(1), pattern(2)
    save(tmp_path / "pictures" / "a.png", a)
    absolute = save(tmp_path / "other" / "b.png", b)
    csv = write_csv(tmp_path / "tables" / "train.csv", {"photo": ["a.png", str(absolute)], "y": [0.0, 1.0]})
    monkeypatch.chdir(tmp_path)
    # a relative root resolves against the working directory when fitted, and is saved absolute
    pre, pixels = encode(read_table(csv), str(csv), root="pictures")
    np.testing.assert_array_equal(pixels, np.stack([chw(a), chw(b)]))
    state = pre.to_dict()["features"][0]["state"]
    assert state["root"] == str(tmp_path / "pictures")
    monkeypatch.chdir(tmp_path / "other")
    loaded = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    again = loaded.transform(read_table(csv), str(csv)).features["dense:photo"].numpy()
    np.testing.assert_array_equal(again, pixels)


def test_a_seeded_split_keeps_the_files_directory(tmp_path, monkeypatch):
    images = [pattern(i) for i in range(10)]
    for i, a in enumerate(images):
        save(tmp_path / "data" / f"{i}.png", a)
    csv = write_csv(tmp_path / "data" / "t.csv", {"photo": [f"{i}.png" for i in range(10)], "y": np.arange(10.0)})
    monkeypatch.chdir(tmp_path)
    train, rest = split_table(read_table(csv), [0.3], seed=0)
    pre, pixels = encode(train, str(csv))
    order = [int(Path(p).stem) for p in rest.column("photo").to_pylist()]
    got = pre.transform(rest, str(csv)).features["dense:photo"].numpy()
    np.testing.assert_array_equal(got, np.stack([chw(images[i]) for i in order]))


# -- decoding -----------------------------------------------------------------------------------------
def test_a_parquet_bytes_column_png_and_jpeg(tmp_path):
    png = pattern(5, 8, 8)
    smooth = np.tile(np.linspace(40, 200, 8, dtype=np.uint8)[None, :, None], (8, 1, 3))  # JPEG keeps it closely
    table = pa.table({"photo": pa.array([encoded(png, "PNG"), encoded(smooth, "JPEG")], pa.binary()), "y": [0.0, 1.0]})
    path = tmp_path / "train.parquet"
    pq.write_table(table, path)
    read = read_table(path)
    assert pa.types.is_binary(read.schema.field("photo").type)
    _, pixels = encode(read, str(path))
    np.testing.assert_array_equal(pixels[0], chw(png))  # PNG is lossless
    assert np.abs(pixels[1].astype(int) - chw(smooth)).max() <= 8  # JPEG: close
    # large_binary works the same
    _, again = encode(read.cast(pa.schema([("photo", pa.large_binary()), ("y", pa.float64())])), "x")
    np.testing.assert_array_equal(again, pixels)


def test_grayscale_and_rgb_conversion(tmp_path):
    colour = solid((200, 100, 50))
    gray = pattern(3, 4, 5, channels=1)
    table = pa.table({"photo": [encoded(colour), encoded(gray)], "y": [0.0, 1.0]})
    _, as_gray = encode(table, channels=1)
    assert as_gray.shape == (2, 1, 4, 5)
    # Pillow's L: R * 299/1000 + G * 587/1000 + B * 114/1000 = 124.2
    assert (as_gray[0] == 124).all()
    np.testing.assert_array_equal(as_gray[1, 0], gray)
    _, as_rgb = encode(table, channels=3)
    assert as_rgb.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(as_rgb[0], chw(colour))
    for c in range(3):  # a grayscale image has its value in every channel
        np.testing.assert_array_equal(as_rgb[1, c], gray)
    rgba = np.dstack([colour, np.full((4, 5), 7, np.uint8)])
    _, from_rgba = encode(pa.table({"photo": [encoded(rgba)], "y": [0.0]}))
    np.testing.assert_array_equal(from_rgba[0], chw(colour))  # alpha dropped


def test_resize_to_size_bilinear_antialiased_and_default_first_image_size():
    stripes = np.zeros((12, 12, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel vertical stripes
    other = pattern(4, 9, 15)
    table = pa.table({"photo": [encoded(stripes), encoded(other)], "y": [0.0, 1.0]})
    _, pixels = encode(table, size=[4, 3])
    assert pixels.shape == (2, 3, 4, 3)
    expected = np.asarray(Image.fromarray(stripes).resize((3, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(pixels[0], chw(expected))
    # antialiased: the stripes average out (a point sample would give 0 or 255)
    assert 60 < pixels[0].min() and pixels[0].max() < 200
    # size: n is [n, n]
    _, square = encode(table, size=5)
    assert square.shape == (2, 3, 5, 5)
    # no size: the first training image's size, every other image resized to it
    pre, first = encode(table)
    assert first.shape == (2, 3, 12, 12)
    assert pre.input_spec().dense == {"photo": [3, 12, 12]}
    expected = np.asarray(Image.fromarray(other).resize((12, 12), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(first[1], chw(expected))
    np.testing.assert_array_equal(first[0], chw(stripes))


# -- normalisation ---------------------------------------------------------------------------------
def test_fitted_mean_and_std_known_answer_and_input_spec():
    a, b = solid((0, 255, 51)), solid((255, 255, 102))
    table = pa.table({"photo": [encoded(a), encoded(b)], "y": [0.0, 1.0]})
    pre, _ = encode(table, flip=True, crop=2)
    state = pre.encoders["photo"].state()
    np.testing.assert_allclose(state["mean"], [0.5, 1.0, 0.3], rtol=1e-12)
    np.testing.assert_allclose(state["std"], [0.5, 1.0, 0.1], rtol=1e-12)  # a constant channel: 1
    spec = pre.input_spec()
    assert spec.dense == {"photo": [3, 4, 5]}
    assert spec.images == {"photo": {"mean": state["mean"], "std": state["std"], "flip": True, "crop": 2}}
    # given mean/std are kept (ImageNet's)
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    pre, _ = encode(table, **imagenet)
    assert pre.input_spec().images["photo"] == {**imagenet, "flip": False, "crop": 0}


def test_channel_stats_matches_numpy_over_chunks():
    pixels = np.random.default_rng(0).integers(0, 256, (300, 3, 64, 64), dtype=np.uint8)  # several chunks
    mean, std = channel_stats(pixels)
    x = pixels.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean((0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(std, x.std((0, 2, 3)), rtol=1e-10)


# -- decoded once ---------------------------------------------------------------------------------------
@pytest.fixture()
def count_decodes(monkeypatch):
    opened = []
    real = Image.open

    def counting(*args, **kwargs):
        opened.append(1)  # list.append is atomic: safe from the decoding threads
        return real(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return opened


@pytest.mark.parametrize("rows", [5, 100])  # on the calling thread / on the thread pool
@pytest.mark.parametrize("size", [None, [4, 4]])
def test_fit_then_transform_of_the_training_column_decodes_each_image_once(tmp_path, count_decodes, rows, size):
    for i in range(3):
        save(tmp_path / f"{i}.png", pattern(i))
    csv = write_csv(tmp_path / "train.csv", {"photo": [f"{i % 3}.png" for i in range(rows)], "y": np.arange(float(rows))})
    table = read_table(csv)
    pre = Preprocessor([FeatureSpec("photo", "image", size=size)], [TASK])
    pre.fit(table, "train.csv")
    assert len(count_decodes) == rows
    first = pre.transform(table, "train.csv").features["dense:photo"]
    assert len(count_decodes) == rows  # the column fit decoded is not decoded again
    np.testing.assert_array_equal(first.numpy()[3 % rows], first.numpy()[0])
    second = pre.transform(table, "train.csv").features["dense:photo"]  # the memo is used once
    assert len(count_decodes) == 2 * rows
    assert torch.equal(first, second)
    # another column (or loaded state) is decoded
    other = read_table(write_csv(tmp_path / "other.csv", {"photo": ["1.png"], "y": [0.0]}))
    pre.transform(other, "other.csv")
    assert len(count_decodes) == 2 * rows + 1


def test_loading_state_after_fit_drops_the_memo(tmp_path, count_decodes):
    save(tmp_path / "a.png", pattern(0, 8, 8))
    table = read_table(write_csv(tmp_path / "t.csv", {"photo": ["a.png"] * 3, "y": [0.0, 1.0, 2.0]}))
    pre = Preprocessor([FeatureSpec("photo", "image")], [TASK])
    pre.fit(table, "t.csv")
    pre.encoders["photo"].load({"size": [2, 2], "channels": 1, "mean": [0.5], "std": [0.25]})
    out = pre.transform(table, "t.csv").features["dense:photo"]
    assert out.shape == (3, 1, 2, 2) and len(count_decodes) == 6


# -- errors ---------------------------------------------------------------------------------------------
def test_missing_file_names_file_column_row_and_path(tmp_path, monkeypatch):
    save(tmp_path / "data" / "ok.png", pattern(0))
    photos = ["ok.png"] * 20
    photos[17] = "faces/a.jpg"
    csv = write_csv(tmp_path / "data" / "train.csv", {"photo": photos, "y": np.arange(20.0)})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        encode(read_table(csv), "train.csv")
    full = tmp_path / "data" / "faces" / "a.jpg"
    assert str(err.value) == f"train.csv: image column 'photo', row 17: cannot read 'faces/a.jpg' (file not found: {full})"
    assert err.value.row == 17
    # in a part carved from the file by a seeded split, the row of the file is named
    parts = split_table(read_table(csv), [0.5], seed=1)
    good, bad = (parts[0], parts[1]) if "faces/a.jpg" in parts[1].column("photo").to_pylist() else (parts[1], parts[0])
    pre, _ = encode(good, "train.csv")
    with pytest.raises(DataError, match=r"train\.csv: image column 'photo', row 17: cannot read 'faces/a\.jpg'") as err:
        pre.transform(bad, "train.csv")
    assert err.value.row == 17


@pytest.mark.parametrize("rows", [4, 60])
def test_corrupt_and_truncated_files(tmp_path, rows):
    save(tmp_path / "ok.png", pattern(0))
    (tmp_path / "bad.png").write_bytes(b"this is not an image")
    whole = encoded(pattern(1, 32, 32))
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "folder.png").mkdir()
    for name, why in (("bad.png", "not an image Pillow can decode"), ("cut.png", "cannot decode"),
                      ("folder.png", "a directory, not a file")):
        photos = ["ok.png"] * rows
        photos[2] = photos[rows - 1] = name  # the first bad row is named
        csv = write_csv(tmp_path / "t.csv", {"photo": photos, "y": np.arange(float(rows))})
        with pytest.raises(DataError) as err:
            encode(read_table(csv), "t.csv")
        message = str(err.value)
        assert message.startswith(f"t.csv: image column 'photo', row 2: cannot read '{name}' ({why}"), message
        assert str(tmp_path / name) in message and err.value.row == 2


def test_corrupt_bytes_and_missing_values():
    table = pa.table({"photo": pa.array([encoded(pattern(0)), b"\x89PNG garbage"], pa.binary()), "y": [0.0, 1.0]})
    with pytest.raises(DataError, match=r"^x\.parquet: image column 'photo', row 1: cannot read the encoded image "
                                        r"\(12 bytes\) \(not an image Pillow can decode\)$"):
        encode(table, "x.parquet")
    ok = encoded(pattern(0))
    for column, row in ((pa.array([None, "a.png"]), 0), (pa.array(["", "a.png"]), 0), (pa.array([ok, None], pa.binary()), 1),
                        (pa.array([ok, b""], pa.binary()), 1), (pa.nulls(2), 0)):
        with pytest.raises(DataError) as err:
            encode(pa.table({"photo": column, "y": [0.0, 1.0]}), "t.csv")
        assert str(err.value) == (
            f"t.csv: image column 'photo', row {row}: missing value (an image file path or encoded image bytes is needed)"
        )
        assert err.value.row == row
    with pytest.raises(DataError, match="must hold file paths .strings. or encoded image bytes .binary., found int64"):
        encode(pa.table({"photo": [1, 2], "y": [0.0, 1.0]}))


def test_a_null_cell_in_a_csv(tmp_path):
    save(tmp_path / "ok.png", pattern(0))
    (tmp_path / "t.csv").write_text("photo,y\nok.png,1\n,2\nok.png,3\n")
    with pytest.raises(DataError) as err:
        encode(read_table(tmp_path / "t.csv"), "t.csv")
    assert str(err.value).startswith("t.csv: image column 'photo', row 1: missing value") and err.value.row == 1


# -- declarations and saved state ---------------------------------------------------------------------
def test_image_options_belong_to_image_features():
    with pytest.raises(ConfigError, match=r"^feature 'x' \(numeric\): size, flip apply to image features only$"):
        FeatureSpec("x", "numeric", size=[2, 2], flip=True)
    with pytest.raises(ConfigError, match="crop applies to image features only"):
        FeatureSpec("x", "dense", crop=1)
    with pytest.raises(ConfigError, match="mean needs one value per channel"):
        FeatureSpec("x", "image", channels=1, mean=[0.5, 0.5])
    with pytest.raises(ConfigError, match="channels must be 1"):
        FeatureSpec("x", "image", channels=2)
    with pytest.raises(ConfigError, match="scale and shape do not apply"):
        FeatureSpec("x", "image", scale="standard")
    # saved specs of other types are what they were before images existed
    assert FeatureSpec("x", "numeric").to_dict() == {
        "name": "x", "type": "numeric", "scale": "standard", "log1p": False, "nan": "impute", "min_count": 1,
        "max_len": 50, "separator": "|", "shape": None,
    }
    image = FeatureSpec("x", "image", size=8, crop=2)
    assert image.size == [8, 8]
    saved = image.to_dict()
    assert saved["size"] == [8, 8] and saved["crop"] == 2 and "flip" not in saved and "channels" not in saved
    assert FeatureSpec(**saved) == image
    # the config: data.features.image, size n as [n, n]
    specs = feature_specs(FeaturesConfig(image=[{"name": "photo", "size": 16, "flip": True}], numeric=["a"]))
    assert [(s.name, s.type) for s in specs] == [("a", "numeric"), ("photo", "image")]
    assert specs[1].size == [16, 16] and specs[1].flip
    with pytest.raises(Exception, match="channels must be 1"):
        FeaturesConfig(image=[{"name": "photo", "channels": 4}])


def test_state_round_trip_and_input_spec_compatibility(tmp_path):
    table = pa.table({"photo": [encoded(pattern(i, 6, 6)) for i in range(4)], "y": np.arange(4.0)})
    pre, pixels = encode(table, size=[3, 4], channels=1, crop=1)
    state = pre.encoders["photo"].state()
    assert state["size"] == [3, 4] and state["channels"] == 1 and len(state["mean"]) == len(state["std"]) == 1
    path = tmp_path / "encoders.json"
    pre.save(path)
    loaded = Preprocessor.load(path)
    assert loaded.encoders["photo"].state() == state
    assert loaded.input_spec() == pre.input_spec()
    np.testing.assert_array_equal(loaded.transform(table, "t").features["dense:photo"].numpy(), pixels)
    # the input spec saves images; an input spec saved before images existed still loads
    spec = pre.input_spec()
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = InputSpec(numeric_dim=2).to_dict()
    assert "images" not in old and InputSpec.from_dict(old).images == {}


# -- end to end ----------------------------------------------------------------------------------------
def make_images(folder: Path, n: int, seed: int, size: int = 16) -> tuple[list[str], list[int], list[float]]:
    """``n`` PNGs: bright (mean ~170) or dark (mean ~70) images with noise and a tint; labels
    ``bright`` (binary) and ``level`` (the mean pixel value in [0, 1], regression)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names, bright, level = [], [], []
    for i in range(n):
        b = int(rng.random() < 0.5)
        base = (170 if b else 70) + rng.normal(0, 20)
        tint = rng.normal(0, 15, 3)
        arr = np.clip(base + tint + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{seed}_{i}.png")
        names.append(f"{folder.name}/{seed}_{i}.png")
        bright.append(b)
        level.append(float(arr.mean() / 255))
    return names, bright, level


@pytest.mark.slow
def test_end_to_end_fit_predict_save_load(tmp_path, monkeypatch):
    data = tmp_path / "data"
    train = make_images(data / "images", 60, seed=0)
    val = make_images(data / "images", 40, seed=1)
    write_csv(data / "train.csv", dict(zip(("photo", "bright", "level"), train)))
    write_csv(data / "val.csv", dict(zip(("photo", "bright", "level"), val)))
    monkeypatch.chdir(tmp_path)  # the CSVs' relative paths resolve against their own folder
    out = tmp_path / "run"
    run = polytask.fit(
        train=str(data / "train.csv"), validation=str(data / "val.csv"),
        features={"image": [{"name": "photo", "flip": True, "crop": 2}]},
        tasks=[{"name": "bright"}, {"name": "level", "kind": "regression"}],
        model={"name": "shared_bottom", "encoder": "cnn",
               "encoder_params": {"channels": [8, 16], "kernel_size": 3, "padding": "same", "dim": 32},
               "bottom_hidden": [], "tower_hidden": [16]},
        optimizer={"name": "adam", "lr": 0.003},
        epochs=15, batch_size=16, patience=15, progress=False, seed=0, device="cpu", out=out,
    )
    metrics = run.metrics["validation"]
    label_std = float(np.std(val[2]))
    # bright vs dark is easy: near-perfect ranking; the mean level far better than predicting the mean
    assert metrics["bright"]["auc"] >= 0.95, metrics
    assert metrics["level"]["rmse"] < 0.25 * label_std, (metrics, label_std)

    # a new CSV elsewhere, listing the validation images by absolute path
    new = write_csv(tmp_path / "incoming" / "new.csv", {"photo": [str(data / p) for p in val[0]]})
    predicted = run.predict(str(new))
    # the same predictions as from the validation split's own encoding
    pre = run.preprocessor
    table = pre.transform(read_table(data / "val.csv"), "val.csv", with_labels=False)
    run.model.eval()
    with torch.no_grad():
        raw = run.model(table.features)
    np.testing.assert_allclose(predicted["bright"], torch.sigmoid(raw["bright"]).numpy().reshape(-1), atol=1e-6)
    np.testing.assert_allclose(predicted["level"], run.predict(str(data / "val.csv"))["level"], atol=0)
    # a saved run, loaded from another working directory, predicts identically
    monkeypatch.chdir(tmp_path / "incoming")
    loaded = polytask.load_run(out)
    again = loaded.predict(str(new))
    for task in ("bright", "level"):
        np.testing.assert_array_equal(again[task], predicted[task])
    # a copy of the images with a CSV beside them: relative paths resolve against the new CSV's folder
    moved = tmp_path / "moved"
    shutil.copytree(data / "images", moved / "images")
    copy = write_csv(moved / "copy.csv", {"photo": val[0]})
    np.testing.assert_array_equal(loaded.predict(str(copy))["bright"], predicted["bright"])
    # evaluate on a labelled file, and the command line
    assert loaded.evaluate(str(data / "val.csv"))["bright"]["auc"] == pytest.approx(metrics["bright"]["auc"])
    from typer.testing import CliRunner

    from polytask.cli import app

    dest = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["predict", str(out), str(copy), "-o", str(dest)])
    assert result.exit_code == 0, result.output
    written = pacsv.read_csv(dest)
    np.testing.assert_allclose(written.column("bright").to_numpy(), predicted["bright"], atol=1e-6)
    result = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(data / "val.csv")])
    assert result.exit_code == 0, result.output
    # the encoded table holds uint8 pixels; the model's state dict has no image buffers
    assert table.features["dense:photo"].dtype == torch.uint8
    assert not any("image_inputs" in k for k in run.model.state_dict())


def test_undeclared_image_columns_are_inferred():
    from polytask.data.sources import infer_features

    n = 30  # enough rows that a column of unique strings would be an identifier
    table = pa.table({
        "photo": [f"faces/{i}.JPG" if i % 2 else f"/abs/{i}.png" for i in range(n)],
        "raw": pa.array([encoded(pattern(i)) for i in range(n)], pa.binary()),
        "name": [f"faces/{i}.jpg" if i else "notes.txt" for i in range(n)],  # one value is not an image
        "y": np.arange(n, dtype=np.float64),
    })
    specs, decisions = infer_features(table, [TASK], [])
    assert {s.name: s.type for s in specs} == {"photo": "image", "raw": "image"}
    assert dict((c, d) for c, d, _ in decisions)["name"] == "skipped"  # a unique text column: an identifier
