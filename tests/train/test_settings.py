"""One source for the trainer's settings: the ``train:`` config section is derived from
``Trainer.__init__``'s keyword parameters, so a keyword added to the trainer is a config key (with
its type, constraint and default) without a second declaration, and the same constraint checks a
config value and a Python argument."""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest
import torch
from pydantic import Field

from polytask.config import TrainConfig, config_from_dict
from polytask.data.schema import InputSpec
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task
from polytask.train.settings import check_settings, settings_fields
from polytask.train.trainer import NOT_SETTINGS, Trainer

TASKS = [Task("a", kind="binary"), Task("b", kind="regression")]
SPEC = InputSpec(numeric_dim=4)
#: train: keys that act around the trainer, declared in config.py
CONFIG_ONLY = {"threads", "init_from", "freeze"}
RAW = {"data": {"dataset": "census_income"}}


def _keywords(cls: type) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_every_trainer_keyword_is_a_train_key_with_the_same_default():
    keywords = _keywords(Trainer)
    assert NOT_SETTINGS <= set(keywords), "NOT_SETTINGS names a keyword the trainer does not have"
    fields = TrainConfig.model_fields
    for name, p in keywords.items():
        if name in NOT_SETTINGS:
            assert name not in fields
            continue
        assert name in fields, f"Trainer keyword {name!r} is not a train: key"
        assert fields[name].default == p.default, name
    assert set(fields) == (set(keywords) - NOT_SETTINGS) | CONFIG_ONLY
    # the keyword the hand-written schema used to miss
    assert config_from_dict({**RAW, "train": {"probe_rows": 100}}).train.probe_rows == 100


def test_a_keyword_added_to_a_trainer_becomes_a_setting_with_its_constraint():
    class Warm(Trainer):
        def __init__(self, model, tasks, *, warmup: Annotated[int, Field(ge=0)] = 3, label: str = "x",
                     hook: object = None) -> None:
            super().__init__(model, tasks)

    fields = settings_fields(Warm.__init__, exclude={"hook"})
    assert set(fields) == {"warmup", "label"} and fields["warmup"][1] == 3
    assert check_settings(Warm.__init__, {"hook"}, {"warmup": 2}) == {"warmup": 2}
    with pytest.raises(ConfigError, match=r"train\.warmup: expected an integer, got '2'"):
        check_settings(Warm.__init__, {"hook"}, {"warmup": "2"})
    with pytest.raises(ConfigError, match=r"train\.warmup: .*greater than or equal to 0"):
        check_settings(Warm.__init__, {"hook"}, {"warmup": -1})
    with pytest.raises(ConfigError, match=r"train\.hook: unknown key"):
        check_settings(Warm.__init__, {"hook"}, {"hook": 1})


def test_a_keyword_without_default_cannot_be_a_setting():
    def init(self, model, tasks, *, epochs: int) -> None: ...

    with pytest.raises(TypeError, match="'epochs' has no default"):
        settings_fields(init)


@pytest.mark.parametrize(
    "key, value",
    [("epochs", 0), ("accumulate", 0), ("amp", "fp8"), ("patience", 0), ("l2", -1.0), ("grad_clip", 0.0),
     ("probe_rows", 0), ("batch_size", "many")],
)
def test_config_and_trainer_reject_the_same_values_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"train\.{key}:"):
        config_from_dict(RAW, [f"train.{key}={value}"])
    model = create_model("shared_bottom", SPEC, TASKS)
    with pytest.raises(ConfigError, match=rf"train\.{key}:"):
        Trainer(model, TASKS, device="cpu", progress=False, **{key: value})


def test_trainer_keywords_are_strict_like_config_values():
    import numpy as np

    model = create_model("shared_bottom", SPEC, TASKS)
    trainer = Trainer(model, TASKS, device=torch.device("cpu"), epochs=np.int64(2), lr=1, progress=False)
    assert trainer.epochs == 2 and type(trainer.epochs) is int and trainer.device == torch.device("cpu")
    for key, value in [("epochs", "2"), ("epochs", True), ("progress", 1), ("min_delta", True), ("seed", 1.0)]:
        with pytest.raises(ConfigError, match=rf"train\.{key}: expected"):
            Trainer(model, TASKS, **{"device": "cpu", "progress": False, key: value})
        with pytest.raises(ConfigError, match=rf"train\.{key}: expected"):
            config_from_dict({**RAW, "train": {key: value}})


def test_train_section_round_trips_and_passes_through():
    cfg = config_from_dict(RAW, ["train.epochs=3", "train.patience=null", "train.threads=2", "train.amp=bf16"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg and again.train.patience is None and again.train.threads == 2
    settings = cfg.train.trainer_settings()
    assert set(settings) == set(_keywords(Trainer)) - NOT_SETTINGS
    assert settings["epochs"] == 3 and settings["amp"] == "bf16" and "threads" not in settings
    # a torch.device given in Python is kept by its name, so the saved config stays plain YAML
    assert TrainConfig(device=torch.device("cpu")).device == "cpu"
