"""Contract tests driven by the model registry: every registered model, 1-3 tasks of mixed kinds,
batch size 1 and more, output shapes, gradients reaching every parameter, declared shared parameters."""

from __future__ import annotations

import pytest
import torch
from conftest import SPEC, TEXT_ONLY_MODELS, make_batch, make_tasks, model_params, model_spec, model_tasks

from polytask.models import MultiTaskModel, create_model
from polytask.registry import MODELS
from polytask.tasks import Task

ALL_MODELS = MODELS.names()

# Models that give named tasks structural roles (ESMM: pCTCVR = pCTR x pCVR needs a click and a
# click-and-convert task) get binary tasks in those roles in front of the generated ones, and the
# hyperparameters naming them. The generated tasks of mixed kinds then run through the model as its
# generic extra towers, so every check below still covers them.
ROLES: dict[str, dict[str, str]] = {
    "esmm": {"ctr_task": "role_ctr", "cvr_task": "role_cvr", "ctcvr_task": "role_ctcvr"},
}


def build(name, num_tasks, params=None):
    """``(model, tasks)``: ``num_tasks`` generated tasks, plus the model's role tasks. A text-only
    model (``conftest.TEXT_ONLY_MODELS``) is built on its text spec with a tagging task first."""
    roles = ROLES.get(name, {})
    tasks = [Task(role) for role in roles.values()] + model_tasks(name, num_tasks)
    return create_model(name, model_spec(name), tasks, {**roles, **model_params(name), **(params or {})}), tasks


def test_registry_has_the_core_models():
    assert {"single_task", "shared_bottom", "omoe", "mmoe"} <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("num_tasks", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_forward_shapes_and_gradients(name, num_tasks, batch_size):
    torch.manual_seed(0)
    model, tasks = build(name, num_tasks)
    assert isinstance(model, MultiTaskModel)
    batch = make_batch(model_spec(name), tasks, batch_size)
    out = model(batch.features)
    assert set(out) == {t.name for t in tasks}
    for t in tasks:
        expected = (batch_size,) if t.output_dim == 1 else (batch_size, t.output_dim)
        if t.level == "token":
            expected = (batch_size, batch.features[f"seq:{t.spec.token_feature}"].shape[1], t.output_dim)
        assert out[t.name].shape == expected, (name, t.kind)
        assert torch.isfinite(out[t.name]).all()
    loss = sum(t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]) for t in tasks)
    loss = loss + sum(model.regularization().values(), torch.zeros(()))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        if "categorical" in pname or "sequences" in pname or "words" in pname:
            continue  # embedding rows of ids absent from the batch legitimately get zero gradient
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient at {pname}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_shared_parameters_are_reached_by_every_task(name):
    torch.manual_seed(0)
    model, tasks = build(name, 2)
    shared = model.shared_parameters()
    names = {id(p) for p in model.parameters()}
    assert all(id(p) in names for p in shared)
    batch = make_batch(model_spec(name), tasks, 16)
    for t in tasks:
        model.zero_grad()
        out = model(batch.features)
        t.loss(out[t.name], batch.labels[t.name], batch.masks[t.name]).backward()
        for p in shared:
            assert p.grad is not None, f"{name}: task {t.name} does not reach a shared parameter"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_unknown_hyperparameter_is_a_config_error(name):
    from polytask.errors import ConfigError

    with pytest.raises(ConfigError, match="model.no_such_param"):
        build(name, 2, {"no_such_param": 1})


@pytest.mark.parametrize("name", ALL_MODELS)
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    a, tasks = build(name, 3)
    a.eval()
    torch.manual_seed(1)
    b = build(name, 3)[0].eval()
    b.load_state_dict(a.state_dict())
    batch = make_batch(model_spec(name), tasks, 7)
    oa, ob = a(batch.features), b(batch.features)
    for t in tasks:
        torch.testing.assert_close(oa[t.name], ob[t.name])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_learns_a_small_two_task_problem(name):
    """Each model, trained briefly on 2,000 rows of two related logistic tasks, reaches a test
    AUC above 0.85 on both (the Bayes AUC is about 0.95; chance is 0.5)."""
    import numpy as np

    import polytask

    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=(n, 6)).astype(np.float32)
    cat = rng.integers(0, 5, size=n)
    shift = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])[cat]
    z1 = 2 * x[:, 0] + x[:, 1] + shift
    z2 = 2 * x[:, 0] - x[:, 2] + shift
    y1 = (rng.random(n) < 1 / (1 + np.exp(-2 * z1))).astype(np.int8)
    y2 = (rng.random(n) < 1 / (1 + np.exp(-2 * z2))).astype(np.int8)
    table = {f"x{i}": x[:, i] for i in range(6)} | {"c": [f"c{v}" for v in cat], "y1": y1, "y2": y2}
    import pyarrow as pa

    tasks, model = [{"name": "y1"}, {"name": "y2"}], {"name": name}
    if name in ROLES:  # y1 as the click, y2 as the conversion (not trained on directly), y1 & y2 as the click-and-convert task
        table["y1y2"] = y1 * y2
        tasks.append({"name": "y1y2"})
        model.update(dict(zip(ROLES[name], ("y1", "y2", "y1y2"))))
    features = None
    if name in TEXT_ONLY_MODELS:  # the same problem as text: a token per category and per decile of x0..x2
        deciles = [np.searchsorted(np.quantile(x[:, i], np.linspace(0.1, 0.9, 9)), x[:, i]) for i in range(3)]
        table = {"text": [f"c{c} a{d0} b{d1} d{d2}" for c, d0, d1, d2 in zip(cat, *deciles)], "y1": y1, "y2": y2}
        features = {"sequence": [{"name": "text", "separator": " ", "max_len": 4}]}
        model.update(text="text", dim=16, hidden=16, label_dim=8, dropout=0.0)
    t = pa.table(table)
    run = polytask.fit(train=t.slice(0, 2000), validation=t.slice(2000, 500), test=t.slice(2500, 500),
                       features=features, tasks=tasks, model=model, epochs=15, batch_size=64,
                       progress=False, optimizer={"name": "adam", "lr": 0.01}, monitor="y1.auc")
    for task in ("y1", "y2"):
        assert run.metrics["test"][task]["auc"] > 0.85, (name, task, run.metrics["test"][task])


