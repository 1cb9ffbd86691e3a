"""Issue 11: one table of bad inputs, each run through the ``polytask`` CLI.

Every case must stop with exit code 2, exactly one ``error: ...`` line on stderr naming the culprit
(a file, column, row or config key), no traceback, and leave the working folder exactly as it was:
no ``run``, no ``run.partial``, no ``run.lock``, no partial ``-o`` output, and every file that was
there before (an earlier prediction, a damaged run, a leftover ``.partial``) byte-identical.

A case is ``(id, setup, expected)``: ``setup(work)`` writes what the case needs into a fresh folder
(the current directory while the command runs) and returns the command line; ``expected`` are
substrings of the error line. Two module fixtures keep it fast: the CSV files and one run trained
for one epoch (plus an interrupted ``.partial``), copied into each case's folder on demand.
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from polytask.cli import app

runner = CliRunner()

HEADER = ["uid", "age", "city", "score", "click", "buy", "spend", "segment", "w", "q", "rel", "words", "tags"]

BASE = {
    "data": {
        "train": "train.csv",
        "validation": "valid.csv",
        "features": {"numeric": ["age", "score"], "categorical": ["city"]},
        "tasks": [
            {"name": "click"},
            {"name": "buy", "where": "click == 1"},
            {"name": "spend", "kind": "regression"},
            {"name": "segment", "kind": "multiclass"},
        ],
    },
    "model": {"name": "mmoe", "num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]},
    "train": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu", "seed": 0},
}


def make_rows(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        score = float(rng.normal())
        click = int(rng.random() < 0.5)
        buy = "" if not click else str(int(rng.random() < 0.4))
        segment = "high" if score > 0.5 else "low" if score < -0.5 else "mid"
        k = int(rng.integers(1, 4))
        words = "|".join(rng.choice(["a", "b", "c", "d"], k))
        tags = "|".join(rng.choice(["O", "X"], k))
        out.append([str(i), str(int(rng.integers(18, 70))), str(rng.choice(["paris", "rome", "oslo"])),
                    f"{score:.4f}", str(click), buy, f"{rng.normal() + 3:.3f}", segment, "1.0",
                    f"q{i // 5}", str(int(rng.integers(0, 3))), words, tags])
    return out


def write_csv(path: Path, header: list[str], body: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(body)


TRAIN_ROWS, VALID_ROWS, NEW_ROWS = make_rows(200, 0), make_rows(60, 1), make_rows(30, 2)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """train.csv, valid.csv, new.csv, a run trained for one epoch and an interrupted run.partial."""
    import polytask

    base = tmp_path_factory.mktemp("table_base")
    write_csv(base / "train.csv", HEADER, TRAIN_ROWS)
    write_csv(base / "valid.csv", HEADER, VALID_ROWS)
    write_csv(base / "new.csv", HEADER, NEW_ROWS)
    cfg = copy.deepcopy(BASE)
    cfg["data"]["train"] = str(base / "train.csv")
    cfg["data"]["validation"] = str(base / "valid.csv")
    (base / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    result = runner.invoke(app, ["train", str(base / "config.yaml"), "--out", str(base / "trained")])
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}\n{result.exception!r}"

    class Stop(KeyboardInterrupt):
        pass

    def stop(trainer, record):
        raise Stop

    with pytest.raises(Stop):
        polytask.fit(copy.deepcopy(cfg), out=base / "interrupted", callbacks=[stop])
    assert (base / "interrupted.partial").is_dir()
    return base


# -- helpers that build the setups ----------------------------------------------------------------------
Setup = Callable[[Path, Path], list]


def write_config(work: Path, cfg: dict, name: str = "config.yaml") -> str:
    (work / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return name


def train_args(*extra: str, config: str = "config.yaml", out: str = "run") -> list[str]:
    return ["train", config, "--out", out, *extra]


def copy_data(work: Path, base: Path) -> None:
    for name in ("train.csv", "valid.csv", "new.csv"):
        shutil.copy(base / name, work / name)


def with_set(*sets: str) -> Setup:
    """The base config, changed by ``--set`` options."""
    def setup(work, base):
        copy_data(work, base)
        write_config(work, BASE)
        return train_args(*[a for s in sets for a in ("--set", s)])
    return setup


def with_config(edit: Callable[[dict], None], *extra: str) -> Setup:
    """The base config, edited as a dict."""
    def setup(work, base):
        copy_data(work, base)
        cfg = copy.deepcopy(BASE)
        edit(cfg)
        write_config(work, cfg)
        return train_args(*extra)
    return setup


def with_text(text: str) -> Setup:
    """A config file written as text (duplicate keys, invalid YAML)."""
    def setup(work, base):
        copy_data(work, base)
        (work / "config.yaml").write_text(text)
        return train_args()
    return setup


def task_edit(index: int | None, **changes) -> Callable[[dict], None]:
    """Change task ``index`` (None: append a task made of ``changes``)."""
    def edit(cfg):
        tasks = cfg["data"]["tasks"]
        if index is None:
            tasks.append(dict(changes))
        else:
            tasks[index].update(changes)
    return edit


def section(key: str, **values) -> Callable[[dict], None]:
    def edit(cfg):
        cfg[key] = values
    return edit


def with_file(name: str, mutate: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]],
              role: str = "train", edit: Callable[[dict], None] | None = None) -> Setup:
    """A changed copy of the training (or validation) rows written as ``name``, used as that file."""
    def setup(work, base):
        copy_data(work, base)
        rows = TRAIN_ROWS if role == "train" else VALID_ROWS
        header, body = mutate(list(HEADER), [list(r) for r in rows])
        write_csv(work / name, header, body)
        cfg = copy.deepcopy(BASE)
        cfg["data"][role] = name
        if edit is not None:
            edit(cfg)
        write_config(work, cfg)
        return train_args()
    return setup


def set_value(column: str, row: int, value: str):
    def mutate(header, body):
        body[row][header.index(column)] = value
        return header, body
    return mutate


def set_column(column: str, value: str):
    def mutate(header, body):
        for r in body:
            r[header.index(column)] = value
        return header, body
    return mutate


def drop(column: str):
    def mutate(header, body):
        i = header.index(column)
        return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in body]
    return mutate


def bytes_file(name: str, data: bytes, role: str = "train", edit: Callable[[dict], None] | None = None) -> Setup:
    def setup(work, base):
        copy_data(work, base)
        (work / name).write_bytes(data)
        cfg = copy.deepcopy(BASE)
        cfg["data"][role] = name
        if edit is not None:
            edit(cfg)
        write_config(work, cfg)
        return train_args()
    return setup


def csv_text(header: list[str], body: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in [header, *body]) + "\n"


def run_copy(work: Path, base: Path, name: str = "myrun") -> Path:
    dest = work / name
    shutil.copytree(base / "trained", dest)
    return dest


def predict(*args: str, before: Callable[[Path, Path], None] | None = None) -> Setup:
    """``polytask predict myrun <args>`` (``myrun``: a copy of the trained run)."""
    def setup(work, base):
        copy_data(work, base)
        run_copy(work, base)
        if before is not None:
            before(work, base)
        return ["predict", "myrun", *args]
    return setup


def damaged(command: str, damage: Callable[[Path], None]) -> Setup:
    """``predict`` or ``evaluate`` on a copy of the trained run that ``damage`` broke."""
    def setup(work, base):
        copy_data(work, base)
        damage(run_copy(work, base))
        if command == "predict":
            return ["predict", "myrun", "new.csv", "-o", "pred.csv"]
        return ["evaluate", "myrun", "--json"]
    return setup


def truncate(name: str):
    def damage(run):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    return damage


def flip_byte(name: str):
    def damage(run):
        data = bytearray((run / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (run / name).write_bytes(bytes(data))
    return damage


def rewrite(name: str, text: str, manifest: bool = True):
    def damage(run):
        (run / name).write_text(text)
        if manifest:
            from polytask.run import write_manifest
            write_manifest(run)
    return damage


def edit_encoders(edit: Callable[[dict], None]):
    def damage(run):
        from polytask.run import write_manifest
        enc = json.loads((run / "encoders.json").read_text())
        edit(enc)
        (run / "encoders.json").write_text(json.dumps(enc))
        write_manifest(run)
    return damage


def _grow_city(enc):
    next(f for f in enc["features"] if f["spec"]["name"] == "city")["state"]["vocab"].append("lima")


def _click_regression(enc):
    next(t for t in enc["tasks"] if t["name"] == "click")["kind"] = "regression"


def _segment_classes(enc):
    next(t for t in enc["tasks"] if t["name"] == "segment")["classes"] = ["high", "low", "mid", "vip"]


def leftover_partial(*extra: str, from_interrupted: bool = True) -> Setup:
    def setup(work, base):
        copy_data(work, base)
        shutil.copy(base / "config.yaml", work / "config.yaml")  # the interrupted run's own config
        if from_interrupted:
            shutil.copytree(base / "interrupted.partial", work / "run.partial")
        else:
            (work / "run.partial").mkdir()
            (work / "run.partial" / "config.yaml").write_text("name: killed\n")
        return train_args(*extra)
    return setup


def out_is(kind: str, *extra: str) -> Setup:
    def setup(work, base):
        copy_data(work, base)
        write_config(work, BASE)
        if kind == "file":
            (work / "afile").write_text("x")
            return train_args(*extra, out="afile")
        if kind == "under-file":
            (work / "afile").write_text("x")
            return train_args(*extra, out="afile/run")
        (work / "thesis").mkdir()
        (work / "thesis" / "chapter1.tex").write_text("years of work")
        return train_args(*extra, out="thesis")
    return setup


def evaluate_not_a_run(make: bool) -> Setup:
    def setup(work, base):
        if make:
            (work / "notrun").mkdir()
            (work / "notrun" / "metrics.json").write_text("{}")
        return ["evaluate", "notrun"]
    return setup


def existing(name: str, content: bytes = b"old predictions\n") -> Callable[[Path, Path], None]:
    def before(work, base):
        (work / name).write_bytes(content)
    return before


def input_file(name: str, mutate) -> Callable[[Path, Path], None]:
    def before(work, base):
        header, body = mutate(list(HEADER), [list(r) for r in NEW_ROWS])
        write_csv(work / name, header, body)
    return before


# -- the table ----------------------------------------------------------------------------------------------
def config_cases() -> list:
    cases = []
    # unknown keys, in every section
    for key in ["foo", "train.epochz", "data.split.valid", "data.features.numerc", "data.trainn",
                "optimizer.lrr", "scheduler.T_maxx", "model.num_expertz", "weighting.alphaa"]:
        cases.append((f"unknown-key-{key}", with_set(f"{key}=1"), [key]))
    cases += [
        ("unknown-top-section-in-file", with_config(lambda c: c.update(trainer={"epochs": 3})), ["config.yaml", "trainer"]),
        ("unknown-task-key-in-file", with_config(task_edit(0, kindd="binary")), ["data.tasks.0.kindd"]),
        ("unknown-feature-option", with_config(lambda c: c["data"]["features"]["numeric"].append({"name": "w", "scal": "none"})),
         ["data.features.numeric.2", "'scal'"]),
        ("unknown-split-key-in-file", with_config(lambda c: c["data"].update(split={"validaton": 0.2})), ["data.split.validaton"]),
    ]
    # wrong types, bools for ints and numbers for bools
    for key, value in [("train.epochs", "abc"), ("train.epochs", "true"), ("train.batch_size", "2.0"),
                       ("train.batch_size", "true"), ("train.progress", "1"), ("train.patience", "false"),
                       ("train.threads", "true"), ("train.seed", "true"), ("train.epochs", "0"),
                       ("train.batch_size", "-5"), ("train.threads", "0"), ("data.split.seed", "true"),
                       ("data.split.validation", "true"), ("data.split.validation", "1.5"),
                       ("data.split.test", "-0.1"), ("optimizer.lr", "true"), ("optimizer.lr", "0"),
                       ("optimizer.lr", "fast"), ("optimizer.weight_decay", "'0.1'"),
                       ("optimizer.weight_decay", "-1"), ("model.num_experts", "many"),
                       ("model.num_experts", "true"), ("model.num_experts", "2.0"),
                       ("model.expert_hidden", "[8, true]"), ("model.gate_bias", "1"), ("model.dropout", "true")]:
        cases.append((f"type-{key}={value}", with_set(f"{key}={value}"), [key]))
    cases += [
        ("task-weight-bool", with_config(task_edit(0, weight=True)), ["data.tasks.0.weight"]),
        ("task-weight-negative", with_config(task_edit(0, weight=-1.0)), ["data.tasks.0.weight"]),
        ("multiclass-num-classes-bool", with_config(task_edit(3, num_classes=True)), ["data.tasks.3.num_classes"]),
        ("feature-min-count-bool", with_config(lambda c: c["data"]["features"].update(categorical=[{"name": "city", "min_count": True}])),
         ["data.features.categorical.0.min_count"]),
        ("feature-log1p-int", with_config(lambda c: c["data"]["features"].update(numeric=[{"name": "age", "log1p": 1}, "score"])),
         ["data.features.numeric.0.log1p"]),
        ("feature-scale-unknown", with_config(lambda c: c["data"]["features"].update(numeric=[{"name": "age", "scale": "zscore"}, "score"])),
         ["data.features.numeric.0.scale"]),
        ("freeze-without-init-from", with_set("train.freeze=shared"), ["freeze"]),
    ]
    # duplicate keys and invalid YAML
    text = yaml.safe_dump(BASE, sort_keys=False)
    cases += [
        ("yaml-duplicate-train-key", with_text(text.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 5\n")),
         ["config.yaml", "duplicate key 'epochs'"]),
        ("yaml-duplicate-section", with_text(text + "model:\n  name: ple\n"), ["config.yaml", "duplicate key 'model'"]),
        ("yaml-duplicate-task-key", with_text(text.replace("  - name: click\n", "  - name: click\n    name: clack\n")),
         ["config.yaml", "duplicate key 'name'"]),
        ("yaml-duplicate-in-set", with_set("data.params={group: 1, group: 2}"), ["duplicate key 'group'"]),
        ("yaml-unclosed-bracket", with_text("data: [unclosed\n"), ["config.yaml"]),
        ("yaml-bad-indent", with_text("data:\n  train: train.csv\n bad: 1\n"), ["config.yaml"]),
        ("yaml-tab", with_text("data:\n\ttrain: train.csv\n"), ["config.yaml"]),
        ("yaml-not-a-mapping", with_text("- a\n- b\n"), ["config.yaml"]),
        ("config-file-missing", lambda w, b: train_args(config="nope.yaml"), ["nope.yaml"]),
        ("set-without-equals", with_set("train.epochs"), ["train.epochs"]),
        ("unset-missing-key", lambda w, b: (copy_data(w, b), write_config(w, BASE), train_args("--unset", "model.num_expertz"))[2],
         ["model.num_expertz"]),
        ("no-data-source", with_config(lambda c: c["data"].pop("train")), ["data.train"]),
        ("dataset-and-train", with_set("data.dataset=census_income"), ["data.dataset", "data.train"]),
        ("no-tasks", with_config(lambda c: c["data"].pop("tasks")), ["data.tasks"]),
    ]
    # monitors
    for monitor, needle in [("clik.auc", "clik"), ("click.rmse", "rmse"), ("auc", "auc"), ("spend.auc", "auc"),
                            ("click.", "'click'")]:
        cases.append((f"monitor-{monitor}", with_set(f"train.monitor={monitor}"), ["train.monitor", needle]))
    # unknown names of registered components
    cases += [
        ("unknown-model", with_set("model.name=mmoe_plus"), ["mmoe_plus"]),
        ("unknown-weighting", with_set("weighting.name=uncertaintyy"), ["uncertaintyy"]),
        ("unknown-optimizer", with_set("optimizer.name=adamm"), ["optimizer.name"]),
        ("unknown-scheduler", with_set("scheduler.name=cosinee"), ["scheduler.name"]),
        ("unknown-encoder", with_set("model.encoder=transformerr"), ["transformerr"]),
        ("unknown-column-family", with_config(section("model", name="cross_stitch", hidden=[8], columns="lstmm")), ["lstmm"]),
        ("unknown-task-kind", with_config(task_edit(0, kind="binaryy")), ["data.tasks.0.kind", "binaryy"]),
        ("unknown-device", with_set("train.device=tpu9"), ["train.device"]),
        ("unknown-feature-type", with_config(lambda c: c["data"]["features"].update(images=["age"])), ["data.features.images"]),
    ]
    # hyperparameters the models, weightings and optimisers refuse
    cases += [
        ("mmoe-num-experts-0", with_set("model.num_experts=0"), ["num_experts"]),
        ("mmoe-num-experts-negative", with_set("model.num_experts=-2"), ["num_experts"]),
        ("mmoe-dropout-1.5", with_set("model.dropout=1.5"), ["dropout"]),
        ("mmoe-unknown-activation", with_set("model.activation=relux"), ["relux"]),
        ("ple-num-levels-0", with_config(section("model", name="ple", num_levels=0)), ["num_levels"]),
        ("shared-bottom-unknown-param", with_config(section("model", name="shared_bottom", num_experts=2)), ["model.num_experts"]),
        ("encoder-params-unknown", with_set("model.encoder_params={widthh: 3}"), ["widthh"]),
        ("column-params-unknown", with_config(section("model", name="cross_stitch", hidden=[8], column_params={"foo": 1})), ["foo"]),
        ("column-params-lstm-feature", with_config(section("model", name="cross_stitch", hidden=[8], columns="lstm",
                                                           column_params={"feature": "age"})), ["model.column_params.feature"]),
        ("weighting-unknown-param", with_config(section("weighting", name="uncertainty", alphaa=1)), ["weighting.alphaa"]),
        ("optimizer-negative-eps", with_set("optimizer.eps=-1"), ["optimizer"]),
        ("optimizer-betas-wrong-type", with_set("optimizer.betas=fast"), ["optimizer.betas"]),
        ("scheduler-unknown-param", with_config(section("scheduler", name="step", gammaa=0.5)), ["scheduler.gammaa"]),
        ("ple-no-experts", with_config(section("model", name="ple", shared_experts=0, specific_experts=0)), ["model 'ple'"]),
        ("weighting-fixed-weights-list", with_config(section("weighting", name="fixed", weights=[1.0])), ["weighting.weights"]),
        ("split-leaves-no-training-rows", with_config(lambda c: (c["data"].pop("validation"),
                                                                 c["data"].update(split={"validation": 0.6, "test": 0.5}))),
         ["data.split"]),
        ("sequence-max-len-0", with_config(lambda c: c["data"]["features"].update(sequence=[{"name": "words", "max_len": 0}])),
         ["data.features.sequence.0.max_len"]),
        ("train-patience-negative", with_set("train.patience=-1"), ["train.patience"]),
    ]
    # task kinds and their options
    cases += [
        ("tagging-without-tokens", with_config(task_edit(None, name="tags", kind="tagging")), ["tokens"]),
        ("tagging-tokens-not-a-feature", with_config(task_edit(None, name="tags", kind="tagging", tokens="words")), ["words"]),
        ("ranking-without-group", with_config(task_edit(None, name="rank", kind="ranking", label="rel")), ["group"]),
        ("ranking-bad-loss", with_config(task_edit(None, name="rank", kind="ranking", label="rel", group="q", loss="pointwise")),
         ["loss"]),
        ("binary-unknown-option", with_config(task_edit(0, num_classes=2)), ["data.tasks.0", "num_classes"]),
        ("duplicate-task-names", with_config(task_edit(None, name="click")), ["click"]),
        ("where-unknown-column", with_config(task_edit(1, where="clack == 1")), ["clack"]),
        ("where-syntax-error", with_config(task_edit(1, where="click ==")), ["click =="]),
        ("weight-column-missing", with_config(task_edit(0, weight_column="wt")), ["'wt'"]),
        ("feature-pattern-no-match", with_config(lambda c: c["data"]["features"]["numeric"].append("zz*")), ["zz*"]),
        ("feature-bad-regex", with_config(lambda c: c["data"]["features"]["numeric"].append("re:(")), ["re:("]),
        ("label-declared-as-feature", with_config(lambda c: c["data"]["features"]["numeric"].append("spend")), ["spend"]),
        # values the kinds refuse in their constructors (were tracebacks: ValueError escaped the CLI)
        ("multiclass-num-classes-1", with_config(task_edit(3, num_classes=1)), ["data.tasks.3", "num_classes"]),
        ("multiclass-classes-vs-num-classes", with_config(task_edit(3, num_classes=3, classes=["a", "b"])),
         ["data.tasks.3", "classes"]),
        ("regression-std-0", with_config(task_edit(2, mean=0.0, std=0.0)), ["data.tasks.2", "std"]),
        ("ranking-k-0", with_config(task_edit(None, name="rank", kind="ranking", label="rel", group="q", k=0)), ["k must be"]),
        ("multilabel-no-labels", with_config(task_edit(None, name="ml", kind="multilabel", labels=[])), ["labels"]),
        ("tagging-max-len-0", with_config(task_edit(None, name="tags", kind="tagging", tokens="words", max_len=0)),
         ["max_len"]),
        # sizes the blocks refuse (were tracebacks from torch, or silently zero-width layers)
        ("mmoe-negative-expert-width", with_set("model.expert_hidden=[-8]"), ["model 'mmoe'", "[-8]"]),
        ("mmoe-zero-expert-width", with_set("model.expert_hidden=[0]"), ["model 'mmoe'", "[0]"]),
        ("mmoe-negative-tower-width", with_set("model.tower_hidden=[-1]"), ["model 'mmoe'", "[-1]"]),
        ("mmoe-embedding-dim-0", with_set("model.embedding_dim=0"), ["embedding_dim"]),
        ("scheduler-step-size-0", with_config(section("scheduler", name="step", step_size=0)), ["scheduler.step_size"]),
    ]
    return cases


def data_cases() -> list:
    body = TRAIN_ROWS
    cases = [
        ("missing-train-file", with_config(lambda c: c["data"].update(train="nowhere.csv")), ["nowhere.csv"]),
        ("missing-validation-file", with_config(lambda c: c["data"].update(validation="nowhere_valid.csv")), ["nowhere_valid.csv"]),
        ("missing-test-file", with_config(lambda c: c["data"].update(test="nowhere_test.csv")), ["nowhere_test.csv"]),
        ("unsupported-suffix", bytes_file("train.xlsx", b"PK\x03\x04"), ["train.xlsx"]),
        ("empty-file", bytes_file("empty.csv", b""), ["empty.csv"]),
        ("header-only", bytes_file("head.csv", (",".join(HEADER) + "\n").encode()), ["head.csv"]),
        ("invalid-utf8", bytes_file("latin.csv", csv_text(HEADER, body).replace("paris", "p\udce2ris", 1)
                                    .encode("utf-8", "surrogateescape")), ["latin.csv", "'city'"]),
        ("duplicate-column", with_file("dup.csv", lambda h, b: (h + ["age"], [r + [r[1]] for r in b])), ["dup.csv", "'age'"]),
        ("ragged-row", bytes_file("ragged.csv", (csv_text(HEADER, body) + "1,2\n").encode()), ["ragged.csv"]),
        ("directory-as-train", lambda w, b: (copy_data(w, b), (w / "adir.csv").mkdir(),
                                             write_config(w, {**BASE, "data": {**BASE["data"], "train": "adir.csv"}}),
                                             train_args())[3], ["adir.csv"]),
        ("parquet-that-is-not", bytes_file("fake.parquet", b"not parquet at all"), ["fake.parquet"]),
        ("one-row-carved", with_file("one.csv", lambda h, b: (h, b[:1]), edit=lambda c: c["data"].pop("validation")),
         ["one.csv"]),
    ]
    for column in ["age", "city", "score", "click", "spend", "segment"]:
        for role, name in [("train", f"train_no_{column}.csv"), ("validation", f"valid_no_{column}.csv")]:
            cases.append((f"missing-column-{column}-in-{role}", with_file(name, drop(column), role), [name, f"'{column}'"]))
    cases.append(("missing-where-column", with_file("nobuy.csv", drop("buy")), ["nobuy.csv", "'buy'"]))
    cases.append(("declared-feature-missing-everywhere", with_set("data.features.numeric=[age, score, height]"),
                  ["train.csv", "'height'"]))
    for column, row, value in [("age", 42, "abc"), ("score", 7, "1,5"), ("spend", 5, "lots"), ("click", 3, "yes"),
                               ("click", 17, "2"), ("click", 9, "-1"), ("click", 11, "0.5"), ("buy", 0, "maybe")]:
        for role in ("train", "validation"):
            if column == "buy" and role == "train":
                row = next(i for i, r in enumerate(TRAIN_ROWS) if r[HEADER.index("buy")])
            name = f"bad_{column}_{role}.csv"
            cases.append((f"value-{column}={value}-{role}", with_file(name, set_value(column, row, value), role),
                          [name, f"'{column}'", f"row {row}"]))
    for column, value in [("score", "inf"), ("score", "-inf"), ("age", "inf"), ("spend", "inf"), ("spend", "-inf")]:
        name = f"inf_{column}.csv"
        cases.append((f"non-finite-{column}={value}", with_file(name, set_value(column, 17, value)),
                      [name, f"'{column}'", "row 17"]))
    cases.append(("inf-in-validation", with_file("valid_inf.csv", set_value("score", 5, "inf"), "validation"),
                  ["valid_inf.csv", "'score'", "row 5"]))
    cases += [
        ("carved-split-names-file-row", with_file("carve.csv", set_value("score", 123, "inf"),
                                                  edit=lambda c: c["data"].pop("validation")), ["carve.csv", "row 123"]),
        ("empty-regression-label", with_file("nospend.csv", set_column("spend", "")), ["nospend.csv", "'spend'"]),
        ("empty-binary-label", with_file("noclick.csv", set_column("click", "")), ["noclick.csv", "'click'"]),
        ("single-class-multiclass", with_file("oneseg.csv", set_column("segment", "mid")), ["oneseg.csv", "'segment'"]),
        ("where-selects-nothing", with_config(task_edit(None, name="rich", kind="regression", label="spend", where="age > 500")),
         ["'rich'", "train.csv"]),
        ("unknown-class-in-validation", with_file("valid_vip.csv", set_value("segment", 4, "vip"), "validation"),
         ["valid_vip.csv", "'segment'"]),
        ("negative-weights", with_file("negw.csv", set_value("w", 8, "-1.0"), edit=task_edit(0, weight_column="w")),
         ["negw.csv", "'w'"]),
        ("non-numeric-weights", with_file("txtw.csv", set_value("w", 8, "heavy"), edit=task_edit(0, weight_column="w")),
         ["txtw.csv", "'w'"]),
        ("negative-relevance", with_file("negrel.csv", set_value("rel", 6, "-1"),
                                         edit=task_edit(None, name="rank", kind="ranking", label="rel", group="q")),
         ["negrel.csv", "'rel'"]),
    ]

    def tagging(cfg):
        cfg["data"]["features"]["sequence"] = ["words"]
        cfg["data"]["tasks"].append({"name": "tags", "kind": "tagging", "tokens": "words"})

    def mismatch(header, body):
        i = header.index("tags")
        body[12][i] = body[12][i] + "|O|O"
        return header, body

    cases.append(("tag-count-mismatch", with_file("tagged.csv", mismatch, edit=tagging), ["tagged.csv", "'tags'"]))
    return cases


def run_cases() -> list:
    cases = [
        ("out-is-a-file", out_is("file"), ["afile"]),
        ("out-under-a-file", out_is("under-file"), ["afile"]),
        ("out-non-run-folder", out_is("folder"), ["thesis", "not a polytask run directory"]),
        ("out-non-run-folder-overwrite", out_is("folder", "--overwrite"), ["thesis", "not a polytask run directory"]),
        ("leftover-partial", leftover_partial(), ["run.partial", "--resume"]),
        ("leftover-foreign-partial", leftover_partial(from_interrupted=False), ["run.partial"]),
        ("resume-other-config", leftover_partial("--resume", "--set", "optimizer.lr=0.01"), ["config differs", "optimizer.lr"]),
        ("resume-other-model", leftover_partial("--resume", "--set", "model.num_experts=3"), ["config differs", "model.num_experts"]),
    ]
    # predict
    cases += [
        ("predict-o-directory", predict("new.csv", "-o", "outdir", before=lambda w, b: (w / "outdir").mkdir()), ["outdir"]),
        ("predict-o-json", predict("new.csv", "-o", "pred.json"), ["pred.json"]),
        ("predict-o-xlsx-in-new-dir", predict("new.csv", "-o", "newdir/pred.xlsx"), ["pred.xlsx", "unknown output type"]),
        ("predict-o-json-keeps-existing", predict("new.csv", "-o", "pred.json", before=existing("pred.json")), ["pred.json"]),
        ("predict-o-under-file", predict("new.csv", "-o", "afile/pred.csv", before=existing("afile", b"x")), ["afile"]),
        ("predict-missing-input", predict("nothere.csv", "-o", "pred.csv"), ["nothere.csv"]),
        ("predict-missing-feature", predict("nocity.csv", "-o", "pred.csv", before=input_file("nocity.csv", drop("city"))),
         ["nocity.csv", "'city'"]),
        ("predict-missing-feature-keeps-output", predict("noscore.csv", "-o", "pred.csv", before=lambda w, b: (
            existing("pred.csv")(w, b), input_file("noscore.csv", drop("score"))(w, b))), ["noscore.csv", "'score'"]),
        ("predict-keep-unknown-column", predict("new.csv", "-o", "pred.csv", "--keep", "user_id", before=existing("pred.csv")),
         ["'user_id'"]),
        ("predict-inf-feature", predict("inf.csv", "-o", "pred.parquet", before=input_file("inf.csv", set_value("score", 3, "inf"))),
         ["inf.csv", "'score'", "row 3"]),
        ("predict-non-numeric-feature", predict("txt.csv", "-o", "pred.csv", before=input_file("txt.csv", set_value("age", 2, "old"))),
         ["txt.csv", "'age'"]),
        ("predict-header-only", predict("head.csv", "-o", "pred.csv", before=input_file("head.csv", lambda h, b: (h, []))),
         ["head.csv"]),
        ("predict-not-a-run", lambda w, b: (copy_data(w, b), (w / "empty_dir").mkdir(),
                                            ["predict", "empty_dir", "new.csv", "-o", "pred.csv"])[2], ["empty_dir"]),
    ]
    # damaged runs
    for command in ("predict", "evaluate"):
        cases += [
            (f"{command}-truncated-model", damaged(command, truncate("model.pt")), ["model.pt"]),
            (f"{command}-flipped-byte-model", damaged(command, flip_byte("model.pt")), ["model.pt"]),
            (f"{command}-missing-model", damaged(command, lambda r: (r / "model.pt").unlink()), ["model.pt"]),
            (f"{command}-encoders-vocab", damaged(command, edit_encoders(_grow_city)), ["encoders.json"]),
            (f"{command}-encoders-kind", damaged(command, edit_encoders(_click_regression)), ["encoders.json", "click"]),
            (f"{command}-encoders-classes", damaged(command, edit_encoders(_segment_classes)), ["encoders.json"]),
            (f"{command}-encoders-not-json", damaged(command, rewrite("encoders.json", "{\"features\": ")), ["encoders.json"]),
            (f"{command}-config-not-yaml", damaged(command, rewrite("config.yaml", "data: [unclosed\n")), ["config.yaml"]),
            (f"{command}-config-empty-data", damaged(command, rewrite("config.yaml", "data: {}\n")), ["config.yaml"]),
            (f"{command}-manifest-not-json", damaged(command, rewrite("manifest.json", '{"files": ', manifest=False)),
             ["manifest.json"]),
        ]
    cases += [
        ("evaluate-not-a-run", evaluate_not_a_run(True), ["notrun", "not a run directory"]),
        ("evaluate-missing-dir", evaluate_not_a_run(False), ["notrun"]),
        ("evaluate-data-missing-label", lambda w, b: (copy_data(w, b), run_copy(w, b),
                                                      input_file("nobuy.csv", drop("buy"))(w, b),
                                                      ["evaluate", "myrun", "--data", "nobuy.csv"])[3], ["nobuy.csv", "'buy'"]),
        ("evaluate-data-bad-binary-label", lambda w, b: (copy_data(w, b), run_copy(w, b),
                                                         input_file("lab.csv", set_value("click", 4, "3"))(w, b),
                                                         ["evaluate", "myrun", "--data", "lab.csv"])[3],
         ["lab.csv", "'click'", "row 4"]),
        ("evaluate-data-inf-feature", lambda w, b: (copy_data(w, b), run_copy(w, b),
                                                    input_file("infe.csv", set_value("age", 6, "-inf"))(w, b),
                                                    ["evaluate", "myrun", "--data", "infe.csv"])[3],
         ["infe.csv", "'age'", "row 6"]),
        ("evaluate-data-missing-file", lambda w, b: (run_copy(w, b), ["evaluate", "myrun", "--data", "gone.csv"])[1],
         ["gone.csv"]),
    ]
    return cases


CASES = config_cases() + data_cases() + run_cases()


def snapshot(directory: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(directory.rglob("*"))}


def test_the_table_is_large_and_its_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 100 and len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]


@pytest.mark.parametrize("setup, expected", [pytest.param(s, e, id=i) for i, s, e in CASES])
def test_bad_input(base, tmp_path, monkeypatch, setup, expected):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [str(a) for a in setup(work, base)]
    before = snapshot(work)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (
        f"{args}\nexit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\nexc: {result.exception!r}")
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in expected:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert snapshot(work) == before, "the command left files behind or changed the user's files"

