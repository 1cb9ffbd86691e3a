"""Feature declarations (what a column is) and the input spec models are built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FeatureType = Literal["numeric", "categorical", "sequence", "dense"]
FEATURE_TYPES: tuple[str, ...] = ("numeric", "categorical", "sequence", "dense")


@dataclass
class FeatureSpec:
    """One input column.

    Args:
        name: column name.
        type: ``numeric`` (float), ``categorical`` (any value, mapped to an integer id),
            ``sequence`` (variable-length list of categorical values, e.g. a behaviour history;
            a list column, or a string split on ``separator``), ``dense`` (fixed-shape float
            tensor per row, e.g. an image, from a list column).
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
        vocabulary: sequence: share the vocabulary (and n-grams) of this other sequence feature,
            fitted on both columns' training values, so the same word has the same id in both
            (the second sentence of a sentence pair).
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

    def __post_init__(self) -> None:
        # only a dense feature's default depends on the data (its shape: resolved when fitted);
        # every other type resolves now, so specs saved before the default existed compare equal
        if self.scale is None and self.type != "dense":
            self.scale = "standard"
        from polytask.errors import ConfigError

        if self.type != "sequence" and (self.char_ngrams or self.vocabulary):
            raise ConfigError(f"feature {self.name!r}: char_ngrams and vocabulary apply to sequence features only")
        if self.char_ngrams is not None and (not self.char_ngrams or min(self.char_ngrams) < 1):
            raise ConfigError(f"feature {self.name!r}: char_ngrams must list n-gram lengths >= 1, got {self.char_ngrams}")
        if self.max_ngrams < 1:
            raise ConfigError(f"feature {self.name!r}: max_ngrams must be >= 1, got {self.max_ngrams}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, default in (("char_ngrams", None), ("max_ngrams", 16), ("vocabulary", None)):
            if out[key] == default:  # specs saved before these options existed compare equal
                del out[key]
        return out


@dataclass
class InputSpec:
    """What a model's input encoder needs to know about the encoded features.

    Feature tensors are grouped by type so a batch is a handful of index slices:
    ``numeric`` float32 [B, numeric_dim], ``categorical`` int32 [B, len(cardinalities)],
    ``seq:<name>`` long [B, max_len] (0 = padding), ``dense:<name>`` float [B, *shape].
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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("vocabularies")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(**d)
