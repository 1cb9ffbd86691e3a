"""Feature declarations (what a column is) and the input spec models are built from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FeatureType = Literal["numeric", "categorical", "sequence", "dense", "image"]
FEATURE_TYPES: tuple[str, ...] = ("numeric", "categorical", "sequence", "dense", "image")
POOLINGS: tuple[str, ...] = ("mean", "sum", "max", "attention")

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
            vector: ``mean`` (default), ``sum`` (keeps how long the history is), ``max`` (per
            dimension) or ``attention`` (each item weighted by how well it matches ``target``'s
            embedding, Deep Interest Network: :mod:`polytask.nn.target_attention`); padding is
            left out, an empty sequence gives zeros.
        target: sequence with ``pooling: attention``: the categorical feature (e.g. the
            candidate item) its items are compared with; it must share this feature's vocabulary
            and embedding table (``shared_with``, either way round), so that the comparison is
            between vectors of the same items.
        embedding_dim: categorical/sequence, in the ``tabular`` encoder: this feature's embedding
            width, in place of the model's ``embedding_dim`` (wide for many ids, narrow for few).
        shared_with: categorical/sequence: use the vocabulary and the embedding table of this
            other categorical or sequence feature (fitted on both columns' training values), so
            the same value is the same vector in both: a clicked-items history ``shared_with``
            the candidate ``item_id``. Both must have the same ``min_count`` and
            ``embedding_dim``; two categorical features may share with the same
            ``hash_buckets`` (their hashed ids already agree), one hashed side alone is refused.
            Ids keep each type's convention (categorical ``0`` unknown, ``1..K`` the values;
            sequence ``0`` padding, ``1`` unknown, ``2..K+1`` the values, so a value's sequence
            id is its categorical id + 1); the shared table is indexed by the categorical id.
            Unlike ``vocabulary`` (sequence features only, for the two sentences of a text pair,
            which the text encoders embed with tables of their own), ``shared_with`` shares the
            table too.
        hash_buckets: categorical: no vocabulary; every value (seen in training or not) maps to
            one of this many ids by a stable hash of its text (the hashing trick, Weinberger et al.,
            ICML 2009), for ids too many to list (user or item ids); colliding values share an
            embedding. Missing values keep the OOV id 0.
        vocabulary: sequence: share the vocabulary (and n-grams) of this other sequence feature,
            fitted on both columns' training values, so the same word has the same id in both
            (the second sentence of a sentence pair); each keeps its own embedding table in the
            ``tabular`` encoder (``shared_with`` shares the table as well).
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
    pooling: Literal["mean", "sum", "max", "attention"] = "mean"
    target: str | None = None
    embedding_dim: int | None = None
    shared_with: str | None = None
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
        if self.pooling not in POOLINGS:
            raise ConfigError(f"feature {self.name!r}: pooling must be {', '.join(POOLINGS[:-1])} or {POOLINGS[-1]}, got {self.pooling!r}")
        if (self.pooling == "attention") != (self.target is not None):
            raise ConfigError(f"feature {self.name!r}: pooling: attention and target go together (target names the feature "
                              f"its items are compared with)")
        if self.embedding_dim is not None:
            if self.type not in ("categorical", "sequence"):
                raise ConfigError(f"feature {self.name!r}: embedding_dim applies to categorical and sequence features only")
            if isinstance(self.embedding_dim, bool) or not isinstance(self.embedding_dim, int) or self.embedding_dim < 1:
                raise ConfigError(f"feature {self.name!r}: embedding_dim must be an integer >= 1, got {self.embedding_dim!r}")
        if self.shared_with is not None:
            if self.type not in ("categorical", "sequence"):
                raise ConfigError(f"feature {self.name!r}: shared_with applies to categorical and sequence features only")
            if self.shared_with == self.name:
                raise ConfigError(f"feature {self.name!r}: shared_with names the feature itself")
            if self.vocabulary is not None or self.char_ngrams:
                raise ConfigError(f"feature {self.name!r}: shared_with does not combine with vocabulary or char_ngrams "
                                  f"(text features share a vocabulary with vocabulary:)")
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
                    "target": None, "embedding_dim": None, "shared_with": None, **IMAGE_OPTIONS}
        for key, default in defaults.items():
            if out[key] == default:  # specs saved before these options existed compare equal
                del out[key]
        return out


def shared_groups(features: list[FeatureSpec]) -> dict[str, list[FeatureSpec]]:
    """Check ``shared_with`` and attention ``target`` across ``features`` (ConfigError naming the
    feature and key) and return each shared vocabulary: the feature named by ``shared_with`` ->
    that feature, then the features sharing it, in declaration order."""
    from polytask.errors import ConfigError

    by_name = {f.name: f for f in features}
    groups: dict[str, list[FeatureSpec]] = {}
    for f in features:
        if f.shared_with is None:
            continue
        where = f"feature {f.name!r}: shared_with {f.shared_with!r}"
        root = by_name.get(f.shared_with)
        if root is None or root.type not in ("categorical", "sequence"):
            raise ConfigError(f"{where} is not a declared categorical or sequence feature")
        if root.shared_with is not None:
            raise ConfigError(f"{where}, which shares the vocabulary of {root.shared_with!r}: name {root.shared_with!r} directly")
        for text in (f, root):
            if text.char_ngrams or text.vocabulary is not None or any(g.vocabulary == text.name for g in features):
                raise ConfigError(f"{where}: {text.name!r} is a text feature (vocabulary or char_ngrams), which "
                                  f"shared_with does not combine with")
        if f.min_count != root.min_count:
            raise ConfigError(f"{where}: one vocabulary, so min_count must be the same ({f.min_count} vs {root.min_count})")
        if f.hash_buckets != root.hash_buckets:
            raise ConfigError(f"{where}: hash_buckets must be on both (the same count) or on neither "
                              f"({f.hash_buckets} vs {root.hash_buckets})")
        groups.setdefault(root.name, [root]).append(f)
    for group in groups.values():
        dims = {g.embedding_dim for g in group} - {None}
        if len(dims) > 1:
            raise ConfigError(f"feature {group[1].name!r}: shared_with {group[0].name!r}: one embedding table, so "
                              f"embedding_dim must be the same on both (got {', '.join(map(str, sorted(dims)))})")
    for f in features:
        if f.target is None:
            continue
        target = by_name.get(f.target)
        if target is None or target.type != "categorical" or (target.shared_with or target.name) != (f.shared_with or f.name):
            raise ConfigError(
                f"feature {f.name!r}: pooling: attention compares its items with target {f.target!r}, which must be a "
                f"declared categorical feature sharing its vocabulary (shared_with, either way round)"
            )
    return groups


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
    #: sequence features pooled other than by their mean (``pooling``): name -> ``sum``, ``max``
    #: or ``attention``
    pooling: dict[str, str] = field(default_factory=dict)
    #: sequence features pooled by ``attention``: name -> the categorical feature it attends from
    targets: dict[str, str] = field(default_factory=dict)
    #: categorical and sequence features with an embedding width of their own: name -> width
    embedding_dims: dict[str, int] = field(default_factory=dict)
    #: ``shared_with``: feature -> the feature whose vocabulary and embedding table it uses (a
    #: value's sequence id is its categorical id + 1: see :class:`FeatureSpec`)
    shared: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("vocabularies")
        out.pop("restored")
        for key in ("images", "pooling", "targets", "embedding_dims", "shared"):  # a run without them saves what it saved before they existed
            if not out[key]:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(**d, restored=True)
