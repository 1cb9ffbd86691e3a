"""Image features: a column of image file paths (strings) or encoded image bytes (binary, e.g. a
Parquet ``binary`` column), decoded with Pillow into uint8 pixels.

:class:`ImageEncoder` is the data side of an ``image`` feature. It decodes every image once, when
the table is encoded (never per batch), converts it to ``L`` (``channels: 1``) or ``RGB``
(``channels: 3``; an alpha channel is dropped, EXIF orientation is not applied, as torchvision's
default loader), resizes it to ``size`` (bilinear, antialiased: Pillow's ``resize``) and returns
``uint8 [N, C, H, W]`` -- a quarter of float32's memory in the encoded table. Decoding runs on a
thread pool (Pillow releases the GIL while it decodes and resizes).

What the model sees is made from those pixels by :class:`polytask.nn.image_input.ImageInputs`
(inside every model: scaling to [0, 1], the per-channel normalisation fitted here, and the
training-time flip and pad-crop), so the encoded table stays uint8 and every caller of the model
gets the same input.

Relative paths resolve against ``root`` when the feature sets it, else against the directory of
the file the table was read from (:func:`polytask.data.io.source_directory`), else the current
directory. A missing file, an undecodable image or an empty cell is one :class:`DataError`
naming the source file, the column, the row and the path.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from polytask.data.schema import FeatureSpec
from polytask.errors import DataError

#: rows decoded per round of the thread pool (a bad image stops the encoding within one round)
CHUNK_ROWS = 1024
#: below this many rows the images are decoded on the calling thread
MIN_ROWS_FOR_THREADS = 32


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is in the test extras
        raise DataError(
            "image features need Pillow: pip install 'polytask[images]' (or pip install Pillow)"
        ) from None
    return Image


def decode_threads() -> int:
    """Threads decoding images: the CPUs this process may use, at most 16."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


