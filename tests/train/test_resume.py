"""Exact resume: a run stopped after any epoch (an interrupt in process, a real SIGKILL of
`polytask train`) continues with ``--resume`` / ``resume=True`` from ``<out>.partial/resume.pt`` and
ends with bit-identical weights (CPU) and the same metrics and epoch log as the run that was never
stopped; a resume with another config is refused with one line naming the first differing key."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import make_frame

import polytask
from polytask.cli import app
from polytask.data.loader import BatchLoader
from polytask.data.table import TensorTable
from polytask.errors import ConfigError
from polytask.run import CHECKPOINT, LOG, RESUME, Run

runner = CliRunner()

TASKS = [{"name": "click"}, {"name": "spend", "kind": "regression"}, {"name": "segment", "kind": "multiclass"}]
OPTIONS = {"epochs": 4, "batch_size": 32, "progress": False, "seed": 3, "device": "cpu", "patience": 10}


TRAIN, VALID = make_frame(240, 0), make_frame(80, 1)


class Killed(KeyboardInterrupt):
    """What a kill looks like in process: a BaseException, so the .partial is kept as after a SIGKILL."""


def kill_after(epoch: int):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise Killed(f"stopped after epoch {epoch}")
    return callback


def fit(out: Path, model: dict, weighting: str, **kwargs):
    return polytask.fit(train=TRAIN, validation=VALID, test=VALID, tasks=TASKS, model=model, weighting=weighting,
                        out=out, **{**OPTIONS, **kwargs})


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in records]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / LOG).read_text().splitlines()]


CASES = {
    "shared_bottom+equal": ({"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4], "dropout": 0.2},
                            "equal", 2),
    "mmoe+famo": ({"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}, "famo", 2),
    "mmoe+dwa": ({"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}, "dwa", 3),
    # widens its top layer after epoch 1 and its bottom layer after epoch 2: stopped after epoch 1, the
    # resumed model must have the widened top layer and still widen the bottom one
    "fafs": ({"name": "fafs", "hidden": [8, 8], "warmup_epochs": 1, "widen_every": 1, "lam": 100.0}, "equal", 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_interrupt_is_bit_identical(tmp_path, case):
    model, weighting, kill_epoch = CASES[case]
    whole = fit(tmp_path / "whole", model, weighting)

    out = tmp_path / "stopped"
    with pytest.raises(Killed):
        fit(out, model, weighting, callbacks=[kill_after(kill_epoch)])
    partial = out.with_name("stopped.partial")
    state = torch.load(partial / RESUME, weights_only=False)
    assert state["epoch"] == kill_epoch and len(read_log(partial)) == kill_epoch
    if case == "fafs":  # the kill point lies after a widening: resume must rebuild the widened model
        assert any(len(layer) > 1 for layer in state["structure"]["branches"]), state["structure"]

    resumed = fit(out, model, weighting, resume=True)
    assert not partial.exists() and resumed.directory == out
    assert_same_weights(whole.model.state_dict(), resumed.model.state_dict())
    assert resumed.metrics == whole.metrics
    assert without_timing(resumed.history) == without_timing(whole.history)
    assert without_timing(read_log(out)) == without_timing(read_log(tmp_path / "whole"))
    # the finished run keeps no resume state; the saved checkpoint is the uninterrupted one's
    assert not (out / RESUME).exists()
    assert_same_weights(Run.load(tmp_path / "whole").model.state_dict(), Run.load(out).model.state_dict())


#: every other registered weighting ('fixed' needs its weights): those with seeded generators (rlw,
#: pcgrad, graddrop, gradvac), learned parameters (uncertainty, gradnorm, imtl), buffers (gradnorm's
#: initial losses) or Python-side state (nash_mtl's warm start and step count) resume exactly too
OTHER_WEIGHTINGS = ["aligned_mtl", "cagrad", "gls", "graddrop", "gradnorm", "gradvac", "imtl", "mgda",
                    {"name": "nash_mtl", "update_every": 2}, "pcgrad", "rlw", "uncertainty", "upgrad",
                    {"name": "fixed", "weights": {"click": 1.0, "spend": 0.5, "segment": 2.0}}]


@pytest.mark.parametrize("weighting", OTHER_WEIGHTINGS, ids=lambda w: w if isinstance(w, str) else w["name"])
def test_every_weighting_resumes_exactly(tmp_path, weighting):
    model = {"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]}
    options = {"epochs": 3, "batch_size": 80}  # 3 steps an epoch: nash_mtl resumes on an odd step
    whole = fit(tmp_path / "whole", model, weighting, **options)
    out = tmp_path / "stopped"
    with pytest.raises(Killed):
        fit(out, model, weighting, callbacks=[kill_after(1)], **options)
    resumed = fit(out, model, weighting, resume=True, **options)
    assert_same_weights(whole.model.state_dict(), resumed.model.state_dict())
    assert without_timing(resumed.history) == without_timing(whole.history)


@pytest.mark.parametrize("kill_epoch", [2, 3])
def test_resume_keeps_the_early_stopping_state(tmp_path, kill_epoch):
    """min_delta so large that only epoch 1 improves: patience 2 stops the run after epoch 3, also
    when it was stopped after epoch 2 (one stale epoch carried over) or 3 (nothing left to train)."""
    model, weighting, _ = CASES["mmoe+dwa"]
    options = {"patience": 2, "min_delta": 10.0, "epochs": 6}
    whole = fit(tmp_path / "whole", model, weighting, **options)
    assert [r["epoch"] for r in whole.history] == [1, 2, 3]
    out = tmp_path / "stopped"
    with pytest.raises(Killed):
        fit(out, model, weighting, callbacks=[kill_after(kill_epoch)], **options)
    resumed = fit(out, model, weighting, resume=True, **options)
    assert without_timing(resumed.history) == without_timing(whole.history)
    assert resumed.metrics == whole.metrics
    assert_same_weights(whole.model.state_dict(), resumed.model.state_dict())


def test_resume_truncates_log_lines_of_an_unsaved_epoch(tmp_path):
    """A kill between an epoch's log line and its resume.pt: that epoch is trained again, logged once."""
    model, weighting, _ = CASES["shared_bottom+equal"]
    whole = fit(tmp_path / "whole", model, weighting)
    out = tmp_path / "stopped"
    with pytest.raises(Killed):
        fit(out, model, weighting, callbacks=[kill_after(2)])
    partial = out.with_name("stopped.partial")
    state = torch.load(partial / RESUME, weights_only=False)
    # as if killed during epoch 3's bookkeeping: its log line written, its resume.pt not
    with (partial / LOG).open("a") as fh:
        fh.write(json.dumps({"epoch": 3, "half": "written"}) + "\n")
    assert state["epoch"] == 2
    resumed = fit(out, model, weighting, resume=True)
    assert [r["epoch"] for r in read_log(out)] == [1, 2, 3, 4]
    assert_same_weights(whole.model.state_dict(), resumed.model.state_dict())


