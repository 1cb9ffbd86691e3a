"""Configuration: YAML loading, ``--set`` overrides, defaults, component parameters, validation
errors that name the dotted key, and the ``to_dict`` round trip a run directory relies on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from polytask.config import Config, ConfigError, apply_overrides, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[1]
CENSUS_CONFIG = REPO / "configs" / "census_mmoe.yaml"

FILES = {"train": "train.csv", "tasks": [{"name": "click"}]}


def minimal(**sections) -> dict:
    return {"data": {"dataset": "census_income"}, **sections}


# -- YAML -------------------------------------------------------------------------------------------
def test_load_census_config():
    cfg = load_config(CENSUS_CONFIG)
    raw = yaml.safe_load(CENSUS_CONFIG.read_text())
    assert cfg.name == raw["name"] == "census-mmoe"
    assert cfg.data.dataset == "census_income"
    assert cfg.data.params == {"group": 1, "split_seed": 0}
    assert cfg.model.name == "mmoe"
    assert cfg.model.params() == {"num_experts": 8, "expert_hidden": [16], "tower_hidden": [8], "embedding_dim": 4}
    assert cfg.weighting.name == "equal" and cfg.weighting.params() == {}
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.001
    assert cfg.train.epochs == 40 and cfg.train.batch_size == 1024 and cfg.train.patience == 5
    assert cfg.train.monitor == "income.auc" and cfg.train.seed == 0


def test_yaml_scientific_notation_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {dataset: census_income}\noptimizer: {name: adam, lr: 1e-3, eps: 1e-8}\nmodel: {dropout: 5E-1}\n")
    cfg = load_config(path)
    assert cfg.optimizer.lr == pytest.approx(1e-3)
    # component parameters are not typed by the config: they must already be numbers here
    assert cfg.optimizer.params() == {"eps": 1e-8} and isinstance(cfg.optimizer.params()["eps"], float)
    assert cfg.model.params() == {"dropout": 0.5}


def test_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml") as info:
        load_config(bad)
    assert len(str(info.value).splitlines()) == 1
    listy = tmp_path / "list.yaml"
    listy.write_text("- data\n- model\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_config(listy)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="data"):  # an empty file lacks the data section
        load_config(empty)


def test_errors_in_a_file_name_file_and_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("data: {dataset: census_income}\ntrain: {epochs: 3, paitence: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "typo.yaml" in str(info.value) and "train.paitence" in str(info.value)


# -- overrides --------------------------------------------------------------------------------------
def test_overrides_nested_lists_booleans_floats():
    cfg = load_config(
        CENSUS_CONFIG,
        [
            "model.num_experts=4",
            "model.expert_hidden=[16, 8]",
            "train.progress=false",
            "train.patience=null",
            "optimizer.lr=3e-4",
            "optimizer.eps=1e-8",
            "optimizer.weight_decay=0.01",
            "data.params.max_rows=3000",
            "data.params.split_seed=7",
            "scheduler.name=cosine",
            "name=my run = v2",
            "train.monitor=never_married.logloss",
        ],
    )
    assert cfg.model.params()["num_experts"] == 4
    assert cfg.model.params()["expert_hidden"] == [16, 8]
    assert cfg.model.params()["tower_hidden"] == [8]  # untouched keys stay
    assert cfg.train.progress is False
    assert cfg.train.patience is None
    assert cfg.optimizer.lr == pytest.approx(3e-4) and isinstance(cfg.optimizer.lr, float)
    assert cfg.optimizer.params() == {"eps": 1e-8}
    assert cfg.optimizer.weight_decay == pytest.approx(0.01)
    assert cfg.data.params == {"group": 1, "split_seed": 7, "max_rows": 3000}
    assert cfg.scheduler.name == "cosine"
    assert cfg.name == "my run = v2"  # only the first '=' splits
    assert cfg.train.monitor == "never_married.logloss"


def test_override_values_parse_as_yaml():
    raw = apply_overrides({}, ["a.int=3", "a.float=0.5", "a.sci=1e-4", "a.bool=true", "a.null=null",
                               "a.list=[1, 2]", "a.map={x: 1}", "a.str=hello", "a.quoted='3'"])
    assert raw == {"a": {"int": 3, "float": 0.5, "sci": 1e-4, "bool": True, "null": None, "list": [1, 2],
                         "map": {"x": 1}, "str": "hello", "quoted": "3"}}


def test_override_errors():
    with pytest.raises(ConfigError, match="model.num_experts"):
        config_from_dict(minimal(), ["model.num_experts"])  # no '='
    with pytest.raises(ConfigError, match="model.name"):
        config_from_dict(minimal(), ["model.name.depth=2"])  # a value is not a section


def test_overrides_do_not_change_the_callers_dict():
    raw = minimal(train={"epochs": 3}, model={"name": "mmoe", "expert_hidden": [16]})
    before = copy.deepcopy(raw)
    cfg = config_from_dict(raw, ["train.epochs=5", "model.expert_hidden=[4]", "data.params.group=2"])
    assert cfg.train.epochs == 5 and cfg.model.params()["expert_hidden"] == [4]
    assert raw == before


# -- defaults and component parameters ----------------------------------------------------------------
def test_defaults_filled_in():
    cfg = config_from_dict(minimal())
    assert cfg.model.name == "mmoe" and cfg.model.params() == {}
    assert cfg.weighting.name == "equal"
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 1e-3 and cfg.optimizer.weight_decay == 0.0
    assert cfg.scheduler.name == "none"
    t = cfg.train
    assert (t.epochs, t.batch_size, t.eval_batch_size, t.patience, t.monitor, t.seed, t.device, t.progress) == (
        20, 1024, 8192, 5, "mean.relative_loss", 0, "auto", True
    )
    assert cfg.data.split.validation == 0.1 and cfg.data.split.test == 0.1 and cfg.data.split.seed == 0
    d = cfg.to_dict()
    assert set(d) >= {"data", "model", "weighting", "optimizer", "scheduler", "train"}
    assert d["train"]["eval_batch_size"] == 8192


def test_task_defaults():
    cfg = config_from_dict({"data": {**FILES, "tasks": [{"name": "click"}, {"name": "spend", "kind": "regression"}]}})
    click, spend = cfg.data.tasks
    assert click.kind == "binary" and click.label is None and click.weight == 1.0 and click.where is None
    assert spend.kind == "regression"


def test_component_extra_keys_are_params():
    cfg = config_from_dict(
        minimal(
            model={"name": "shared_bottom", "bottom_hidden": [32], "dropout": 0.1},
            weighting={"name": "fixed", "weights": {"income": 2.0, "never_married": 1.0}},
            optimizer={"name": "adamw", "lr": 0.01, "betas": [0.9, 0.99]},
            scheduler={"name": "step", "step_size": 3},
        )
    )
    assert cfg.model.name == "shared_bottom"
    assert cfg.model.params() == {"bottom_hidden": [32], "dropout": 0.1}
    assert cfg.weighting.params() == {"weights": {"income": 2.0, "never_married": 1.0}}
    assert cfg.optimizer.params() == {"betas": [0.9, 0.99]}  # lr/weight_decay/name are fields, not params
    assert cfg.optimizer.lr == 0.01
    assert cfg.scheduler.params() == {"step_size": 3}


# -- validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, key",
    [
        (minimal(foo=1), "foo"),
        (minimal(train={"epochz": 3}), "train.epochz"),
        ({"data": {"dataset": "census_income", "sourse": "x"}}, "data.sourse"),
        ({"data": {"dataset": "census_income", "split": {"valid": 0.2}}}, "data.split.valid"),
        ({"data": {**FILES, "features": {"numerc": ["age"]}}}, "data.features.numerc"),
        ({"data": {**FILES, "tasks": [{"name": "click", "kindd": "binary"}]}}, "data.tasks.0.kindd"),
        ({"data": {**FILES, "features": {"numeric": [{"name": "age", "scal": "none"}]}}}, "scal"),
    ],
)
def test_unknown_keys_rejected_with_dotted_path(raw, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    message = str(info.value)
    assert key in message and "unknown key" in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("train.batch_size=[1]", "train.batch_size"),
        ("train.progress=maybe", "train.progress"),
        ("optimizer.name=adamax", "optimizer.name"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("scheduler.name=linear", "scheduler.name"),
        ("data.split.validation=1.5", "data.split.validation"),
        ("model=mmoe", "model"),
    ],
)
def test_wrong_types_and_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(minimal(), [override])
    assert f"{key}:" in str(info.value)


def test_task_kind_is_checked():
    with pytest.raises(ConfigError, match=r"data\.tasks\.0\.kind"):
        config_from_dict({"data": {**FILES, "tasks": [{"name": "click", "kind": "rankingg"}]}})
    with pytest.raises(ConfigError, match=r"data\.tasks\.0\.num_clases: unknown key"):
        config_from_dict({"data": {**FILES, "tasks": [{"name": "c", "kind": "multiclass", "num_clases": 3}]}})


def test_data_section_dataset_vs_train_file():
    with pytest.raises(ConfigError, match="data"):
        config_from_dict({})  # no data section
    with pytest.raises(ConfigError, match="data.dataset") as info:
        config_from_dict({"data": {}})
    assert "data.train" in str(info.value)
    with pytest.raises(ConfigError, match="not both"):
        config_from_dict({"data": {"dataset": "census_income", **FILES}})
    with pytest.raises(ConfigError, match="data.tasks"):
        config_from_dict({"data": {"train": "train.csv"}})
    # each alone is fine
    assert config_from_dict({"data": {"dataset": "census_income"}}).data.train is None
    cfg = config_from_dict({"data": {**FILES, "validation": "v.parquet"}})
    assert cfg.data.dataset is None and cfg.data.train == "train.csv" and cfg.data.validation == "v.parquet"


def test_many_problems_listed_one_per_line():
    with pytest.raises(ConfigError) as info:
        config_from_dict(minimal(train={"epochs": "x", "batchsize": 3}))
    message = str(info.value)
    assert "train.epochs" in message and "train.batchsize" in message


# -- round trip --------------------------------------------------------------------------------------
ROUND_TRIP = [
    load_config(CENSUS_CONFIG).to_dict(),
    minimal(train={"patience": None, "threads": 2, "grad_clip": 1.0}),
    minimal(model={"name": "mmoe", "gate_bias": None, "expert_hidden": [16, 8]}),
    {
        "name": "files",
        "data": {
            "train": "train.parquet",
            "validation": "valid.parquet",
            "split": {"validation": 0.0, "test": 0.2, "seed": 3},
            "features": {"numeric": ["age", {"name": "income", "log1p": True, "scale": "minmax"}],
                         "categorical": ["city"], "exclude": ["uid"]},
            "tasks": [{"name": "click"}, {"name": "buy", "where": "click == 1", "weight": 2.0},
                      {"name": "spend", "kind": "regression", "label": "amount"},
                      {"name": "genre", "kind": "multiclass", "num_classes": 3}],
        },
        "weighting": {"name": "fixed", "weights": {"click": 1.0, "buy": 2.0}},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "scheduler": {"name": "step", "step_size": 2},
        "train": {"epochs": 3, "monitor": "buy.auc", "progress": False},
    },
]


@pytest.mark.parametrize("raw", ROUND_TRIP, ids=["census", "none-values", "model-none-param", "files"])
def test_to_dict_round_trip(raw):
    cfg = config_from_dict(copy.deepcopy(raw))
    d = cfg.to_dict()
    json.dumps(d)  # plain data
    assert config_from_dict(d) == cfg
    assert config_from_dict(d).to_dict() == d
    # through YAML, as config.yaml in a run directory
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(d, sort_keys=False)))
    assert again == cfg and again.to_dict() == d


def test_round_trip_keeps_explicit_none():
    cfg = config_from_dict(minimal(train={"patience": None}, model={"name": "mmoe", "gate_bias": None}))
    d = cfg.to_dict()
    assert d["train"]["patience"] is None  # never stop early, not the default 5
    assert config_from_dict(d).train.patience is None
    assert "gate_bias" in config_from_dict(d).model.params()
    # None that is the default is left out
    assert "threads" not in d["train"] and "grad_clip" not in d["train"] and "name" not in d


def test_config_is_a_pydantic_model_with_strict_sections():
    assert isinstance(config_from_dict(minimal()), Config)
    with pytest.raises(ConfigError):
        config_from_dict(minimal(), ["train.seed=1.5"])


def test_a_task_can_be_given_by_name_alone():
    cfg = config_from_dict({"data": {**FILES, "tasks": ["click", {"name": "spend", "kind": "regression"}]}})
    assert [(t.name, t.kind) for t in cfg.data.tasks] == [("click", "binary"), ("spend", "regression")]
