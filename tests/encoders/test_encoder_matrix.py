"""Contract test driven by two registries: every registered architecture x every registered input
encoder, each encoder fed a tiny generated input of the kind it reads (the ``cnn`` encoder also
uint8 pixels of an image column, normalised and augmented inside the model), 1-3 tasks of mixed kinds
(plus a token-level ``tagging`` task with a text encoder), batch size 1 and 3: output shapes
(``[B]``, ``[B, C]``, ``[B, L, C]`` for token tasks), finite outputs, and gradients of the summed
task losses and regularisation terms reaching every parameter.

A newly registered encoder needs an entry in :data:`INPUTS` (the test says so); a newly
registered model runs as it is (hyperparameters in :data:`SMALL` shrink it where it has them).
A model that takes no ``encoder`` (JMT reads its text itself) runs on its own text input instead
(``conftest.TEXT_ONLY_MODELS``), with the same checks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from conftest import SPEC, TEXT_ONLY_SPEC, make_tasks, model_params, model_spec, model_tasks

from polytask.data.schema import InputSpec
from polytask.models import create_model
from polytask.registry import ENCODERS, MODELS
from polytask.tasks import Task

Features = dict[str, torch.Tensor]

IMAGE_SPEC = InputSpec(numeric_dim=1, dense={"image": [1, 12, 12]}, numeric_names=["x"])
TEXT_SPEC = InputSpec(numeric_dim=1, sequences={"text": 9}, numeric_names=["x"])
TEXT_WIDTH = 6
TEXT_LENGTHS = (4, 6, 1)  # real tokens per example: the first and the third have padded positions


def tabular_features(b: int, g: torch.Generator) -> Features:
    return {
        "numeric": torch.randn(b, SPEC.numeric_dim, generator=g),
        "categorical": torch.stack([torch.randint(0, c, (b,), generator=g) for c in SPEC.cardinalities], 1),
        "seq:hist": torch.randint(0, SPEC.sequences["hist"], (b, 5), generator=g),
    }


#: an image column's input: uint8 pixels, normalised and augmented (flip, pad-crop) inside the model
PIXEL_SPEC = InputSpec(numeric_dim=1, dense={"image": [3, 12, 12]}, numeric_names=["x"],
                       images={"image": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "flip": True, "crop": 2}})


def pixel_features(b: int, g: torch.Generator) -> Features:
    return {"dense:image": torch.randint(0, 256, (b, 3, 12, 12), generator=g, dtype=torch.uint8),
            "numeric": torch.randn(b, 1, generator=g)}


def image_features(b: int, g: torch.Generator) -> Features:
    return {"dense:image": torch.rand(b, 1, 12, 12, generator=g), "numeric": torch.randn(b, 1, generator=g)}


def text_features(b: int, g: torch.Generator) -> Features:
    ids = torch.randint(2, TEXT_SPEC.sequences["text"], (b, TEXT_WIDTH), generator=g)
    lengths = torch.tensor([TEXT_LENGTHS[i % len(TEXT_LENGTHS)] for i in range(b)])
    ids[torch.arange(TEXT_WIDTH).unsqueeze(0) >= lengths.unsqueeze(1)] = 0  # left-aligned, 0-padded
    return {"seq:text": ids, "numeric": torch.randn(b, 1, generator=g)}


#: per registered encoder, its input variants: id -> (spec, features(B, generator), encoder_params)
INPUTS: dict[str, dict[str, tuple[InputSpec, Callable[[int, torch.Generator], Features], dict[str, Any]]]] = {
    "tabular": {"tabular": (SPEC, tabular_features, {})},
    "cnn": {"cnn": (IMAGE_SPEC, image_features, {"channels": [4, 8], "kernel_size": 3, "padding": "same", "dim": 8}),
            "cnn-pixels": (PIXEL_SPEC, pixel_features, {"channels": [4], "kernel_size": 3, "padding": "same", "dim": 8})},
    "resnet": {"resnet": (IMAGE_SPEC, image_features, {"stem": "small", "blocks": [1, 1], "widths": [4, 8]})},
    "tokens": {
        "tokens-lstm": (TEXT_SPEC, text_features, {"feature": "text", "kind": "lstm", "dim": 6, "hidden": 3}),
        "tokens-transformer": (TEXT_SPEC, text_features,
                               {"feature": "text", "kind": "transformer", "dim": 6, "heads": 2, "layers": 1}),
    },
}

#: smaller widths where a model has these hyperparameters (its defaults are sized for real data)
SMALL: dict[str, Any] = {
    "num_experts": 2, "expert_hidden": [8], "tower_hidden": [8], "bottom_hidden": [8], "hidden": [8, 8],
    "shared_hidden": [8], "task_hidden": [4], "hidden_size": 4, "attention_dim": 4, "embedding_dim": 2,
}

#: models giving named tasks structural roles (as in tests/models/test_model_contract.py)
ROLES: dict[str, dict[str, str]] = {
    "esmm": {"ctr_task": "role_ctr", "cvr_task": "role_cvr", "ctcvr_task": "role_ctcvr"},
}

#: parameters whose gradient may legitimately be zero: embedding rows of ids absent from the batch
EMBEDDING_NAMES = ("categorical", "sequences", "words", "position_table", "behaviour")



def encoder_cases() -> list:
    cases = []
    for encoder in ENCODERS.names():
        for variant in INPUTS.get(encoder, {encoder: None}):
            cases.append(pytest.param(encoder, variant, id=variant))
    return cases


def takes_an_encoder(name: str) -> bool:
    return "encoder" in inspect.signature(MODELS.get(name)).parameters


def model_cases() -> list:
    return [pytest.param(name, id=name) for name in MODELS.names() if takes_an_encoder(name)]


def own_input_cases() -> list:
    return [pytest.param(name, id=name) for name in MODELS.names() if not takes_an_encoder(name)]


def own_text_features(b: int, g: torch.Generator) -> Features:
    """Left-aligned, 0-padded ids of every text of :data:`TEXT_ONLY_SPEC`: the first text as
    :func:`text_features`; the second 4 wide, the third example of a batch without tokens."""
    out = {"seq:text": text_features(b, g)["seq:text"]}
    for name in TEXT_ONLY_SPEC.sequences:
        if name == "text":
            continue
        ids = torch.randint(2, TEXT_ONLY_SPEC.sequences[name], (b, 4), generator=g)
        lengths = torch.tensor([(3, 4, 0)[i % 3] for i in range(b)])
        ids[torch.arange(4).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
        out[f"seq:{name}"] = ids
    return out


def build(name: str, encoder: str, variant: str, num_tasks: int) -> tuple[Any, list[Task], Callable]:
    if encoder not in INPUTS or variant not in INPUTS[encoder]:
        pytest.fail(f"encoder {encoder!r} is registered but has no input recipe: add one to INPUTS")
    spec, make_features, encoder_params = INPUTS[encoder][variant]
    roles = ROLES.get(name, {})
    tasks = [Task(role) for role in roles.values()] + make_tasks(num_tasks)
    if encoder == "tokens":
        tasks.append(Task("tag", "tagging", tokens="text", num_classes=4, max_len=TEXT_WIDTH))
    accepted = inspect.signature(MODELS.get(name)).parameters
    params: dict[str, Any] = {k: v for k, v in SMALL.items() if k in accepted}
    params.update(encoder=encoder, encoder_params=encoder_params)
    return create_model(name, spec, tasks, {**roles, **params}), tasks, make_features


def labels_for(tasks: list[Task], features: Features, b: int, g: torch.Generator) -> tuple[dict, dict]:
    labels, masks = {}, {}
    for t in tasks:
        if t.level == "token":
            ids = features[f"seq:{t.spec.token_feature}"]
            labels[t.name] = torch.randint(0, t.output_dim, ids.shape, generator=g)
            masks[t.name] = ids > 0
        elif t.kind == "binary":
            labels[t.name] = torch.randint(0, 2, (b,), generator=g).float()
            masks[t.name] = torch.ones(b, dtype=torch.bool)
        elif t.kind == "regression":
            labels[t.name] = torch.randn(b, generator=g)
            masks[t.name] = torch.ones(b, dtype=torch.bool)
        elif t.kind == "multiclass":
            labels[t.name] = torch.randint(0, t.num_classes, (b,), generator=g)
            masks[t.name] = torch.ones(b, dtype=torch.bool)
        else:
            raise AssertionError(f"no label recipe for task kind {t.kind!r}")
    return labels, masks


def test_every_registered_encoder_has_an_input_recipe():
    assert set(ENCODERS.names()) <= set(INPUTS), "add an input recipe to INPUTS for every registered encoder"


@pytest.mark.parametrize("num_tasks", [1, 2, 3])
@pytest.mark.parametrize(("encoder", "variant"), encoder_cases())
@pytest.mark.parametrize("name", model_cases())
def test_every_model_with_every_encoder(name, encoder, variant, num_tasks):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model, tasks, make_features = build(name, encoder, variant, num_tasks)
    model.train()
    for batch_size in (1, 3):  # one model, two batches: building dominates the cost
        model.zero_grad(set_to_none=True)
        check_batch(model, tasks, make_features(batch_size, g), batch_size, g, f"{name} with {variant}, B={batch_size}")


@pytest.mark.parametrize("num_tasks", [1, 2, 3])
@pytest.mark.parametrize("name", own_input_cases())
def test_every_model_that_reads_its_own_input(name, num_tasks):
    """Models without an ``encoder`` (JMT) on their own text input: a tagging task on the text and
    generated row-level tasks, batch sizes 1 and 3, padded positions and an example without tokens."""
    assert model_spec(name) is TEXT_ONLY_SPEC, f"add {name!r} to conftest.TEXT_ONLY_MODELS"
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    roles = ROLES.get(name, {})
    tasks = [Task(role) for role in roles.values()] + model_tasks(name, num_tasks)
    model = create_model(name, TEXT_ONLY_SPEC, tasks, {**roles, **model_params(name)})
    model.train()
    for batch_size in (1, 3):
        model.zero_grad(set_to_none=True)
        check_batch(model, tasks, own_text_features(batch_size, g), batch_size, g, f"{name}, B={batch_size}")


def check_batch(model: Any, tasks: list[Task], features: Features, batch_size: int, g: torch.Generator, case: str) -> None:
    """Output shapes and finiteness, then gradients of the loss at every parameter."""
    labels, masks = labels_for(tasks, features, batch_size, g)
    out = model(features)
    assert set(out) == {t.name for t in tasks}
    for t in tasks:
        expected: tuple[int, ...] = (batch_size,)
        if t.level == "token":
            expected += (features[f"seq:{t.spec.token_feature}"].shape[1],)
        if not (t.spec.scalar_output and t.output_dim == 1):
            expected += (t.output_dim,)
        assert tuple(out[t.name].shape) == expected, (case, t.name, t.kind)
        assert torch.isfinite(out[t.name]).all(), (case, t.name)
    trained = model.loss_task_names()
    loss = sum(t.loss(out[t.name], labels[t.name], masks[t.name]) for t in tasks if t.name in trained)
    loss = loss + sum(model.regularization().values(), torch.zeros(()))
    assert torch.isfinite(loss), case
    loss.backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{case}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{case}: non-finite gradient at {pname}"
        if not any(part in pname for part in EMBEDDING_NAMES):
            assert p.grad.abs().sum() > 0, f"{case}: zero gradient at {pname}"


@pytest.mark.parametrize("name", model_cases())
def test_token_tasks_need_an_encoder_with_token_rows(name):
    roles = ROLES.get(name, {})
    tasks = [Task(role) for role in roles.values()] + [Task("tag", "tagging", tokens="text", num_classes=3)]
    with pytest.raises(ValueError, match="token-level task"):
        create_model(name, TEXT_SPEC, tasks, roles)
