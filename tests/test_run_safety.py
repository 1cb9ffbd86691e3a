"""What polytask does to the user's files: ``--overwrite`` replaces only polytask runs, two trainings
never share an ``--out``, the remains of an interrupted run are kept, every output is written
atomically, a damaged run directory is one error line naming the file, JSON is strict, and
config.yaml records every hyperparameter.

Each failure case checks the exit code 2, a single ``error:`` line naming the file or path, and that
the user's files are byte for byte what they were.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import make_frame

import polytask
from polytask.cli import app
from polytask.errors import ConfigError, DataError
from polytask.fileio import OutputLock, atomic_write_text
from polytask.run import CHECKPOINT, CONFIG, ENCODERS, LOG, MANIFEST, Run, RunFileWarning, write_manifest

runner = CliRunner()

TASKS = [
    {"name": "click"},
    {"name": "segment", "kind": "multiclass"},
    {"name": "spend", "kind": "regression"},
]
MODEL = {"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4]}
OPTIONS = {"epochs": 2, "batch_size": 64, "progress": False, "seed": 0, "device": "cpu"}
RUN_FILES = {"config.yaml", "encoders.json", "model.pt", "metrics.jsonl", "metrics.json", "data.json", "manifest.json"}


def invoke(*args: object, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def one_error_line(result, *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, ``error: ...``, containing every needle."""
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}\n{result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with train.csv, new.csv (features only) and config.yaml (relative paths)."""
    work = tmp_path_factory.mktemp("safety")
    frame = make_frame(400, 0)
    frame.to_csv(work / "train.csv", index=False)
    make_frame(50, 1).drop(columns=["click", "segment", "spend"]).to_csv(work / "new.csv", index=False)
    config = {"data": {"train": str(work / "train.csv"), "tasks": TASKS}, "model": MODEL, "train": OPTIONS}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return work


@pytest.fixture(scope="module")
def good_run(work, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    polytask.fit(train=work / "train.csv", tasks=TASKS, model=MODEL, out=out, **OPTIONS)
    assert {p.name for p in out.iterdir()} == RUN_FILES
    return out


@pytest.fixture
def run_copy(good_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(good_run, out)
    return out


def train(work: Path, out: Path, *extra: object):
    return invoke("train", work / "config.yaml", "--out", out, *extra)


# -- 1. --overwrite replaces only a polytask run -----------------------------------------------------------
def test_overwrite_refuses_a_folder_that_is_not_a_run(work, tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    (mine / "figures").mkdir()
    (mine / "figures" / "plot.png").write_bytes(b"\x89PNG")
    before = snapshot(mine)
    for extra in ((), ("--overwrite",)):
        one_error_line(train(work, mine, *extra), str(mine), "not a polytask run directory")
        assert snapshot(mine) == before
    with pytest.raises(ConfigError, match="not a polytask run directory"):
        polytask.fit(train=work / "train.csv", tasks=TASKS, model=MODEL, out=mine, overwrite=True, **OPTIONS)
    assert snapshot(mine) == before
    assert not (tmp_path / "thesis.partial").exists() and not (tmp_path / "thesis.lock").exists()


def test_overwrite_refuses_a_run_that_holds_the_users_files(work, run_copy):
    (run_copy / "notes.txt").write_text("keep me")
    before = snapshot(run_copy)
    one_error_line(train(work, run_copy, "--overwrite"), str(run_copy), "notes.txt")
    assert snapshot(run_copy) == before


def test_overwrite_replaces_a_run_and_an_empty_folder_is_used(work, run_copy, tmp_path):
    old = (run_copy / CHECKPOINT).read_bytes()
    result = train(work, run_copy, "--overwrite", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in run_copy.iterdir()} == RUN_FILES
    assert (run_copy / CHECKPOINT).read_bytes() != old
    assert len((run_copy / LOG).read_text().splitlines()) == 1
    assert [p.name for p in run_copy.parent.iterdir() if p.name.startswith(".")] == []  # nothing left aside
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(work, empty).exit_code == 0
    assert {p.name for p in empty.iterdir()} == RUN_FILES


# -- 2. one training per --out; interrupted runs are kept --------------------------------------------------
def test_a_held_lock_refuses_a_second_training(work, tmp_path):
    out = tmp_path / "run"
    with OutputLock(out):  # as a training in progress holds it
        one_error_line(train(work, out), str(out), "another training")
        with pytest.raises(ConfigError, match="another training"):
            polytask.fit(train=work / "train.csv", tasks=TASKS, model=MODEL, out=out, **OPTIONS)
    assert not out.exists()
    assert train(work, out).exit_code == 0  # released: the next one runs
    assert not (tmp_path / "run.lock").exists()


def test_a_lock_held_by_another_process_refuses_and_dies_with_it(work, tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, time\nfrom polytask.fileio import OutputLock\n"
        f"lock = OutputLock({str(out)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_error_line(train(work, out), str(out), "another training")
        assert str(holder.pid) in line  # says who holds it
    finally:
        holder.kill()
        holder.wait()
    # the killed holder left its lock file behind; the kernel dropped its flock, so it blocks nothing
    assert (tmp_path / "run.lock").exists()
    assert train(work, out).exit_code == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES


def test_two_concurrent_trainings_one_is_refused(work, tmp_path):
    out = tmp_path / "run"
    exe = Path(sys.executable).with_name("polytask")
    cmd = [str(exe), "train", str(work / "config.yaml"), "--out", str(out), "--set", "train.epochs=30"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0, results
    if codes[1] != 0:  # they overlapped: the second was refused, naming the path
        assert codes[1] == 2
        refused = next(err for code, err in results if code == 2)
        assert "another training" in refused and str(out) in refused and len(refused.strip().splitlines()) == 1
    # either way the directory is one complete, consistent run
    run = Run.load(out)
    assert len(run.history) == 30 or run.metrics["best_epoch"] is not None
    assert {p.name for p in out.iterdir()} == RUN_FILES


def test_the_remains_of_an_interrupted_run_are_not_deleted(work, tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / CONFIG).write_text("name: killed\n")
    (partial / LOG).write_text('{"epoch": 1}\n{"epo')
    before = snapshot(partial)
    line = one_error_line(train(work, out), str(partial), "interrupted run", "--overwrite")
    assert "discard" in line
    assert snapshot(partial) == before and not out.exists()
    # --overwrite discards it
    assert train(work, out, "--overwrite").exit_code == 0
    assert not partial.exists() and {p.name for p in out.iterdir()} == RUN_FILES


def test_a_partial_holding_other_files_is_never_deleted(work, tmp_path):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "data.xlsx").write_bytes(b"mine")
    one_error_line(train(work, tmp_path / "run", "--overwrite"), str(partial))
    assert (partial / "data.xlsx").read_bytes() == b"mine"


def test_a_failed_training_removes_only_its_own_partial(work, tmp_path, monkeypatch):
    """A full disk while writing model.pt: one line naming it, no truncated model under any name."""
    out = tmp_path / "run"
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:  # half the file reached the disk
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    one_error_line(train(work, out), str(out / CHECKPOINT).replace(str(out), str(out) + ".partial"), "No space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run, no partial, no lock, no temporary file


# -- 3. atomic outputs, predict ------------------------------------------------------------------------------
def test_predict_csv_with_a_multiclass_task_is_flat(good_run, work, tmp_path):
    dest = tmp_path / "pred.csv"
    result = invoke("predict", good_run, work / "new.csv", "-o", dest)
    assert result.exit_code == 0, result.stderr
    pred = pacsv.read_csv(dest)
    classes = ["high", "low", "mid"]
    assert pred.column_names == ["click", "segment", *[f"segment_proba_{c}" for c in classes], "spend"]
    probs = np.stack([pred.column(f"segment_proba_{c}").to_numpy() for c in classes], 1)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert pred.column("segment").to_pylist() == [classes[i] for i in probs.argmax(1)]
    # Parquet keeps the list column, with the same numbers
    check = tmp_path / "pred.parquet"
    assert invoke("predict", good_run, work / "new.csv", "-o", check).exit_code == 0
    table = pq.read_table(check)
    assert pa.types.is_list(table.schema.field("segment_proba").type)
    np.testing.assert_allclose(np.array(table.column("segment_proba").to_pylist()), probs, atol=1e-6)


def test_a_failed_predict_leaves_the_existing_output_byte_identical(good_run, work, tmp_path):
    dest = tmp_path / "pred.csv"
    dest.write_text("id,score\n1,0.5\n")
    before = dest.read_bytes()
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"age": [30], "score": [0.1]}).to_csv(bad, index=False)  # no city column
    one_error_line(invoke("predict", good_run, bad, "-o", dest), "city")
    assert dest.read_bytes() == before
    one_error_line(invoke("predict", good_run, work / "new.csv", "-o", dest, "--keep", "nope"), "nope")
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "pred.csv"]


class Killed(BaseException):
    pass


@pytest.mark.parametrize("existing", [False, True])
def test_predict_killed_mid_write_leaves_nothing_under_the_final_name(good_run, work, tmp_path, monkeypatch, existing):
    dest = tmp_path / "pred.parquet"
    if existing:
        dest.write_bytes(b"the previous predictions")

    def dies_half_way(table, where, *args, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise Killed  # as a signal would stop it: none of the CLI's error handling applies

    monkeypatch.setattr(pq, "write_table", dies_half_way)
    with pytest.raises(Killed):
        invoke("predict", good_run, work / "new.csv", "-o", dest, catch_exceptions=False)
    if existing:
        assert dest.read_bytes() == b"the previous predictions"
    else:
        assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["pred.parquet"] if existing else [])


def test_predict_refuses_bad_outputs_before_creating_anything(good_run, work, tmp_path):
    one_error_line(invoke("predict", good_run, work / "new.csv", "-o", tmp_path / "newdir" / "pred.json"),
                   "pred.json", "unknown output type")
    assert not (tmp_path / "newdir").exists()
    one_error_line(invoke("predict", good_run, work / "new.csv", "-o", tmp_path), str(tmp_path), "is a directory")
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_error_line(invoke("predict", good_run, work / "new.csv", "-o", afile / "pred.csv"), str(afile), "is a file")
    assert afile.read_text() == "x"
    # a new folder is made for a valid name
    assert invoke("predict", good_run, work / "new.csv", "-o", tmp_path / "made" / "p.csv").exit_code == 0


def test_train_out_under_a_file_is_one_line(work, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_error_line(train(work, afile / "run"), str(afile), "is a file")
    one_error_line(train(work, afile), str(afile), "not a directory")
    assert afile.read_text() == "x"


def test_save_checkpoint_never_leaves_a_truncated_model(run_copy, monkeypatch):
    run = Run.load(run_copy)
    before = (run_copy / CHECKPOINT).read_bytes()
    real_save = torch.save

    def dies(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise RuntimeError("killed")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(RuntimeError, match="killed"):
        run.save_checkpoint(run_copy, 1)
    assert (run_copy / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in run_copy.iterdir()) == sorted(RUN_FILES)


@contextlib.contextmanager
def read_only(directory: Path):
    """``directory`` made unwritable, for root too (the immutable attribute)."""
    directory.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        with pytest.raises(OSError):
            (directory / "probe").write_text("x")  # the test means nothing unless this fails
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_a_read_only_output_directory_is_one_line(good_run, work, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "pred.csv").write_text("old\n")
    with read_only(locked):
        one_error_line(train(work, locked / "run"), str(locked), "could not write")
        one_error_line(invoke("predict", good_run, work / "new.csv", "-o", locked / "pred.csv"), str(locked / "pred.csv"),
                       "could not write")
        one_error_line(invoke("predict", good_run, work / "new.csv", "-o", locked / "sub" / "p.csv"), str(locked / "sub"))
    assert sorted(p.name for p in locked.iterdir()) == ["pred.csv"]
    assert (locked / "pred.csv").read_text() == "old\n"


# -- 4. a damaged run directory is one line naming the file -------------------------------------------------
def damage_and_load(run_dir: Path, *needles: str) -> str:
    """Both ways a user meets it: `polytask predict` and `polytask evaluate`, and Run.load."""
    with pytest.raises(DataError) as info:
        Run.load(run_dir)
    assert "\n" not in str(info.value)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    one_error_line(invoke("evaluate", run_dir, "--json"), *needles)
    return str(info.value)


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "old-run"])
def test_a_truncated_model_is_one_line(run_copy, manifest):
    if not manifest:
        (run_copy / MANIFEST).unlink()
    data = (run_copy / CHECKPOINT).read_bytes()
    (run_copy / CHECKPOINT).write_bytes(data[: len(data) // 2])
    damage_and_load(run_copy, str(run_copy / CHECKPOINT))


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "old-run"])
def test_a_flipped_byte_in_the_model_is_one_line(run_copy, manifest):
    if not manifest:
        (run_copy / MANIFEST).unlink()
    data = bytearray((run_copy / CHECKPOINT).read_bytes())
    sd = torch.load(run_copy / CHECKPOINT, weights_only=True)["state_dict"]
    # flip a bit inside the stored weights (the largest tensor), not in the archive's headers
    largest = max(sd.values(), key=lambda t: t.numel())
    raw = largest.numpy().tobytes()
    at = bytes(data).index(raw) + len(raw) // 2
    data[at] ^= 0x01
    (run_copy / CHECKPOINT).write_bytes(bytes(data))
    message = damage_and_load(run_copy, str(run_copy / CHECKPOINT))
    assert ("sha256" in message) if manifest else ("CRC" in message)


def test_nan_weights_are_one_line(run_copy):
    ckpt = torch.load(run_copy / CHECKPOINT, weights_only=True)
    name = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][name][..., 0] = float("nan")
    torch.save(ckpt, run_copy / CHECKPOINT)
    write_manifest(run_copy)  # the checksums agree: the weights themselves are refused
    damage_and_load(run_copy, str(run_copy / CHECKPOINT), name, "NaN")


def edit_encoders(run_dir: Path, edit) -> None:
    enc = json.loads((run_dir / ENCODERS).read_text())
    edit(enc)
    (run_dir / ENCODERS).write_text(json.dumps(enc))


def test_encoders_whose_vocabulary_disagrees_with_the_model_are_one_line(run_copy):
    def grow(enc):
        city = next(f for f in enc["features"] if f["spec"]["name"] == "city")
        city["state"]["vocab"].append("lima")

    edit_encoders(run_copy, grow)
    # caught by the checksum, and without it by the model's input spec
    damage_and_load(run_copy, str(run_copy / ENCODERS))
    write_manifest(run_copy)
    damage_and_load(run_copy, str(run_copy / ENCODERS), "cardinalities")


def test_encoders_whose_task_kind_disagrees_with_the_model_are_one_line(run_copy):
    def kind(enc):
        click = next(t for t in enc["tasks"] if t["name"] == "click")
        click["kind"] = "regression"

    edit_encoders(run_copy, kind)
    write_manifest(run_copy)
    damage_and_load(run_copy, str(run_copy / ENCODERS), "click (regression)", "click (binary)")


def test_encoders_whose_classes_disagree_with_the_model_are_one_line(run_copy):
    def classes(enc):
        segment = next(t for t in enc["tasks"] if t["name"] == "segment")
        segment["classes"] = ["high", "low", "mid", "vip"]

    edit_encoders(run_copy, classes)
    write_manifest(run_copy)
    damage_and_load(run_copy, str(run_copy / ENCODERS))


def test_a_run_without_a_manifest_still_loads_and_is_still_checked(run_copy, work):
    (run_copy / MANIFEST).unlink()
    run = Run.load(run_copy)
    assert run.predict(pd.read_csv(work / "new.csv"))["segment"].shape == (50, 3)
    # consistency is checked without checksums too: a task kind edited in a run from before manifests
    edit_encoders(run_copy, lambda enc: enc["tasks"][0].update(kind="regression"))
    damage_and_load(run_copy, str(run_copy / ENCODERS), "click (regression)")


def test_a_corrupt_config_is_one_line(run_copy):
    (run_copy / CONFIG).write_text("data: [unclosed\n")
    write_manifest(run_copy)
    damage_and_load(run_copy, str(run_copy / CONFIG), "not valid YAML")
    (run_copy / CONFIG).write_text("data: {}\n")
    write_manifest(run_copy)
    damage_and_load(run_copy, str(run_copy / CONFIG), "damaged")


def test_a_corrupt_manifest_is_one_line(run_copy):
    (run_copy / MANIFEST).write_text('{"format": "polytask-run", "files": ')
    damage_and_load(run_copy, str(run_copy / MANIFEST))


def test_a_truncated_epoch_log_does_not_block_evaluate(run_copy):
    text = (run_copy / LOG).read_text()
    (run_copy / LOG).write_text(text[: len(text) - 40])  # killed while writing its last line
    result = invoke("evaluate", run_copy, "--json")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)
    warned = result.stderr.strip().splitlines()
    assert warned and all(line.startswith("warning: ") and str(run_copy / LOG) in line for line in warned), warned
    with pytest.warns(RunFileWarning) as caught:
        assert [r["epoch"] for r in Run.load(run_copy).history] == [1]
    assert any("line 2" in str(w.message) for w in caught)


# -- 6. evaluate: strict JSON, a summary first ---------------------------------------------------------------
def test_evaluate_json_writes_null_for_nan(good_run, work, tmp_path):
    one_class = make_frame(60, 3).assign(click=1)  # AUC of a single class is NaN
    path = tmp_path / "one_class.csv"
    one_class.to_csv(path, index=False)
    result = invoke("evaluate", good_run, "--data", path, "--json")
    assert result.exit_code == 0, result.stderr
    assert "NaN" not in result.stdout

    def refuse(token):
        raise AssertionError(f"not JSON: {token}")

    got = json.loads(result.stdout, parse_constant=refuse)
    assert got[str(path)]["click"]["auc"] is None
    assert isinstance(got[str(path)]["spend"]["rmse"], float)


def test_evaluate_prints_the_mean_of_each_metric_first(good_run, work):
    result = invoke("evaluate", good_run, "--data", work / "train.csv", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    data = str(work / "train.csv")
    got = json.loads(invoke("evaluate", good_run, "--data", work / "train.csv", "--json").stdout)[data]
    auc = np.mean([got[t]["auc"] for t in got if isinstance(got[t], dict) and "auc" in got[t]])
    summary = [line for line in lines if " mean " in line]
    assert f"{data}: mean auc {auc:.4f} over 1 task" in summary
    assert any(f"{data}: mean rmse" in line for line in summary)
    assert all(not line.startswith(f"{data}: mean count") for line in summary)
    assert lines.index(summary[0]) < min(i for i, line in enumerate(lines) if "click" in line)


# -- 7. config.yaml records every hyperparameter and rebuilds the model -----------------------------------------
def test_config_yaml_records_every_default_and_rebuilds_the_same_model(good_run):
    from polytask.config import load_config
    from polytask.data.preprocessor import Preprocessor
    from polytask.models import create_model

    raw = yaml.safe_load((good_run / CONFIG).read_text())
    assert raw["model"] == {"name": "shared_bottom", "bottom_hidden": [8], "tower_hidden": [4], "embedding_dim": 4,
                            "encoder": "tabular", "encoder_params": {}, "activation": "relu", "dropout": 0.0}
    assert raw["optimizer"]["betas"] == [0.9, 0.999] and raw["optimizer"]["amsgrad"] is False
    assert raw["weighting"] == {"name": "equal", "mode": None}  # None: the weighting's own default mode
    cfg = load_config(good_run / CONFIG)
    pre = Preprocessor.load(good_run / ENCODERS)
    torch.manual_seed(0)
    model = create_model(cfg.model.name, pre.input_spec(), pre.tasks, cfg.model.params())
    saved = torch.load(good_run / CHECKPOINT, weights_only=True)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in saved["state_dict"].items()}


def test_resolved_hyperparameters_of_every_component_reload(tmp_path):
    """Every registered model, weighting, optimiser and scheduler: the defaults written out pass
    the config schema again and name the same values."""
    from polytask.api import resolve_config, resolve_model_params, signature_defaults
    from polytask.config import config_from_dict
    from polytask.registry import MODELS, WEIGHTINGS
    from polytask.train.optim import OPTIMIZERS, SCHEDULERS

    base = {"data": {"train": "x.csv", "tasks": ["click"]}}
    for name in MODELS.names():
        cfg = resolve_config(config_from_dict({**base, "model": {"name": name}}))
        again = config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
        assert again.model.params() == resolve_model_params(name, {}), name
        assert set(signature_defaults(MODELS.get(name), ("input_spec", "tasks"))) <= set(again.model.params()), name
    for name in WEIGHTINGS.names():
        cfg = resolve_config(config_from_dict({**base, "weighting": {"name": name}}))
        again = config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
        assert set(signature_defaults(WEIGHTINGS.get(name), ("tasks",))) <= set(again.weighting.params()), name
    for name in OPTIMIZERS:
        cfg = resolve_config(config_from_dict({**base, "optimizer": {"name": name}}))
        config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    for name in SCHEDULERS:
        cfg = resolve_config(config_from_dict({**base, "scheduler": {"name": name}}))
        config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))


def test_a_scheduler_default_is_recorded_as_used(work, tmp_path):
    out = tmp_path / "run"
    polytask.fit(train=work / "train.csv", tasks=TASKS, model=MODEL, out=out, scheduler="cosine", **OPTIONS)
    raw = yaml.safe_load((out / CONFIG).read_text())
    assert raw["scheduler"] == {"name": "cosine", "T_max": OPTIONS["epochs"], "eta_min": 0.0}


def test_atomic_write_text_replaces_whole_files(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    assert time.time() >= path.stat().st_mtime


def test_out_dot_names_the_current_folder(work, tmp_path, monkeypatch):
    """`--out .` in a folder of the user's: refused like any folder that is not a run."""
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    one_error_line(train(work, Path("."), "--overwrite"), "not a polytask run directory", "keep.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_atomic_writes_keep_the_usual_file_modes(tmp_path):
    """A temporary file is private (0600); the file it becomes has the mode a plain write gives,
    or keeps the mode of the file it replaces."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644
        (tmp_path / "shared.txt").write_text("old")
        (tmp_path / "shared.txt").chmod(0o664)
        atomic_write_text(tmp_path / "shared.txt", "new")
        assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_a_full_disk_while_writing_predictions_is_one_line(good_run, work, tmp_path, monkeypatch):
    dest = tmp_path / "pred.csv"
    dest.write_text("old predictions\n")

    def disk_full(table, where, *args, **kwargs):
        Path(where).write_text("click,seg")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pacsv, "write_csv", disk_full)
    one_error_line(invoke("predict", good_run, work / "new.csv", "-o", dest), str(dest), "No space left")
    assert dest.read_text() == "old predictions\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pred.csv"]


def test_damaged_saved_metrics_do_not_block_evaluate(run_copy):
    (run_copy / "metrics.json").write_text('{"validation": {"click": ')
    result = invoke("evaluate", run_copy, "--json")
    assert result.exit_code == 0, result.stderr
    assert all(line.startswith("warning: ") and "metrics.json" in line for line in result.stderr.strip().splitlines())


def test_a_default_that_cannot_be_written_back_stays_implicit():
    from polytask.api import _resolved, signature_defaults

    sentinel = object()

    def component(tasks, *, width: int = None, depth: int = 3, extra: object = sentinel, given: int = 1):  # noqa: RUF013
        return None

    resolved = _resolved(signature_defaults(component, ("tasks",)), {"given": 5}, component, ("tasks",))
    # width=None would be refused by its own annotation, extra is no YAML value: both left out
    assert resolved == {"depth": 3, "given": 5}


def test_run_save_is_as_careful_as_training(good_run, tmp_path, work):
    run = Run.load(good_run)
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own config")
    with pytest.raises(ConfigError, match="not a polytask run directory"):
        run.save(mine, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["config.yaml"] and (mine / "config.yaml").read_text() == "my own config"

    out = tmp_path / "copy"
    run.save(out)
    assert {p.name for p in out.iterdir()} == RUN_FILES - {"data.json"}
    again = Run.load(out)
    new = pd.read_csv(work / "new.csv")
    np.testing.assert_array_equal(again.predict(new)["click"], run.predict(new)["click"])
    assert [r["epoch"] for r in again.history] == [1, 2] and again.metrics == run.metrics
    with pytest.raises(ConfigError, match="--overwrite"):
        run.save(out)
    # replacing a run with more files: none of the old run's files survive beside the new ones
    shutil.rmtree(out)
    shutil.copytree(good_run, out)
    run.history = []
    run.save(out, overwrite=True)
    assert {p.name for p in out.iterdir()} == RUN_FILES - {"data.json", "metrics.jsonl"}
    Run.load(out)
