"""`torchrun --nproc_per_node 2 polytask train ...` trains the same model as one process: the run
directory is written once (by rank 0) and its weights equal the single-process run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

CONFIG = """data:
  train: data.csv
  tasks: [a, b]
  split: {validation: 0.2, test: 0.2, seed: 0}
model: {name: mmoe, num_experts: 4, expert_hidden: [8], tower_hidden: [4]}
weighting: {name: pcgrad}
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 3, batch_size: 64, patience: null, progress: false, device: cpu, seed: 0}
"""


def _write_inputs(d: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1200
    x = rng.normal(size=(n, 4))
    df = pd.DataFrame({f"x{i}": x[:, i] for i in range(4)})
    df["c"] = rng.integers(0, 5, n).astype(str)
    df["a"] = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    df["b"] = (x[:, 1] - x[:, 2] > 0).astype(float)
    df.loc[rng.random(n) < 0.3, "b"] = np.nan  # b unlabelled on ~30 % of rows, unevenly across shards
    df.to_csv(d / "data.csv", index=False)
    (d / "cfg.yaml").write_text(CONFIG)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo")
def test_torchrun_two_processes_match_one(tmp_path):
    _write_inputs(tmp_path)
    polytask_bin = str(Path(sys.executable).with_name("polytask"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([polytask_bin, "train", "cfg.yaml", "--out", "one"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "--no-python", polytask_bin, "train", "cfg.yaml", "--out", "two"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert not (tmp_path / "two.partial").exists()
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo")
def test_a_refusal_on_rank_0_ends_every_process_instead_of_hanging(tmp_path):
    """Rank 0 alone checks the output (it writes the run); when it refuses, the other process is
    already training and waits in a collective rank 0 never joins. Rank 0 must leave without a
    barrier so torchrun stops the rest: one error line, a non-zero exit, in seconds, not a hang."""
    _write_inputs(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")  # not a run: refused even with --overwrite
    polytask_bin = str(Path(sys.executable).with_name("polytask"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "--no-python", polytask_bin, "train", "cfg.yaml", "--out", "mine", "--overwrite",
                            "--set", "train.epochs=50"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert multi.returncode != 0
    assert "error: --out mine: exists and is not a polytask run directory" in multi.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's file"
    assert not (tmp_path / "mine.partial").exists()
