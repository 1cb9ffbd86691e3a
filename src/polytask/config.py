"""Run configuration: YAML validated by pydantic, with ``--set key=value`` overrides.

Sections: ``data`` (a built-in dataset or files, features, tasks), ``model``, ``weighting``,
``optimizer``, ``scheduler``, ``train``. Model, weighting, optimiser and scheduler sections take
``name`` plus that component's own keyword parameters at the same level
(``model: {name: mmoe, num_experts: 8}``); those are checked against the component's signature.
Any unknown key or wrong type is a :class:`~polytask.errors.ConfigError` naming the key; integers,
booleans and floats are strict (``epochs: true`` is refused, not read as 1; ``lr: 1`` is a float),
and a key given twice in one mapping of a YAML file is refused, naming the key and its lines.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from polytask.errors import ConfigError, PolytaskError
from polytask.params import (
    StrictCheck,
    StrictFloat,
    StrictInt,
    format_validation_error,
    strict_scalars,
    validate_params,
)


class _Schema(BaseModel):
    """A config section whose ``int``, ``bool`` and ``float`` fields are strict
    (:func:`~polytask.params.strict_scalars`), however a subclass annotates them."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.__pydantic_fields__
        changed = False
        for name, field in fields.items():
            strict = strict_scalars(field.annotation)
            if strict is not field.annotation and not any(isinstance(m, StrictCheck) for m in field.metadata):
                fields[name] = FieldInfo.merge_field_infos(field, FieldInfo.from_annotation(strict))
                changed = True
        if changed:
            cls.model_rebuild(force=True)


class _Strict(_Schema):
    model_config = ConfigDict(extra="forbid")