class ImageEncoder:
    """Image file paths (a string column) or encoded image bytes (a binary column) ->
    ``uint8 [N, C, H, W]``, resized to ``size`` (see :class:`~polytask.data.schema.FeatureSpec`).

    :meth:`fit` (training split) fixes the size (``size``, or the first training image's), and
    the per-channel ``mean`` and ``std`` in [0, 1] pixel units (given, or fitted on the training
    pixels; a constant channel gets std 1). It keeps the pixels it decoded: :meth:`transform` of
    the same column right after (the preprocessor's ``fit`` then ``transform`` of the training
    split) returns them without decoding again, once (the memo is then dropped, so the encoder
    does not hold the training images).
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.size: list[int] | None = list(spec.size) if spec.size else None
        self.channels: int = spec.channels
        self.mean: list[float] | None = list(spec.mean) if spec.mean else None
        self.std: list[float] | None = list(spec.std) if spec.std else None
        #: ``spec.root`` made absolute when fitted (so a saved run finds the images from any
        #: working directory); None when the spec sets no root
        self.root: str | None = None
        self._memo: tuple[Any, str | None, np.ndarray] | None = None

    # -- reading one image ------------------------------------------------------------------------
    def _base(self, directory: str | os.PathLike | None) -> Path:
        if self.spec.root is not None:
            return Path(self.root if self.root is not None else os.path.abspath(self.spec.root))
        return Path(directory) if directory is not None else Path.cwd()

    def _fail(self, source: str, row: int, what: str) -> DataError:
        return DataError(f"{source}: image column {self.spec.name!r}, row {row}: {what}", row=row)

    def _open(self, value: Any, row: int, source: str, base: Path):
        """The decoded Pillow image in this encoder's mode (not resized)."""
        Image = _pillow()
        if value is None or (isinstance(value, (str, bytes)) and len(value) == 0):
            raise self._fail(source, row, "missing value (an image file path or encoded image bytes is needed)")
        if isinstance(value, str):
            shown = repr(value)
            path = Path(value)
            full = path if path.is_absolute() else base / path
            try:
                with open(full, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                raise self._fail(source, row, f"cannot read {shown} (file not found: {full})") from None
            except IsADirectoryError:
                raise self._fail(source, row, f"cannot read {shown} (a directory, not a file: {full})") from None
            except OSError as exc:
                raise self._fail(source, row, f"cannot read {shown} ({exc.strerror or exc}: {full})") from None
            where = f": {full}"
        else:
            data = bytes(value)
            shown, where = f"the encoded image ({len(data)} bytes)", ""
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Image.UnidentifiedImageError:
            raise self._fail(source, row, f"cannot read {shown} (not an image Pillow can decode{where})") from None
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise self._fail(source, row, f"cannot read {shown} (cannot decode: {detail}{where})") from None
        mode = "L" if self.channels == 1 else "RGB"
        return img if img.mode == mode else img.convert(mode)

    def _pixels(self, img) -> np.ndarray:
        """``uint8 [C, H, W]`` of ``img`` resized to :attr:`size`."""
        Image = _pillow()
        h, w = self.size
        if (img.height, img.width) != (h, w):
            img = img.resize((w, h), Image.Resampling.BILINEAR)  # antialiased when shrinking
        arr = np.asarray(img, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    # -- a column -----------------------------------------------------------------------------
    def _values(self, col, source: str) -> list[Any]:
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = t.value_type
        if not (
            pa.types.is_null(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
        ):
            raise DataError(
                f"{source}: image column {self.spec.name!r} must hold file paths (strings) or encoded image bytes "
                f"(binary), found {t}"
            )
        return col.to_pylist()

    def _decode(self, col, source: str, directory: str | os.PathLike | None) -> np.ndarray:
        values = self._values(col, source)
        base = self._base(directory)
        n = len(values)
        start, first = 0, None
        if self.size is None:  # fit: the first training image's size
            first = self._open(values[0] if n else None, 0, source, base)
            self.size = [first.height, first.width]
        h, w = self.size
        out = np.empty((n, self.channels, h, w), dtype=np.uint8)
        if first is not None:
            out[0] = self._pixels(first)
            start = 1

        def one(i: int) -> None:
            out[i] = self._pixels(self._open(values[i], i, source, base))

        if n - start < MIN_ROWS_FOR_THREADS or decode_threads() == 1:
            for i in range(start, n):
                one(i)
            return out
        with ThreadPoolExecutor(decode_threads(), thread_name_prefix="polytask-image") as pool:
            for a in range(start, n, CHUNK_ROWS):
                # results in row order: the first failing row of the round raises
                for _ in pool.map(one, range(a, min(a + CHUNK_ROWS, n))):
                    pass
        return out

    def fit(self, col, source: str, *, directory: str | os.PathLike | None = None) -> ImageEncoder:
        """Decode the training column; fix the size and the per-channel mean and std."""
        self.size = list(self.spec.size) if self.spec.size else None
        self.root = os.path.abspath(self.spec.root) if self.spec.root is not None else None
        self._memo = None
        pixels = self._decode(col, source, directory)
        if self.spec.mean is None or self.spec.std is None:
            mean, std = channel_stats(pixels)
            self.mean = list(self.spec.mean) if self.spec.mean is not None else mean
            self.std = list(self.spec.std) if self.spec.std is not None else std
        else:
            self.mean, self.std = list(self.spec.mean), list(self.spec.std)
        self._memo = (col, None if directory is None else str(directory), pixels)
        return self

    def transform(self, col, source: str, *, directory: str | os.PathLike | None = None) -> np.ndarray:
        """``uint8 [N, C, H, W]``; the column :meth:`fit` just decoded is not decoded again."""
        memo, self._memo = self._memo, None  # used once: the encoder does not keep the images
        key = None if directory is None else str(directory)
        if memo is not None and memo[1] == key and (memo[0] is col or _same_column(memo[0], col)):
            return memo[2]
        if self.size is None:
            raise RuntimeError("ImageEncoder.transform called before fit")
        return self._decode(col, source, directory)

    @property
    def shape(self) -> list[int]:
        """``[C, H, W]`` of the encoded images."""
        return [self.channels, *self.size]

    def model_input(self) -> dict[str, Any]:
        """What the model's :class:`~polytask.nn.image_input.ImageInputs` needs (``InputSpec.images``)."""
        return {"mean": list(self.mean), "std": list(self.std), "flip": self.spec.flip, "crop": self.spec.crop}

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size, "channels": self.channels, "mean": self.mean, "std": self.std}
        if self.root is not None:
            out["root"] = self.root
        return out

    def load(self, state: dict[str, Any]) -> ImageEncoder:
        self.size = list(state["size"])
        self.channels = int(state["channels"])
        self.mean = [float(v) for v in state["mean"]]
        self.std = [float(v) for v in state["std"]]
        self.root = state.get("root")
        self._memo = None
        return self


def _same_column(a, b) -> bool:
    try:
        return len(a) == len(b) and a.type == b.type and a.equals(b)
    except (TypeError, pa.ArrowInvalid):  # a ChunkedArray against an Array
        return False


def channel_stats(pixels: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of ``uint8 [N, C, H, W]`` in [0, 1] units, exact
    (from a 256-bin histogram per channel, a chunk of images at a time); a constant channel gets
    std 1."""
    channels = pixels.shape[1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    step = max(1, (1 << 24) // max(1, int(np.prod(pixels.shape[1:]))))
    for a in range(0, pixels.shape[0], step):
        part = pixels[a : a + step]
        for c in range(channels):
            counts[c] += np.bincount(part[:, c].reshape(-1), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(1)
    if (total == 0).any():
        return [0.0] * channels, [1.0] * channels
    mean = (counts * values).sum(1) / total
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(1) / total
    std = np.sqrt(var)
    return mean.tolist(), np.where(std > 0, std, 1.0).tolist()
