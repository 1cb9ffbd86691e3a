"""Two processes (gloo, CPU) train on a streamed Parquet directory through ``polytask.fit``: in an
epoch the rows each process trained on are disjoint and together every row exactly once (the
trainer does not shard the streamed batches again), both take the same number of steps, and
they end with the same weights (the gradients were all-reduced)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROWS = (900, 650, 1000)  # three files, row groups of 128 (the last of each file shorter)


def _write(directory) -> int:
    directory.mkdir()
    start = 0
    for i, n in enumerate(ROWS):
        rng = np.random.default_rng(i)
        x = rng.normal(size=n)
        pq.write_table(pa.table({
            "rid": np.arange(start, start + n, dtype=np.float64),
            "x": x,
            "c": rng.choice(["a", "b"], n).tolist(),
            "click": (x + rng.normal(size=n) > 0).astype(np.int64),
            "buy": (x > 0.5).astype(np.int64),
        }), directory / f"part-{i}.parquet", row_group_size=128)
        start += n
    return start


def _worker(rank: int, world: int, root: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{root}/init", rank=rank, world_size=world)
    import polytask

    seen: dict[int, list[int]] = {}
    steps: dict[int, int] = {}
    hooks = []

    def record(trainer, entry) -> None:  # after epoch 1: record what epoch 2 trains on
        for h in hooks:
            h.remove()
        epoch = entry["epoch"] + 1
        seen[epoch], steps[epoch] = [], 0

        def hook(module, args):
            if module.training:
                seen[epoch].extend(int(v) for v in args[0]["numeric"][:, 0].tolist())
                steps[epoch] += 1

        hooks.append(trainer.model.register_forward_pre_hook(hook))

    try:
        run = polytask.fit(
            train=os.path.join(root, "train"), validation=os.path.join(root, "train", "part-1.parquet"),
            features={"numeric": [{"name": "rid", "scale": "none"}, "x"], "categorical": ["c"]},
            tasks=[{"name": "click"}, {"name": "buy"}], model={"name": "mmoe", "num_experts": 2, "expert_hidden": [8]},
            overrides=["data.stream.shuffle_buffer=300", "data.stream.read_rows=100", "data.split.test=0"],
            epochs=3, batch_size=64, patience=None, progress=False, seed=0, callbacks=[record],
        )
        weights = {k: v.tolist() for k, v in run.model.state_dict().items()}
        with open(os.path.join(root, f"rank{rank}.json"), "w") as f:
            json.dump({"seen": seen, "steps": steps, "weights": weights}, f)
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo's threads can abort the interpreter's own shutdown after the work is saved


def test_two_processes_see_every_row_exactly_once_per_epoch(tmp_path):
    n = _write(tmp_path / "train")
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    out = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in ("2", "3"):
        a, b = out[0]["seen"][epoch], out[1]["seen"][epoch]
        assert len(set(a)) == len(a) and len(set(b)) == len(b)
        assert not set(a) & set(b)  # disjoint
        assert sorted(a + b) == list(range(n))  # together every row exactly once
        assert out[0]["steps"][epoch] == out[1]["steps"][epoch] == -(-(n // 2) // 64)
    assert out[0]["seen"]["2"] != out[0]["seen"]["3"]  # a new order every epoch
    for k, v in out[0]["weights"].items():
        np.testing.assert_allclose(v, out[1]["weights"][k], rtol=1e-5, atol=1e-6)