def test_resume_without_partial_starts_fresh_and_leftover_message_names_resume(tmp_path, capsys):
    model, weighting, _ = CASES["shared_bottom+equal"]
    run = fit(tmp_path / "fresh", model, weighting, resume=True)
    assert "starting a fresh run" in capsys.readouterr().out
    assert run.directory == tmp_path / "fresh"

    out = tmp_path / "stopped"
    with pytest.raises(Killed):
        fit(out, model, weighting, callbacks=[kill_after(1)])
    with pytest.raises(ConfigError, match=r"interrupted run .*pass --resume to continue it.*--overwrite to discard"):
        fit(out, model, weighting)


def test_batch_order_is_a_function_of_seed_and_epoch():
    table = TensorTable({"numeric": torch.arange(50.0).unsqueeze(1)}, {}, {})
    running = BatchLoader(table, 7, shuffle=True, seed=5)
    orders = [torch.cat([b.features["numeric"] for b in running]).flatten() for _ in range(4)]
    assert not torch.equal(orders[0], orders[1])
    for epoch in range(4):
        fresh = BatchLoader(table, 7, shuffle=True, seed=5)
        fresh.set_epoch(epoch)
        assert torch.equal(torch.cat([b.features["numeric"] for b in fresh]).flatten(), orders[epoch])


