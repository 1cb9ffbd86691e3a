"""Data parallelism: two gloo processes, each on half of every batch, make exactly the update one
process makes on the whole batch — for every registered weighting method, and with token rows
and element masks (tagging, multilabel, weighted rows) (per-task gradients, or
their Gram matrices, are all-reduced before they are combined; per-task losses are rescaled by the
global label counts, so a task labelled unevenly across the halves is still averaged correctly)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.models import create_model
from polytask.registry import WEIGHTINGS
from polytask.tasks import Task
from polytask.train.trainer import Trainer
from polytask.weighting import create_weighting

TASKS = [Task("a", kind="binary"), Task("b", kind="regression"), Task("c", kind="binary")]
SPEC = InputSpec(numeric_dim=4, cardinalities=[5], categorical_names=["u"])
# Not equivalent by construction: GradDrop draws one uniform number per representation entry,
# and each process holds a different part of the batch's representation.
NOT_EQUIVALENT = {"graddrop"}


def _table() -> TensorTable:
    g = torch.Generator().manual_seed(0)
    n = 96
    x = torch.randn(n, 4, generator=g)
    u = torch.randint(0, 5, (n, 1), generator=g, dtype=torch.int32)
    a = (x[:, 0] > 0).float()
    b = x[:, 1] * 2 + 0.1 * torch.randn(n, generator=g)
    c = (x[:, 2] + x[:, 3] > 0).float()
    ones = torch.ones(n, dtype=torch.bool)
    mask_b = torch.rand(n, generator=g) > 0.4  # uneven label counts between the two halves
    mask_c = ones.clone()
    mask_c[:40] = False  # some 16-row batches have no label of c at all on one half
    return TensorTable({"numeric": x, "categorical": u}, {"a": a, "b": b, "c": c}, {"a": ones, "b": mask_b, "c": mask_c})


# token rows and element masks: a tagging task (padding and missing tags masked), a multilabel task
# with one label missing on some rows, a binary task with sample weights; each process's loss share
# must count labelled elements the way the loss does (TaskKind.loss_count)
TOKEN_TASKS = [Task("tag", "tagging", tokens="text", num_classes=3), Task("flags", "multilabel", labels=["p", "q"]),
               Task("y", kind="binary", weight_column="w")]
TOKEN_SPEC = InputSpec(numeric_dim=2, sequences={"text": 7})
TOKEN_METHODS = ("equal", "pcgrad", "uncertainty")


def _token_table() -> TensorTable:
    g = torch.Generator().manual_seed(1)
    n, width = 96, 6
    lengths = torch.randint(1, width + 1, (n,), generator=g)
    ids = torch.randint(2, 7, (n, width), generator=g) * (torch.arange(width) < lengths[:, None])
    tag = ids % 3
    tag_mask = (ids > 0) & (torch.rand(n, width, generator=g) > 0.2)
    x = torch.randn(n, 2, generator=g)
    flags = torch.stack([(x[:, 0] > 0).float(), (lengths > 3).float()], 1)
    flags_mask = torch.rand(n, 2, generator=g) > torch.tensor([0.1, 0.5])
    y = (x[:, 1] > 0).float()
    return TensorTable({"numeric": x, "seq:text": ids}, {"tag": tag, "flags": flags, "y": y},
                       {"tag": tag_mask, "flags": flags_mask, "y": torch.ones(n, dtype=torch.bool)},
                       {"y": torch.rand(n, generator=g) + 0.5})


def _train_tokens(method: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("shared_bottom", TOKEN_SPEC, TOKEN_TASKS,
                         {"encoder": "tokens", "encoder_params": {"dim": 8}, "bottom_hidden": [8], "tower_hidden": [4]})
    weighting = create_weighting(method, TOKEN_TASKS)
    trainer = Trainer(model, TOKEN_TASKS, weighting=weighting, epochs=2, batch_size=16, patience=None, progress=False,
                      optimizer="sgd", lr=0.05, seed=0, device="cpu", log_every=None)
    trainer.fit(_token_table())
    return {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}


def _methods() -> list[str]:
    return [m for m in WEIGHTINGS.names() if m not in NOT_EQUIVALENT]


def _train(method: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("shared_bottom", SPEC, TASKS, {"bottom_hidden": [8], "tower_hidden": [4]})
    weighting = create_weighting(method, TASKS)
    trainer = Trainer(model, TASKS, weighting=weighting, epochs=2, batch_size=16, patience=None, progress=False,
                      optimizer="sgd", lr=0.05, seed=0, device="cpu", log_every=2)
    trainer.fit(_table())
    state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    state.update({f"weighting.{k}": v.detach().clone() for k, v in weighting.state_dict().items()})
    return state


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for method in _methods():
            state = _train(method)
            if rank == 0:
                torch.save(state, os.path.join(out_dir, f"{method}.pt"))
        for method in TOKEN_METHODS:
            state = _train_tokens(method)
            if rank == 0:
                torch.save(state, os.path.join(out_dir, f"tokens-{method}.pt"))
    finally:
        dist.destroy_process_group()
    # gloo's background threads sometimes abort the interpreter's own shutdown ("terminate called
    # without an active exception", after all work is done and saved); leave without it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo")
def test_two_processes_on_half_batches_equal_one_process_on_whole_batches(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    failures = []
    for method in _methods():
        single = _train(method)
        parallel = torch.load(tmp_path / f"{method}.pt")
        assert single.keys() == parallel.keys()
        for k in single:
            if not torch.allclose(single[k].float(), parallel[k].float(), rtol=1e-4, atol=1e-5):
                failures.append(f"{method}: {k} differs by {float((single[k] - parallel[k]).abs().max()):.2e}")
    for method in TOKEN_METHODS:
        single, parallel = _train_tokens(method), torch.load(tmp_path / f"tokens-{method}.pt")
        for k in single:
            if not torch.allclose(single[k].float(), parallel[k].float(), rtol=1e-4, atol=1e-5):
                failures.append(f"tokens {method}: {k} differs by {float((single[k] - parallel[k]).abs().max()):.2e}")
    assert not failures, "\n".join(failures)