class _Named(_Schema):
    """``name`` plus free keyword parameters, validated later against the named component."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FeatureOptions(_Strict):
    """Per-feature options (see :class:`polytask.data.schema.FeatureSpec`); a bare string is
    ``{name: <string>}``. ``name`` may be a column pattern (see :class:`FeaturesConfig`)."""

    name: str
    scale: Literal["standard", "minmax", "none"] | None = None
    log1p: bool = False
    nan: Literal["impute", "error"] = "impute"
    min_count: int = Field(1, ge=1)
    max_len: int = Field(50, ge=1)
    separator: str = "|"
    shape: list[int] | None = None
    char_ngrams: list[Annotated[int, Field(ge=1)]] | None = None
    max_ngrams: int = Field(16, ge=1)
    vocabulary: str | None = None
    hash_buckets: int | None = Field(None, ge=1)
    pooling: Literal["mean", "sum", "max", "attention"] = "mean"
    target: str | None = None
    embedding_dim: int | None = Field(None, ge=1)
    shared_with: str | None = None
    # image features only (FeatureSpec refuses them on another type)
    size: list[Annotated[int, Field(ge=1)]] | Annotated[int, Field(ge=1)] | None = None
    channels: int = 3
    root: str | None = None
    flip: bool = False
    crop: int = Field(0, ge=0)
    mean: list[float] | None = None
    std: list[Annotated[float, Field(gt=0)]] | None = None

    @pydantic.field_validator("channels", mode="after")
    @classmethod
    def _channels(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {value}")
        return value

    @pydantic.field_validator("size", mode="after")
    @classmethod
    def _square(cls, value: Any) -> Any:
        if isinstance(value, int):  # size: 32 is [32, 32]
            return [value, value]
        if value is not None and len(value) != 2:
            raise ValueError(f"size must be [height, width] or one integer, got {value}")
        return value

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict):  # one line naming the key, with what is accepted
            unknown = [k for k in value if k not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} (accepted: {', '.join(cls.model_fields)})")
        return value

    def options(self) -> dict[str, Any]:
        """Every option (``name`` included), defaults filled in."""
        return {k: getattr(self, k) for k in type(self).model_fields}

    def is_pattern(self) -> bool:
        return is_column_pattern(self.name)


def is_column_pattern(name: str) -> bool:
    """``re:<regex>`` or a glob with ``*``, ``?`` or ``[``."""
    return name.startswith("re:") or any(c in name for c in "*?[")


class FeaturesConfig(_Strict):
    """Columns by type; entries are names or option dicts (``{name: amount, log1p: true}``).

    A name may select several columns of the training file: a glob (``"fp*"``, ``"px_[0-9]*"``:
    ``*``, ``?`` and ``[...]`` as in shell patterns) or a regular expression written ``re:<regex>``
    (``"re:^fp_\\d+$"``, matched against the whole column name). A pattern expands to the matching
    columns in file order, with the entry's options for each; one matching no column is an error,
    and a column named explicitly elsewhere is not selected again by a pattern of another type.

    Left empty, types are inferred from the training file (strings -> categorical, strings holding
    the sequence separator ``|`` -> sequence, numbers -> numeric, lists -> sequence/dense),
    skipping every task's label, weight and ``where`` columns, ``exclude`` columns and identifier
    columns (see :func:`polytask.data.sources.infer_features`)."""

    numeric: list[FeatureOptions] = []
    categorical: list[FeatureOptions] = []
    sequence: list[FeatureOptions] = []
    dense: list[FeatureOptions] = []
    #: image file paths or encoded image bytes (see :mod:`polytask.data.images`)
    image: list[FeatureOptions] = []
    exclude: list[str] = []

    def is_empty(self) -> bool:
        return not (self.numeric or self.categorical or self.sequence or self.dense or self.image)


class TaskConfig(_Schema):
    """One task; a bare string ``"click"`` means ``{name: click}`` (a binary task on column click).

    ``kind`` is a registered task kind (``polytask list``); any further key is that kind's own
    option (``num_classes``, ``positive``, ``group``, ``labels``, ...), checked against the kind's
    signature."""

    model_config = ConfigDict(extra="allow")
    name: str
    kind: str = "binary"
    label: str | None = None
    where: str | None = None
    weight: StrictFloat = Field(1.0, ge=0)
    weight_column: str | None = None
    #: the ``data.sources`` entry whose rows carry this task's labels (multi-source runs)
    source: str | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def options(self) -> dict[str, Any]:
        """The kind's own options (every key beyond the common ones), None left out."""
        return {k: v for k, v in (self.model_extra or {}).items() if v is not None}


class SplitConfig(_Strict):
    """How to carve validation/test rows out of ``train`` when those files are not given."""

    validation: StrictFloat = Field(0.1, ge=0, lt=1)
    test: StrictFloat = Field(0.1, ge=0, lt=1)
    seed: StrictInt = 0


class StreamConfig(_Strict):
    """``data.stream``: how a Parquet training set larger than memory is streamed
    (:mod:`polytask.data.streaming`)."""

    #: rows the shuffle buffer holds (its memory is about this many encoded rows); 0: file order
    shuffle_buffer: int = Field(500_000, ge=0)
    #: rows read from a row group and encoded at a time
    read_rows: int = Field(65_536, ge=1)


class DataConfig(_Strict):
    """Where the rows come from: a registered ``dataset``, ``train`` (and optionally
    ``validation``/``test``) files, or ``sources``: several named data sets in one run (each
    entry itself a dataset or files, with its own features and tasks), whose tasks each learn
    from their own source's rows only (JMT: POS and dependencies from a treebank, chunking from
    CoNLL-2000, relatedness from SICK).

    Larger than memory: ``train`` (and ``validation``/``test``) may name a directory of Parquet
    files or a glob (``data/train/*.parquet``); such a training set is **streamed** without further
    settings: the encoders are fitted in one pass over its row groups, and training reads them
    through a bounded shuffle buffer, each ``torchrun`` process its own share of the rows.
    ``stream`` tunes it (``{shuffle_buffer: 500000, read_rows: 65536}``), ``stream: true`` streams
    a single Parquet file too, and ``stream: false`` reads a directory or glob whole (the files
    concatenated in memory). Streamed validation/test splits are evaluated by streaming them. Without
    ``validation``/``test``, whole row groups are carved from the training set by ``split`` (a seeded
    choice of row groups holding about that fraction of the rows)."""

    sources: dict[str, DataConfig] | None = None
    dataset: str | None = None
    params: dict[str, Any] = {}
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    split: SplitConfig = SplitConfig()
    stream: StreamConfig | bool | None = None
    features: FeaturesConfig | None = None
    tasks: list[TaskConfig] | None = None

    @pydantic.model_validator(mode="after")
    def _source(self) -> DataConfig:
        if self.sources is not None:
            if self.dataset is not None or self.train is not None:
                raise ValueError("give data.sources, or data.dataset / data.train, not both")
            if not self.sources:
                raise ValueError("data.sources names no source")
            nested = [n for n, s in self.sources.items() if s.sources is not None]
            if nested:
                raise ValueError(f"data.sources.{nested[0]}: a source cannot have sources of its own")
            for i, t in enumerate(self.tasks or []):
                if t.source not in self.sources:
                    raise ValueError(
                        f"data.tasks.{i} ({t.name!r}): source must name one of data.sources ({', '.join(self.sources)}); "
                        f"got {t.source!r}"
                    )
            return self
        if self.dataset is None and self.train is None:
            raise ValueError("give either data.dataset (a built-in dataset) or data.train (a CSV/Parquet file)")
        if self.dataset is not None and self.train is not None:
            raise ValueError("give data.dataset or data.train, not both")
        if self.dataset is None and not self.tasks:
            raise ValueError("data.tasks is required when training from files")
        return self


class ModelConfig(_Named):
    name: str = "mmoe"


class WeightingConfig(_Named):
    name: str = "equal"


class OptimizerConfig(_Named):
    name: Literal["adam", "adamw", "sgd", "adagrad", "rmsprop"] = "adam"
    lr: StrictFloat = Field(1e-3, gt=0)
    weight_decay: StrictFloat = Field(0.0, ge=0)


class SchedulerConfig(_Named):
    name: Literal["none", "step", "cosine", "exponential", "plateau"] = "none"


def _trainer_settings() -> type[BaseModel]:
    from polytask.train.trainer import Trainer

    return Trainer.settings_model()


class TrainConfig(_trainer_settings()):  # type: ignore[misc]
    """The ``train:`` section. Its keys are the keyword parameters of
    :class:`~polytask.train.trainer.Trainer` (``epochs``, ``batch_size``, ``monitor``, ...: types,
    constraints and defaults read from that signature, see :mod:`polytask.train.settings`), plus
    the settings below, which act around the trainer rather than in it."""

    #: torch's intra-op threads (default: torch's own choice)
    threads: StrictInt | None = Field(None, ge=1)
    #: a run directory whose matching parameters (and feature encoders) this run starts from
    init_from: str | None = None
    #: after init_from: none (fine-tune all), shared (freeze the model's shared modules), loaded;
    #: or, with or without init_from, a list of parameter-name patterns (``["input.trunk.*"]``);
    #: BatchNorm layers left without a trainable parameter stay in eval mode (see
    #: :mod:`polytask.transfer`)
    freeze: Literal["none", "shared", "loaded"] | list[str] = "none"

    @pydantic.field_validator("freeze")
    @classmethod
    def _freeze_needs_init_from(cls, value: str | list[str], info: pydantic.ValidationInfo) -> str | list[str]:
        if isinstance(value, str) and value != "none" and not info.data.get("init_from"):
            raise ValueError(f"freeze {value!r} needs train.init_from (the run to load the frozen parameters from)")
        return value

    @pydantic.field_validator("device")
    @classmethod
    def _device_by_name(cls, value: Any) -> str:
        return str(value)  # a torch.device given in Python is saved by its name

    def trainer_settings(self) -> dict[str, Any]:
        """The keys that are the trainer's keyword arguments: ``Trainer(model, tasks, **these)``."""
        own = TrainConfig.model_fields.keys() - _trainer_settings().model_fields.keys()
        return {k: getattr(self, k) for k in type(self).model_fields if k not in own}


class Config(_Strict):
    """A whole run. ``train.monitor`` is ``mean.relative_loss`` (default: each task's validation
    loss relative to the untrained model's, averaged), ``loss`` (sum of validation task losses),
    ``mean.<metric>`` or ``<task>.<metric>`` (see :class:`polytask.train.trainer.Monitor`)."""

    name: str | None = None
    data: DataConfig
    model: ModelConfig = ModelConfig()
    weighting: WeightingConfig = WeightingConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``None`` is left out only where it is the default, so an explicit
        ``patience: null`` (never stop early) or ``model: {some_param: null}`` survives a round trip."""
        return _drop_default_nones(self, self.model_dump(mode="json"))


def _drop_default_nones(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None and info.default is None:
            dumped.pop(name, None)
        elif isinstance(value, BaseModel):
            _drop_default_nones(value, dumped[name])
        elif isinstance(value, list):
            for item, item_dumped in zip(value, dumped[name]):
                if isinstance(item, BaseModel) and isinstance(item_dumped, dict):  # not one written compactly
                    _drop_default_nones(item, item_dumped)
    return dumped


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping (plain YAML keeps the last value without a word)."""


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-3`` / ``1E+5`` as floats (YAML 1.1 wants ``1.0e-3``) and
    refuses a key given twice in one mapping (:class:`DuplicateKeyError`). Keys brought in by a
    merge (``<<: *defaults``) may be overridden: only the mapping's own keys are compared."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first given on line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _parse_value(text: str, key: str = "") -> Any:
    try:
        return _yaml_load(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"--set {key}: {exc.problem}") from None
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML: ``1e-3``, ``[16, 8]``, ``true``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = _parse_value(value, key.strip())
    return raw


def remove_keys(raw: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Remove dotted keys (``model.num_experts``, or a whole section: ``model``) from ``raw``, in
    place, and return it: what ``--unset`` does, e.g. before ``--set model.name=...`` switches to
    a model that does not take the previous one's keys. A key that is not there is a ConfigError
    naming it and the keys that are (a misspelt key would otherwise be kept silently)."""
    for key in keys:
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--unset {key!r}: expected a dotted key such as model.num_experts")
        node: Any = raw
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            if not isinstance(node, dict):
                raise ConfigError(f"--unset {key}: {'.'.join(parts[:i])} is not a section")
            if part not in node:
                present = ", ".join(map(str, node)) or "none"
                raise ConfigError(f"--unset {key}: {where} is not set (keys there: {present})")
            if i == len(parts) - 1:
                del node[part]
            else:
                node = node[part]
    return raw


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | None = None, unset: list[str] | None = None
) -> Config:
    """Validate ``raw`` after removing the ``unset`` keys (:func:`remove_keys`) and then applying
    the ``overrides`` (:func:`apply_overrides`); the caller's dict is not changed."""
    raw = remove_keys(copy.deepcopy(raw), list(unset or []))  # never edit the caller's dict
    raw = apply_overrides(raw, list(overrides or []))
    try:
        config = Config.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    check_task_kinds(config.data.tasks or [], where="data.tasks")
    return config


def check_task_kinds(tasks: list[TaskConfig], *, where: str) -> None:
    """Each task's kind is registered and its kind-specific keys fit the kind's signature
    (ConfigError naming ``data.tasks.<i>.<key>``)."""
    import polytask.tasks  # noqa: F401 - registers the built-in kinds
    from polytask.registry import TASK_KINDS

    for i, task in enumerate(tasks):
        try:
            cls = TASK_KINDS.get(task.kind)
        except KeyError:
            raise ConfigError(
                f"{where}.{i}.kind: unknown task kind {task.kind!r}; registered: {', '.join(TASK_KINDS.names())}"
            ) from None
        checked = validate_params(cls, task.options(), where=f"{where}.{i}")
        try:
            cls(**checked)  # the values the kind refuses (num_classes: 1, k: 0, ...), before any data is read
        except PolytaskError as exc:
            raise ConfigError(f"{where}.{i}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}.{i} (task {task.name!r}): {exc}") from None


def load_config(
    path: str | os.PathLike, overrides: list[str] | None = None, unset: list[str] | None = None
) -> Config:
    """Read a YAML config file, remove the ``unset`` keys, then apply the overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = _yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:  # one line: where, and what is wrong
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    try:
        return config_from_dict(raw, overrides, unset)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