# -- the command line: a real SIGKILL, the config check ---------------------------------------------
CONFIG = {
    "name": "clicks",
    "data": {"train": "train.csv", "validation": "valid.csv", "tasks": TASKS},
    "model": {"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]},
    "weighting": {"name": "famo"},
    "train": {"epochs": 8, "batch_size": 16, "progress": False, "device": "cpu", "seed": 1, "patience": 10},
}


@pytest.fixture()
def csv_work(tmp_path):
    make_frame(600, 0).to_csv(tmp_path / "train.csv", index=False)
    make_frame(120, 1).to_csv(tmp_path / "valid.csv", index=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return tmp_path


def polytask_train(work: Path, out: str, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("polytask")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(exe), "train", "config.yaml", "--out", out, "--set", "train.threads=1", *args],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_gives_the_uninterrupted_weights(csv_work):
    whole = polytask_train(csv_work, "whole")
    killed = polytask_train(csv_work, "run")
    resume_file = csv_work / "run.partial" / RESUME
    deadline = time.monotonic() + 60
    while not resume_file.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert killed.poll() is None, f"the run ended before it could be killed: {killed.communicate()}"
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    epoch = torch.load(resume_file, weights_only=False)["epoch"]
    assert 1 <= epoch < CONFIG["train"]["epochs"]

    refused = runner.invoke(app, ["train", str(csv_work / "config.yaml"), "--out", str(csv_work / "run")])
    assert refused.exit_code == 2 and "--resume" in refused.stderr

    resumed = polytask_train(csv_work, "run", "--resume")
    r_out, r_err = resumed.communicate(timeout=120)
    w_out, w_err = whole.communicate(timeout=120)
    assert resumed.returncode == 0, r_err
    assert whole.returncode == 0, w_err
    a = torch.load(csv_work / "whole" / CHECKPOINT, weights_only=True)
    b = torch.load(csv_work / "run" / CHECKPOINT, weights_only=True)
    assert a["epoch"] == b["epoch"]
    assert_same_weights(a["state_dict"], b["state_dict"])
    assert json.loads((csv_work / "whole" / "metrics.json").read_text()) == \
        json.loads((csv_work / "run" / "metrics.json").read_text())
    assert without_timing(read_log(csv_work / "run")) == without_timing(read_log(csv_work / "whole"))
    assert not (csv_work / "run" / RESUME).exists()


def test_resume_with_another_config_is_refused(csv_work, monkeypatch):
    monkeypatch.chdir(csv_work)  # the config's relative data paths
    out = csv_work / "run"
    partial = csv_work / "run.partial"

    class Stop(KeyboardInterrupt):
        pass

    def stop(trainer, record):
        raise Stop

    cfg = yaml.safe_load((csv_work / "config.yaml").read_text())
    cfg["data"] = {**cfg["data"], "train": str(csv_work / "train.csv"), "validation": str(csv_work / "valid.csv")}
    with pytest.raises(Stop):
        polytask.fit(cfg, out=out, callbacks=[stop])
    before = {p.name: p.read_bytes() for p in partial.iterdir()}
    result = runner.invoke(app, ["train", str(csv_work / "config.yaml"), "--out", str(out), "--resume",
                                 "--set", "optimizer.lr=0.01"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "config differs" in lines[0] and "optimizer.lr: 0.001 there, 0.01 now" in lines[0], lines[0]
    assert {p.name: p.read_bytes() for p in partial.iterdir()} == before  # nothing touched



def test_resume_on_changed_training_data_is_refused(csv_work, monkeypatch):
    monkeypatch.chdir(csv_work)
    with pytest.raises(Killed):
        polytask.fit(yaml.safe_load((csv_work / "config.yaml").read_text()), out=csv_work / "run",
                     callbacks=[kill_after(1)])
    make_frame(600, 7).to_csv(csv_work / "train.csv", index=False)  # same config, other rows
    result = runner.invoke(app, ["train", "config.yaml", "--out", "run", "--resume"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the training data differs" in lines[0] and "encoders.json" in lines[0], lines

# -- torchrun: two processes, killed, resumed by two processes -------------------------------------
TORCHRUN_CONFIG = """data:
  train: train.csv
  validation: valid.csv
  tasks: [click, {name: spend, kind: regression}]
model: {name: shared_bottom, bottom_hidden: [8], tower_hidden: [4], dropout: 0.2}
weighting: {name: famo}
train: {epochs: 8, batch_size: 15, patience: null, progress: false, device: cpu, seed: 0, threads: 1}
"""


def torchrun_train(work: Path, out: str, *args: str) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("polytask"))
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "--no-python", exe, "train", "cfg.yaml", "--out", out, *args],
                            cwd=work, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc), children first."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        todo += children
    return found


@pytest.mark.slow
def test_torchrun_sigkill_then_resume_is_bit_identical(csv_work):
    """Each process restores its own RNG states (the shards of 7 and 8 rows draw different dropout masks)."""
    (csv_work / "cfg.yaml").write_text(TORCHRUN_CONFIG)
    for attempt in range(2):
        whole = torchrun_train(csv_work, "whole")
        w_out, w_err = whole.communicate(timeout=300)
        # once in about 30 CI runs a worker aborted in C++ ("terminate called without an active
        # exception", SIGABRT, no Python error): an exit-time race of gloo's threads, not what this
        # test checks; the uninterrupted reference run is started again once when that happens
        if whole.returncode == 0 or "exitcode  : -6" not in w_err or attempt:
            break
        for leftover in ("whole", "whole.partial", "whole.lock"):
            shutil.rmtree(csv_work / leftover, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (csv_work / leftover).unlink()
    assert whole.returncode == 0, w_err[-3000:]
    killed = torchrun_train(csv_work, "run")
    resume_file = csv_work / "run.partial" / RESUME
    deadline = time.monotonic() + 120
    while not resume_file.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert killed.poll() is None, f"the run ended before it could be killed: {killed.communicate()}"
    for pid in [*descendants(killed.pid), killed.pid]:  # the workers (in sessions of their own), then torchrun
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed.communicate()
    time.sleep(0.2)  # the workers' last file operations, if any, have ended
    assert not (csv_work / "run").exists()
    state = torch.load(resume_file, weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and 1 <= state["epoch"] < 8
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # the shards drew differently

    resumed = torchrun_train(csv_work, "run", "--resume")
    r_out, r_err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, r_err[-3000:]
    a = torch.load(csv_work / "whole" / CHECKPOINT, weights_only=True)
    b = torch.load(csv_work / "run" / CHECKPOINT, weights_only=True)
    assert_same_weights(a["state_dict"], b["state_dict"])
    assert without_timing(read_log(csv_work / "run")) == without_timing(read_log(csv_work / "whole"))