# -- the shared representation is really passed through share() ------------------------------------
def check_shared_representation(model, tasks, batch):
    """A model that shares a representation (``weighting.base.shares_representation``: it has
    shared modules and does not declare ``has_shared_representation = False``) passes it through
    ``share()``: with capture on, a forward pass records a tensor that requires grad and that every
    task output depends on (representation-mode weightings differentiate the losses w.r.t. it)."""
    model.capture_representation = True
    model.representation = None
    out = model(batch.features)
    rep = model.representation
    assert rep is not None, "no representation passed through share() in the forward pass"
    assert isinstance(rep, torch.Tensor) and rep.requires_grad, "the representation does not require grad"
    for t in tasks:
        (g,) = torch.autograd.grad(out[t.name].float().sum(), rep, retain_graph=True, allow_unused=True)
        assert g is not None and g.abs().sum() > 0, f"output {t.name!r} does not depend on the shared representation"


def _shares(name: str) -> bool:
    from polytask.weighting.base import shares_representation

    model, _ = build(name, 2)
    return bool(model.shared_modules()) and shares_representation(model)


SHARING = [n for n in ALL_MODELS if _shares(n)]


@pytest.mark.parametrize("name", SHARING)
def test_models_with_shared_modules_pass_their_representation_through_share(name):
    torch.manual_seed(0)
    model, tasks = build(name, 2)
    check_shared_representation(model, tasks, make_batch(model_spec(name), tasks, 4))


@pytest.mark.parametrize("name", sorted(set(ALL_MODELS) - set(SHARING)))
def test_models_without_a_shared_representation_are_refused_by_representation_mode(name):
    """The models the share() contract does not apply to say so: a representation-mode weighting
    refuses them at setup with one line naming both."""
    from polytask.errors import ConfigError
    from polytask.weighting import create_weighting

    model, tasks = build(name, 2)
    weighting = create_weighting("mgda", tasks, {"mode": "representation"})
    with pytest.raises(ConfigError, match=f"mgda.*{name}|{name}.*mgda"):
        weighting.setup(model)


class _SharesButNeverCallsShare(MultiTaskModel):
    """Declares a shared trunk but hands the towers its output without ``self.share(x)``."""

    def __init__(self, input_spec, tasks):
        super().__init__(input_spec, tasks)
        self.trunk = torch.nn.Linear(input_spec.numeric_dim, 4)
        self.towers = torch.nn.ModuleDict({t.name: torch.nn.Linear(4, 1) for t in tasks})

    def shared_modules(self):
        return [self.trunk]

    def forward(self, features):
        x = self.trunk(features["numeric"])
        return {n: tower(x).squeeze(-1) for n, tower in self.towers.items()}


class _SharesTheWrongTensor(_SharesButNeverCallsShare):
    """Calls ``share`` on a copy of the trunk's output that only the first task reads."""

    def forward(self, features):
        x = self.trunk(features["numeric"])
        first = self.task_names[0]
        return {n: tower(self.share(x.clone()) if n == first else x).squeeze(-1) for n, tower in self.towers.items()}


@pytest.mark.parametrize("broken, says", [(_SharesButNeverCallsShare, "no representation"),
                                          (_SharesTheWrongTensor, "does not depend")])
def test_the_share_check_rejects_a_model_that_does_not_pass_its_representation(broken, says):
    from polytask.weighting.base import shares_representation

    tasks = make_tasks(2)
    model = broken(SPEC, tasks)
    assert shares_representation(model)
    with pytest.raises(AssertionError, match=says):
        check_shared_representation(model, tasks, make_batch(SPEC, tasks, 4))
