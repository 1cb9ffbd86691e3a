"""Strict configuration: a key given twice in a YAML file is refused (naming the key and its
lines), integers and booleans are not taken for each other anywhere a config is checked (the config
sections, the trainer's settings, the signature-derived component parameters), and ``remove_keys``
takes keys out of a config (what ``--unset`` does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polytask.config import ConfigError, apply_overrides, config_from_dict, load_config, remove_keys
from polytask.params import strict_scalars, validate_params

REPO = Path(__file__).resolve().parents[1]
CENSUS_CONFIG = REPO / "configs" / "census_mmoe.yaml"
RAW = {"data": {"dataset": "census_income"}}


# -- duplicate keys ---------------------------------------------------------------------------------
def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data:\n  dataset: census_income\ntrain:\n  epochs: 3\n  batch_size: 64\n  epochs: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "duplicate key 'epochs'" in message
    assert "line 6" in message and "first given on line 4" in message


def test_a_duplicate_section_and_a_duplicate_in_a_list_item_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data:\n  dataset: census_income\nmodel:\n  name: mmoe\nmodel:\n  name: ple\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'model' \(first given on line 3\)"):
        load_config(path)
    path.write_text("data:\n  train: t.csv\n  tasks:\n    - name: a\n      kind: binary\n      name: b\n")
    with pytest.raises(ConfigError, match=r"line 6.*duplicate key 'name'"):
        load_config(path)


def test_merge_keys_may_be_overridden_and_equal_values_at_other_levels_are_fine(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "base: &base {epochs: 3, batch_size: 64}\n"
        "data: {dataset: census_income}\n"
        "train:\n  <<: *base\n  epochs: 5\n"
    )
    raw = load_config.__globals__["_yaml_load"](path.read_text())
    assert raw["train"] == {"epochs": 5, "batch_size": 64}
    # the same key in two different mappings is not a duplicate
    path.write_text("data: {dataset: census_income, params: {seed: 1}}\ntrain: {seed: 2}\n")
    assert load_config(path).train.seed == 2


def test_a_duplicate_key_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match=r"--set data.params: duplicate key 'group'"):
        apply_overrides({}, ["data.params={group: 1, group: 2}"])


# -- strict integers and booleans -------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=true", "train.epochs"),
        ("train.batch_size=2.0", "train.batch_size"),
        ("train.progress=1", "train.progress"),
        ("train.patience=false", "train.patience"),
        ("train.threads=true", "train.threads"),
        ("train.min_delta=true", "train.min_delta"),
        ("data.split.seed=true", "data.split.seed"),
        ("data.split.validation=true", "data.split.validation"),
        ("optimizer.lr=true", "optimizer.lr"),
        ("optimizer.weight_decay='0.1'", "optimizer.weight_decay"),
    ],
)
def test_config_sections_refuse_a_bool_for_a_number_and_a_number_for_a_bool(override, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(RAW, [override])
    assert str(info.value).startswith(f"invalid configuration: {key}: expected")


def test_a_task_weight_is_a_number_not_a_bool():
    raw = {"data": {"train": "t.csv", "tasks": [{"name": "a", "weight": True}]}}
    with pytest.raises(ConfigError, match=r"data.tasks.0.weight: expected a number, got True"):
        config_from_dict(raw)


def test_floats_take_integers_and_integers_come_from_set_as_integers():
    cfg = config_from_dict(RAW, ["optimizer.lr=1", "train.epochs=2", "train.progress=false", "train.l2=0"])
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.train.epochs == 2 and cfg.train.progress is False and cfg.train.l2 == 0.0


def test_component_parameters_from_signatures_are_strict():
    def build(*, num_experts: int = 8, dropout: float = 0.0, residual: bool = False,
              hidden: list[int] | None = None, size: int | None = None) -> None: ...

    ok = validate_params(build, {"num_experts": np.int64(4), "dropout": 1, "residual": True, "hidden": [16, 8]},
                         where="model")
    assert ok == {"num_experts": 4, "dropout": 1.0, "residual": True, "hidden": [16, 8]}
    assert type(ok["num_experts"]) is int
    for params, key in [({"num_experts": True}, "model.num_experts"), ({"residual": 1}, "model.residual"),
                        ({"dropout": True}, "model.dropout"), ({"hidden": [16, True]}, "model.hidden.1"),
                        ({"size": "3"}, "model.size"), ({"num_experts": 8.0}, "model.num_experts")]:
        with pytest.raises(ConfigError) as info:
            validate_params(build, params, where="model")
        assert f"{key}: expected" in str(info.value), str(info.value)


def test_real_components_refuse_bools_through_the_config():
    from polytask.models import create_model
    from polytask.data.schema import InputSpec
    from polytask.tasks import Task

    tasks = [Task("a", kind="binary"), Task("b", kind="binary")]
    with pytest.raises(ConfigError, match=r"model.num_experts: expected an integer, got True"):
        create_model("mmoe", InputSpec(numeric_dim=3), tasks, {"num_experts": True})
    with pytest.raises(ConfigError, match=r"data.tasks.0.num_classes: expected an integer"):
        config_from_dict({"data": {"train": "t.csv", "tasks": [{"name": "a", "kind": "multiclass",
                                                                 "num_classes": True}]}})


def test_strict_scalars_keeps_constraints_and_leaves_other_types():
    from typing import Annotated, Literal

    from pydantic import Field, TypeAdapter

    positive = TypeAdapter(strict_scalars(Annotated[int, Field(ge=1)] | None))
    assert positive.validate_python(3) == 3 and positive.validate_python(None) is None
    with pytest.raises(Exception, match="greater than or equal to 1"):
        positive.validate_python(0)
    assert strict_scalars(str) is str and strict_scalars(Literal["a", "b"]) == Literal["a", "b"]
    assert TypeAdapter(strict_scalars(dict[str, float])).validate_python({"x": 2}) == {"x": 2.0}


# -- remove_keys (--unset) --------------------------------------------------------------------------
def test_remove_keys_lets_the_command_line_switch_models():
    # --set alone keeps the previous model's keys (which shared_bottom refuses when it is built)
    assert "num_experts" in load_config(CENSUS_CONFIG, ["model.name=shared_bottom"]).model.params()
    cfg = load_config(CENSUS_CONFIG, ["model.name=shared_bottom", "model.bottom_hidden=[8]"], unset=["model"])
    assert cfg.model.name == "shared_bottom" and cfg.model.params() == {"bottom_hidden": [8]}
    cfg = load_config(CENSUS_CONFIG, ["model.name=ple"], unset=["model.num_experts", "model.expert_hidden"])
    assert cfg.model.params() == {"tower_hidden": [8], "embedding_dim": 4}


def test_remove_keys_edits_in_place_and_refuses_what_is_not_there():
    raw = {"model": {"name": "mmoe", "num_experts": 8}, "train": {"epochs": 3}}
    assert remove_keys(raw, ["model.num_experts", "train"]) is raw
    assert raw == {"model": {"name": "mmoe"}}
    with pytest.raises(ConfigError, match=r"--unset model.num_expertz: model.num_expertz is not set \(keys there: name\)"):
        remove_keys(raw, ["model.num_expertz"])
    with pytest.raises(ConfigError, match=r"--unset model.name.x: model.name is not a section"):
        remove_keys(raw, ["model.name.x"])
    with pytest.raises(ConfigError, match="expected a dotted key"):
        remove_keys(raw, ["model."])


def test_config_from_dict_removes_before_it_sets_and_leaves_the_callers_dict():
    raw = {"data": {"dataset": "census_income"}, "model": {"name": "mmoe", "num_experts": 8}}
    cfg = config_from_dict(raw, ["model.name=cross_stitch"], unset=["model"])
    assert cfg.model.name == "cross_stitch" and cfg.model.params() == {}
    assert raw["model"] == {"name": "mmoe", "num_experts": 8}


def test_every_config_section_is_strict_however_it_annotates_its_fields():
    """The base of the config sections makes int/bool/float fields strict, so a section added
    later (or the feature options) cannot forget it."""
    features = {"numeric": [{"name": "x", "log1p": 1}], "categorical": [{"name": "c", "min_count": True}]}
    with pytest.raises(ConfigError) as info:
        config_from_dict({"data": {"train": "t.csv", "tasks": ["y"], "features": features}})
    message = str(info.value)
    assert "data.features.numeric.0.log1p: expected true or false, got 1" in message
    assert "data.features.categorical.0.min_count: expected an integer, got True" in message
    ok = config_from_dict({"data": {"train": "t.csv", "tasks": ["y"],
                                    "features": {"numeric": [{"name": "x", "log1p": True, "min_count": 2}]}}})
    assert ok.data.features.numeric[0].min_count == 2
