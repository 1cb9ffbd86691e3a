"""Feature declarations (what a column is) and the input spec models are built from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FeatureType = Literal["numeric", "categorical", "sequence", "dense", "image"]
FEATURE_TYPES: tuple[str, ...] = ("numeric", "categorical", "sequence", "dense", "image")

#: options only image features take, with their defaults (left out of a saved spec at these)
IMAGE_OPTIONS: dict[str, Any] = {
    "size": None, "channels": 3, "root": None, "flip": False, "crop": 0, "mean": None, "std": None,
}


@dataclass
class FeatureSpec:
    """One input column.

    Args:
        name: column name.
        type: ``numeric`` (float), ``categorical`` (any value, mapped to an integer id),
            ``sequence`` (variable-length list of categorical values, e.g. a behaviour history;
            a list column, or a string split on ``separator``), ``dense`` (fixed-shape float
            tensor per row, from a list column), ``image`` (a column of image file paths, or of
            encoded image bytes, decoded with Pillow: see :mod:`polytask.data.images`).
        scale: scaling fitted on train: ``standard`` (z-score), ``minmax`` or ``none``; a dense
            feature is scaled per element. Unset (None): ``standard`` for numeric columns and for
            dense vectors (a per-row shape of one axis: fingerprints, embeddings), ``none`` for
            dense tensors of two or more axes (images, which their loaders scale).
        log1p: numeric: apply ``sign(x) * log1p(|x|)`` before scaling (heavy-tailed amounts).
        nan: numeric missing values: ``impute`` (train mean, plus a 0/1 missing-indicator input
            when the training split has any) or ``error`` (reject the file); dense features impute
            each element's train mean. inf/-inf is always refused (numeric and dense).
        min_count: categorical/sequence: values seen fewer times in train map to the OOV id.
        max_len: sequence: keep the last ``max_len`` items (most recent, if time-ordered).
        separator: sequence given as a string column.
        shape: dense: the per-row shape (inferred from the first row if omitted).
        char_ngrams: sequence (text): also encode each token's character n-grams of these
            lengths (e.g. ``[2, 3, 4]``; the token is wrapped in ``<`` and ``>`` first, so prefixes
            and suffixes are n-grams of their own), for word representations that see the
            spelling of unseen words (JMT, Hashimoto et al. 2017). The n-gram vocabulary is fitted
            on train like the word vocabulary (``min_count`` applies).
        max_ngrams: n-grams kept per token (those touching a word boundary first, then the
            rest in order): the width of the ``ngrams:<name>`` tensor.
        pooling: sequence, in the ``tabular`` encoder: how a row's item embeddings become one
            vector: ``mean`` (default), ``sum`` (keeps how long the history is) or ``max`` (per
            dimension); padding is left out, an empty sequence gives zeros.
        hash_buckets: categorical: no vocabulary; every value (seen in training or not) maps to
            one of this many ids by a stable hash of its text (the hashing trick, Weinberger et al.,
            ICML 2009), for ids too many to list (user or item ids); colliding values share an
            embedding. Missing values keep the OOV id 0.
        vocabulary: sequence: share the vocabulary (and n-grams) of this other sequence feature,
            fitted on both columns' training values, so the same word has the same id in both
            (the second sentence of a sentence pair).
        size: image: ``[height, width]`` every image is resized to (bilinear, antialiased); an
            int ``n`` means ``[n, n]``. None: the size of the first training image.
        channels: image: 1 (grayscale, Pillow mode ``L``) or 3 (``RGB``; alpha is dropped).
        root: image: the directory relative paths are resolved against (a relative ``root``
            against the current directory when the encoder is fitted; saved absolute). None: the
            directory of the file the table was read from, else the current directory.
        flip: image: random horizontal flip (p = 0.5 per example) while training.
        crop: image: pad by ``crop`` black pixels on every side and crop a random ``size``
            window back while training (torchvision's ``RandomCrop(size, padding=crop)``).
        mean, std: image: per-channel normalisation ``(x / 255 - mean) / std`` in [0, 1] pixel
            units (ImageNet's for pretrained weights: mean ``[0.485, 0.456, 0.406]``, std
            ``[0.229, 0.224, 0.225]``). None: fitted per channel on the training images.
    """

    name: str
    type: FeatureType = "numeric"
    scale: Literal["standard", "minmax", "none"] | None = None
    log1p: bool = False
    nan: Literal["impute", "error"] = "impute"
    min_count: int = 1
    max_len: int = 50
    separator: str = "|"
    shape: list[int] | None = None
    char_ngrams: list[int] | None = None
    max_ngrams: int = 16
    vocabulary: str | None = None
    hash_buckets: int | None = None
    pooling: Literal["mean", "sum", "max"] = "mean"
    size: list[int] | None = None
    channels: int = 3
    root: str | None = None
    flip: bool = False
    crop: int = 0
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        from polytask.errors import ConfigError

        if self.type not in FEATURE_TYPES:
            raise ConfigError(f"feature {self.name!r}: unknown type {self.type!r} (known: {', '.join(FEATURE_TYPES)})")
        # only a dense feature's default depends on the data (its shape: resolved when fitted);
        # every other type resolves now, so specs saved before the default existed compare equal
        # (an image has no scale: its normalisation is mean/std)
        if self.scale is None and self.type not in ("dense", "image"):
            self.scale = "standard"
        if isinstance(self.size, int) and not isinstance(self.size, bool):
            self.size = [self.size, self.size]
        if self.type == "image":
            self._check_image(ConfigError)
        else:
            given = [k for k, default in IMAGE_OPTIONS.items() if getattr(self, k) != default]
            if given:
                raise ConfigError(
                    f"feature {self.name!r} ({self.type}): {', '.join(given)} "
                    f"{'applies' if len(given) == 1 else 'apply'} to image features only"
                )

        if self.type != "sequence" and (self.char_ngrams or self.vocabulary):
            raise ConfigError(f"feature {self.name!r}: char_ngrams and vocabulary apply to sequence features only")
        if self.char_ngrams is not None and (not self.char_ngrams or min(self.char_ngrams) < 1):
            raise ConfigError(f"feature {self.name!r}: char_ngrams must list n-gram lengths >= 1, got {self.char_ngrams}")
        if self.pooling != "mean" and self.type != "sequence":
            raise ConfigError(f"feature {self.name!r}: pooling applies to sequence features only")
        if self.pooling not in ("mean", "sum", "max"):
            raise ConfigError(f"feature {self.name!r}: pooling must be mean, sum or max, got {self.pooling!r}")
        if self.hash_buckets is not None:
            if self.type != "categorical":
                raise ConfigError(f"feature {self.name!r}: hash_buckets applies to categorical features only")
            if isinstance(self.hash_buckets, bool) or not isinstance(self.hash_buckets, int) or self.hash_buckets < 1:
                raise ConfigError(f"feature {self.name!r}: hash_buckets must be an integer >= 1, got {self.hash_buckets!r}")
            if self.min_count != 1:
                raise ConfigError(f"feature {self.name!r}: min_count needs a vocabulary; hash_buckets has none (drop one)")
        if self.max_ngrams < 1:
            raise ConfigError(f"feature {self.name!r}: max_ngrams must be >= 1, got {self.max_ngrams}")

    def _check_image(self, error: type[Exception]) -> None:
        where = f"image feature {self.name!r}"
        if self.scale is not None or self.shape is not None:
            raise error(f"{where}: scale and shape do not apply to images (use mean/std and size)")
        if self.size is not None:
            self.size = list(self.size)
            if len(self.size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.size):
                raise error(f"{where}: size must be [height, width] of positive integers (or one integer), got {self.size}")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise error(f"{where}: channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        if isinstance(self.crop, bool) or not isinstance(self.crop, int) or self.crop < 0:
            raise error(f"{where}: crop must be an integer >= 0, got {self.crop!r}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is None:
                continue
            value = [float(v) for v in value]
            setattr(self, key, value)
            if len(value) != self.channels:
                raise error(f"{where}: {key} needs one value per channel ({self.channels}), got {len(value)}")
            if key == "std" and not all(v > 0 for v in value):
                raise error(f"{where}: std values must be > 0, got {value}")
            if not all(math.isfinite(v) for v in value):
                raise error(f"{where}: {key} values must be finite, got {value}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        defaults = {"char_ngrams": None, "max_ngrams": 16, "vocabulary": None, "hash_buckets": None, "pooling": "mean",
                    **IMAGE_OPTIONS}
        for key, default in defaults.items():
            if out[key] == default:  # specs saved before these options existed compare equal
                del out[key]
        return out


@dataclass
class InputSpec:
    """What a model's input encoder needs to know about the encoded features.

    Feature tensors are grouped by type so a batch is a handful of index slices:
    ``numeric`` float32 [B, numeric_dim], ``categorical`` int32 [B, len(cardinalities)],
    ``seq:<name>`` long [B, max_len] (0 = padding), ``dense:<name>`` float [B, *shape] (uint8
    ``[B, C, H, W]`` pixels for an image feature: see ``images``).
    """

    numeric_dim: int = 0
    cardinalities: list[int] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)  # name -> vocabulary size (incl. pad, OOV)
    dense: dict[str, list[int]] = field(default_factory=dict)  # name -> shape
    numeric_names: list[str] = field(default_factory=list)
    categorical_names: list[str] = field(default_factory=list)
    #: sequence features with character n-grams (``char_ngrams``): name -> n-gram vocabulary size
    #: (incl. 0 = padding, 1 = unknown); the tensor ``ngrams:<name>`` is ``[B, max_len, G]``
    #: n-gram ids per token position, aligned with ``seq:<name>``, 0-padded
    ngrams: dict[str, int] = field(default_factory=dict)
    #: sequence feature -> its vocabulary (id ``i + 2`` is ``vocabularies[name][i]``; 0 padding,
    #: 1 unknown). Set while a run is built from data, so an encoder can load pretrained vectors
    #: for its words; not saved (a loaded run's weights already hold them), so it is empty then.
    vocabularies: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)
    #: True for a spec read back from a saved run (:meth:`from_dict`): the run's checkpoint holds
    #: every weight, so encoders skip the files they initialise from while a run is built (the
    #: ``resnet`` encoder's ``weights``). Not saved.
    restored: bool = field(default=False, repr=False, compare=False)
    #: image features (their ``[C, H, W]`` shape is in ``dense``, their uint8 pixels in
    #: ``dense:<name>``): name -> ``{"mean": [C floats], "std": [C floats], "flip": bool,
    #: "crop": int}``, what :class:`polytask.nn.image_input.ImageInputs` (built by every model)
    #: needs to turn the pixels into normalised, augmented float input
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: sequence features pooled other than by their mean (``pooling``): name -> ``sum`` or ``max``
    pooling: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("vocabularies")
        out.pop("restored")
        for key in ("images", "pooling"):  # a run without them saves what it saved before they existed
            if not out[key]:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(**d, restored=True)
