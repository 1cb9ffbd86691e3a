"""Tests of the Ali-CCP loader (ESMM, Ma et al., SIGIR 2018): torch-rechub CSVs, PaddleRec lines and
Alibaba's raw Tianchi files (sample_skeleton + common_features).

These read the real sample files from the data directory (``$POLYTASK_DATA_DIR`` or
``../shared/data``, folder ``ali_ccp_samples``) and fail, not skip, when they cannot be found.
Counts are those of ``ali_ccp_samples/README.md``; the PaddleRec lines are checked against an
independent line-by-line parse. No raw Tianchi file is available: the raw-format tests write raw files
built from the PaddleRec sample lines (user fields -> common_features blocks) and compare both loaders.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import polytask
from polytask.data.datasets.ali_ccp import (
    PADDLEREC_CATEGORICAL,
    PADDLEREC_SEQUENCE,
    RECHUB_CATEGORICAL,
    RECHUB_NUMERIC,
    ali_ccp,
)
from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.errors import ConfigError, DataError
from polytask.registry import DATASETS

# ali_ccp_samples/README.md: rows, click positives, purchase positives per file
RECHUB_COUNTS = {"train": (100, 7, 1), "validation": (50, 3, 1), "test": (50, 2, 1)}
RECHUB_FILES = {"train": "ali_ccp_train_sample.csv", "validation": "ali_ccp_val_sample.csv", "test": "ali_ccp_test_sample.csv"}


@pytest.fixture(scope="module")
def samples() -> Path:
    return dataset_dir("ali_ccp_samples")


@pytest.fixture(scope="module")
def rechub() -> DatasetBundle:
    return ali_ccp()


@pytest.fixture(scope="module")
def paddle(samples: Path) -> DatasetBundle:
    return ali_ccp(path=str(samples / "paddlerec_esmm"), validation_fraction=0.3)


def _sum(table: pa.Table, column: str) -> int:
    return int(pc.sum(table.column(column)).as_py())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- torch-rechub CSV --------------------------------------------------------------------------------
def test_rechub_default_reads_the_three_sample_files(rechub: DatasetBundle, samples: Path) -> None:
    for split, (rows, clicks, purchases) in RECHUB_COUNTS.items():
        table = getattr(rechub, split)
        assert table.num_rows == rows, split
        assert _sum(table, "click") == clicks and _sum(table, "purchase") == purchases, split
        assert rechub.sources[split] == str(samples / "torch_rechub" / RECHUB_FILES[split])
    assert "format rechub" in rechub.notes and "splits from files: train, validation, test" in rechub.notes
    assert "smoke tests only" in rechub.notes


def test_rechub_values_match_the_file_rows(rechub: DatasetBundle, samples: Path) -> None:
    for split, name in RECHUB_FILES.items():
        rows = _csv_rows(samples / "torch_rechub" / name)
        table = getattr(rechub, split)
        for column in ("click", "purchase", *RECHUB_CATEGORICAL):
            assert table.column(column).to_pylist() == [int(r[column]) for r in rows], (split, column)
        for column in RECHUB_NUMERIC:
            np.testing.assert_array_equal(table.column(column).to_numpy(), [float(r[column]) for r in rows])


def test_rechub_features_types_and_tasks(rechub: DatasetBundle) -> None:
    assert rechub.features == {"numeric": list(RECHUB_NUMERIC), "categorical": list(RECHUB_CATEGORICAL)}
    assert len(RECHUB_CATEGORICAL) == 23 and len(RECHUB_NUMERIC) == 8
    assert rechub.tasks == [
        {"name": "ctr", "kind": "binary", "label": "click"},
        {"name": "cvr", "kind": "binary", "label": "purchase", "where": "click == 1"},
        {"name": "ctcvr", "kind": "binary", "label": "ctcvr"},
    ]
    for table in (rechub.train, rechub.validation, rechub.test):
        assert set(table.column_names) == {*RECHUB_CATEGORICAL, *RECHUB_NUMERIC, "click", "purchase", "ctcvr"}
        for c in RECHUB_CATEGORICAL:
            assert table.schema.field(c).type == pa.int64()
        for c in RECHUB_NUMERIC:
            assert table.schema.field(c).type == pa.float64()
        for c in ("click", "purchase", "ctcvr"):
            assert table.schema.field(c).type == pa.int8()


def test_derived_ctcvr_is_click_and_purchase(rechub: DatasetBundle) -> None:
    for table in (rechub.train, rechub.validation, rechub.test):
        click, purchase = table.column("click").to_numpy(), table.column("purchase").to_numpy()
        np.testing.assert_array_equal(table.column("ctcvr").to_numpy(), click & purchase)
        assert ((purchase == 1) <= (click == 1)).all()  # every purchase in the samples follows a click
    assert _sum(rechub.train, "ctcvr") == 1
    assert "No purchase without a click" in rechub.notes


def test_existing_ctcvr_column_is_checked(tmp_path: Path, samples: Path) -> None:
    src = samples / "torch_rechub" / "ali_ccp_train_sample.csv"
    rows = _csv_rows(src)
    header = list(rows[0])
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    for path, flip in ((good, False), (bad, True)):
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*header, "ctcvr"])
            for i, r in enumerate(rows):
                value = int(r["click"]) & int(r["purchase"])
                w.writerow([*r.values(), 1 - value if (flip and i == 5) else value])
    b = ali_ccp(path=str(good))
    assert sum(_sum(t, "ctcvr") for t in (b.train, b.validation, b.test)) == 1
    with pytest.raises(DataError, match=r"bad\.csv.*'ctcvr' differs .* row 5"):
        ali_ccp(path=str(bad))


def test_single_file_is_split_three_ways_by_seed(samples: Path) -> None:
    path = samples / "torch_rechub" / "ali_ccp_train_sample.csv"
    a = ali_ccp(path=str(path), split_seed=1)
    assert (a.train.num_rows, a.validation.num_rows, a.test.num_rows) == (80, 10, 10)
    assert sum(_sum(t, "click") for t in (a.train, a.validation, a.test)) == 7
    assert "seeded split of train (split_seed=1) for validation, test" in a.notes
    again = ali_ccp(path=str(path), split_seed=1)
    other = ali_ccp(path=str(path), split_seed=2)
    assert a.validation.equals(again.validation) and not a.validation.equals(other.validation)
    no_test = ali_ccp(path=str(path), test_fraction=0.0)
    assert no_test.test is None and no_test.train.num_rows == 90


def test_missing_split_file_is_carved_from_train(tmp_path: Path, samples: Path) -> None:
    for name in ("ali_ccp_train_sample.csv", "ali_ccp_test_sample.csv"):
        shutil.copy(samples / "torch_rechub" / name, tmp_path / name)
    b = ali_ccp(path=str(tmp_path), validation_fraction=0.2)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (80, 20, 50)
    assert "validation part" in b.sources["validation"]


def test_exact_full_file_names_win_over_samples(tmp_path: Path, samples: Path) -> None:
    src = samples / "torch_rechub"
    shutil.copy(src / "ali_ccp_train_sample.csv", tmp_path / "ali_ccp_train_sample.csv")
    shutil.copy(src / "ali_ccp_val_sample.csv", tmp_path / "ali_ccp_train.csv")  # the "full" file: 50 rows
    shutil.copy(src / "ali_ccp_val_sample.csv", tmp_path / "ali_ccp_val.csv")
    shutil.copy(src / "ali_ccp_test_sample.csv", tmp_path / "ali_ccp_test.csv")
    b = ali_ccp(path=str(tmp_path))
    assert b.sources["train"] == str(tmp_path / "ali_ccp_train.csv") and b.train.num_rows == 50
    shutil.copy(src / "ali_ccp_val_sample.csv", tmp_path / "ali_ccp_val_sample.csv")
    shutil.copy(src / "ali_ccp_val_sample.csv", tmp_path / "ali_ccp_val_other.csv")
    (tmp_path / "ali_ccp_val.csv").unlink()
    with pytest.raises(DataError, match="several files for the validation split"):
        ali_ccp(path=str(tmp_path))


def test_max_rows_reads_a_prefix() -> None:
    b = ali_ccp(max_rows=20)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (20, 20, 20)
    full = ali_ccp()
    assert b.train.equals(full.train.slice(0, 20))


@pytest.mark.parametrize("column", ["205", "purchase", "D853", "click"])
def test_missing_column_names_the_file_and_the_column(tmp_path: Path, samples: Path, column: str) -> None:
    src = samples / "torch_rechub"
    for name in RECHUB_FILES.values():
        shutil.copy(src / name, tmp_path / name)
    rows = _csv_rows(src / RECHUB_FILES["validation"])
    target = tmp_path / RECHUB_FILES["validation"]
    with open(target, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != column])
        w.writeheader()
        w.writerows({k: v for k, v in r.items() if k != column} for r in rows)
    with pytest.raises(DataError) as err:
        ali_ccp(path=str(tmp_path))
    assert str(target) in str(err.value) and repr(column) in str(err.value)


def test_bad_values_name_the_file_and_the_column(tmp_path: Path, samples: Path) -> None:
    rows = _csv_rows(samples / "torch_rechub" / RECHUB_FILES["train"])
    for column, value, pattern in (("purchase", "2", r"'purchase' must hold 0 or 1, row 3 holds 2"),
                                   ("206", "abc", r"column '206' has a value of the wrong type")):
        target = tmp_path / f"bad_{column}.csv"
        with open(target, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({**r, column: value} if i == 3 else r for i, r in enumerate(rows))
        with pytest.raises(DataError, match=pattern) as err:
            ali_ccp(path=str(target))
        assert str(target) in str(err.value)


# -- PaddleRec lines ---------------------------------------------------------------------------------
def _parse_paddlerec(path: Path) -> list[dict[str, object]]:
    """Independent line-by-line parse of PaddleRec ESMM lines (every pair from the 4th field on)."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.strip().split(",")
        fields: dict[str, list[int]] = defaultdict(list)
        for pair in parts[3:]:
            field, feat = pair.split(":")
            fields[field].append(int(feat))
        out.append({"sample_id": int(parts[0]), "click": int(parts[1]), "purchase": int(parts[2]), **fields})
    return out


def test_paddlerec_lines_match_an_independent_parse(paddle: DatasetBundle, samples: Path) -> None:
    folder = samples / "paddlerec_esmm"
    expected = {"train": _parse_paddlerec(folder / "train_small.txt"), "test": _parse_paddlerec(folder / "test_small.txt")}
    assert len(expected["train"]) == len(expected["test"]) == 10
    # train + validation are the train file's lines, test the test file's, in file order within each split
    parts = {"train": pa.concat_tables([paddle.train, paddle.validation]), "test": paddle.test}
    for split, table in parts.items():
        by_id = {r["sample_id"]: r for r in expected[split]}
        assert sorted(table.column("sample_id").to_pylist()) == sorted(by_id)
        for i, sid in enumerate(table.column("sample_id").to_pylist()):
            want = by_id[sid]
            assert table.column("click")[i].as_py() == want["click"]
            assert table.column("purchase")[i].as_py() == want["purchase"]
            for field in PADDLEREC_SEQUENCE:
                assert table.column(field)[i].as_py() == want.get(field, []), (split, sid, field)
            for field in PADDLEREC_CATEGORICAL:
                values = want.get(field, [])
                assert len(values) <= 1
                assert table.column(field)[i].as_py() == (values[0] if values else None), (split, sid, field)


def test_paddlerec_counts_types_and_features(paddle: DatasetBundle) -> None:
    train_file = pa.concat_tables([paddle.train, paddle.validation])
    assert (train_file.num_rows, _sum(train_file, "click"), _sum(train_file, "purchase")) == (10, 2, 1)
    assert (paddle.test.num_rows, _sum(paddle.test, "click"), _sum(paddle.test, "purchase")) == (10, 1, 0)
    assert (paddle.train.num_rows, paddle.validation.num_rows) == (7, 3)
    assert paddle.features == {
        "categorical": list(PADDLEREC_CATEGORICAL),
        "sequence": [{"name": f, "max_len": 50} for f in PADDLEREC_SEQUENCE],
    }
    assert len(PADDLEREC_CATEGORICAL) + len(PADDLEREC_SEQUENCE) == 23
    t = paddle.test
    assert t.schema.field("205").type == pa.int64() and t.schema.field("110_14").type == pa.list_(pa.int64())
    assert t.column("126").null_count == t.num_rows  # field 126 never occurs in the samples
    assert max(len(v) for v in t.column("110_14").to_pylist()) == 342
    assert "format paddlerec" in paddle.notes and "exceed sequence_max_len=50" in paddle.notes
    assert "sample_id" not in [c for cols in paddle.features.values() for c in (x if isinstance(x, str) else x["name"] for x in cols)]
    np.testing.assert_array_equal(t.column("ctcvr").to_numpy(), t.column("click").to_numpy() & t.column("purchase").to_numpy())


def test_paddlerec_reads_the_first_pair_that_paddlerecs_reader_skips(paddle: DatasetBundle) -> None:
    # line 1 of test_small.txt starts "1,0,0,210:1,210:2,210:3,216:4,..."
    row = paddle.test.column("sample_id").to_pylist().index(1)
    assert paddle.test.column("210")[row].as_py() == [1, 2, 3]
    assert paddle.test.column("216")[row].as_py() == 4


def test_paddlerec_layouts(tmp_path: Path, samples: Path) -> None:
    folder = samples / "paddlerec_esmm"
    # PaddleRec's repository layout (train/small.txt, test/small.txt) and its full-data layout
    for train_dir, test_dir in (("train", "test"), ("train_data", "test_data")):
        root = tmp_path / train_dir
        (root / train_dir).mkdir(parents=True)
        (root / test_dir).mkdir()
        shutil.copy(folder / "train_small.txt", root / train_dir / "small.txt")
        shutil.copy(folder / "test_small.txt", root / test_dir / "small.txt")
        b = ali_ccp(path=str(root), validation_fraction=0.2)
        assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (8, 2, 10)
    # one file, format given explicitly
    b = ali_ccp(path=str(folder / "test_small.txt"), format="paddlerec", validation_fraction=0.2, test_fraction=0.2)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (6, 2, 2)


def test_paddlerec_sequence_max_len_reaches_the_encoder(samples: Path) -> None:
    run = polytask.fit(dataset="ali_ccp", dataset_params={"path": str(samples / "paddlerec_esmm"), "validation_fraction": 0.3,
                                                          "sequence_max_len": 7},
                       model="shared_bottom", epochs=1, batch_size=4, progress=False)
    specs = {f.name: f for f in run.preprocessor.features}
    assert specs["110_14"].type == "sequence" and specs["110_14"].max_len == 7
    assert specs["205"].type == "categorical"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("1,0,0,210:1,216-4\n", r"line 1: '216-4' is not a field:feature_id pair"),
        ("1,0,0,210:1\n2,x,0,210:1\n", r"line 2: field 2 \(click\) must be 0 or 1, got .x."),
        ("a,0,0,210:1\n", r"line 1: field 1 \(sample_id\) must be an integer"),
        ("1,0,0,210:1\n2,0\n", r"line 2 has 2 field\(s\)"),
        ("1,0,0,210:1,216:4,216:5\n", r"line 1: field '216' holds one id per impression but appears 2 times"),
        ("1,0,0,210:1,216:a\n", r"line 1: feature id 'a' of field '216'"),
        ("1,0,0,210:1\n2,0,2,210:1\n", r"line 2: field 3 \(conversion\) must be 0 or 1, got '2'"),
        ("\n1,1,0,210:1\n\n\n5,0,0,205:1,205:2\n", r"line 5: field '205' holds one id"),
    ],
)
def test_paddlerec_bad_lines_name_the_file_and_line(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "train_bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=pattern) as err:
        ali_ccp(path=str(path), format="paddlerec", validation_fraction=0.3)
    assert str(path) in str(err.value)


def test_unknown_fields_are_ignored_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("".join(f"{i},{i % 2},0,205:{i},999:7,210:{i},210:{i + 1}\n" for i in range(1, 11)))
    b = ali_ccp(path=str(path), validation_fraction=0.2, test_fraction=0.2)
    assert "999" not in b.train.column_names and "ignored unknown fields ['999']" in b.notes
    both = pa.concat_tables([b.train, b.validation, b.test])
    assert sorted(both.column("205").to_pylist()) == list(range(1, 11))


# -- errors, registration, a real fit ----------------------------------------------------------------
def test_folder_without_ali_ccp_files(tmp_path: Path, samples: Path) -> None:
    with pytest.raises(DataNotFoundError, match="holds no Ali-CCP files"):
        ali_ccp(path=str(samples))  # the parent of the two sample folders
    with pytest.raises(DataNotFoundError, match="does not exist"):
        ali_ccp(path=str(tmp_path / "nowhere"))
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="cannot tell the Ali-CCP format"):
        ali_ccp(path=str(tmp_path / "notes.csv"))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"format": "csv"}, "format"), ({"validation_fraction": 0.0}, "validation_fraction"),
     ({"test_fraction": 1.0}, "test_fraction"), ({"validation_fraction": 0.6, "test_fraction": 0.5}, "validation_fraction"),
     ({"max_rows": 0}, "max_rows"), ({"tasks": ["ctr", "clicks"]}, "tasks"), ({"sequence_max_len": 0}, "sequence_max_len")],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ali_ccp(**kwargs)


def test_task_subset() -> None:
    b = ali_ccp(tasks=["ctr", "ctcvr"])
    assert [t["name"] for t in b.tasks] == ["ctr", "ctcvr"]


def test_registered_and_params_checked_from_the_signature() -> None:
    assert DATASETS.get("ali_ccp") is ali_ccp
    with pytest.raises(ConfigError, match="data.params.format"):
        polytask.fit(dataset="ali_ccp", dataset_params={"format": "parquet"}, model="shared_bottom", epochs=1)
    with pytest.raises(ConfigError, match="data.params.paht: unknown key"):
        polytask.fit(dataset="ali_ccp", dataset_params={"paht": "x"}, model="shared_bottom", epochs=1)


def test_fit_end_to_end_masks_unclicked_rows_for_cvr(rechub: DatasetBundle) -> None:
    run = polytask.fit(dataset="ali_ccp", model="shared_bottom", epochs=1, batch_size=32, progress=False)
    for split in ("validation", "test"):
        table = getattr(rechub, split)
        metrics = run.metrics[split]
        assert metrics["ctr"]["count"] == metrics["ctcvr"]["count"] == table.num_rows
        assert metrics["cvr"]["count"] == _sum(table, "click")  # only clicked rows carry a cvr label
        assert np.isfinite(metrics["loss"])
    pred = run.predict(rechub.test)
    assert set(pred) == {"ctr", "cvr", "ctcvr"} and all(len(p) == 50 for p in pred.values())


def test_paddlerec_chunked_parse_equals_one_chunk(paddle: DatasetBundle, samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polytask.data.datasets.ali_ccp_formats.shared as module

    monkeypatch.setattr(module, "LINES_PER_CHUNK", 3)  # 10 lines -> chunks of 3, 3, 3, 1
    chunked = ali_ccp(path=str(samples / "paddlerec_esmm"), validation_fraction=0.3)
    for split in ("train", "validation", "test"):
        assert getattr(chunked, split).equals(getattr(paddle, split)), split
    assert chunked.notes == paddle.notes


# -- Alibaba's raw files (sample_skeleton + common_features) ---------------------------------------
USER_FIELDS = {"101", "121", "122", "124", "125", "126", "127", "128", "129"}  # plus the four *_14 histories


def _raw_token(field: str, feature: str) -> str:
    return f"{field}\x02{feature}\x03{('1.0', '0.693147', '2', '1e-3')[int(feature) % 4]}"  # values: dropped


def _write_raw(paddle_lines: list[str], folder: Path, split: str, *, unused_block: bool = True) -> dict[str, str]:
    """Alibaba's raw layout from PaddleRec lines: each line's user fields (101-129, *_14) go to a
    common_features block keyed by an md5-like index, the rest to its sample_skeleton line. Blocks are
    written in reverse order of first use, after an unused one. Returns {index: block tokens}."""
    skeleton, blocks = [], {}
    for line in paddle_lines:
        parts = line.strip().split(",")
        own, user = [], []
        for pair in parts[3:]:
            field, feature = pair.split(":")
            (user if field in USER_FIELDS or field.endswith("_14") else own).append(_raw_token(field, feature))
        key = hashlib.md5("\x01".join(user).encode()).hexdigest()[:16]
        blocks.setdefault(key, "\x01".join(user))
        skeleton.append(",".join([*parts[:3], key, str(len(own)), "\x01".join(own)]))
    common = [f"{key},{len(tokens.split(chr(1)))},{tokens}" for key, tokens in reversed(blocks.items())]
    if unused_block:
        common.insert(0, "0123456789abcdef,1,101\x02999\x031.0")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"sample_skeleton_{split}.csv").write_text("\n".join(skeleton) + "\n")
    (folder / f"common_features_{split}.csv").write_text("\n".join(common) + "\n")
    return blocks


def _vary_users(lines: list[str]) -> list[str]:
    """The sample lines all share one user; give every third line another user (id 101 changed, one
    110_14 id fewer) so that the raw files hold two common blocks."""
    out = []
    for i, line in enumerate(lines):
        pairs = line.strip().split(",")
        if i % 3 == 1:
            last_110 = max(j for j, p in enumerate(pairs) if p.startswith("110_14:"))
            pairs = [f"101:{int(p[4:]) + 500000}" if p.startswith("101:") else p for j, p in enumerate(pairs) if j != last_110]
        out.append(",".join(pairs))
    return out


@pytest.fixture(scope="module")
def raw_dirs(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a PaddleRec folder, the same impressions as raw files in another folder)."""
    root = tmp_path_factory.mktemp("aliccp")
    paddle_dir, raw_dir = root / "paddle", root / "raw"
    paddle_dir.mkdir()
    for split in ("train", "test"):
        lines = (samples / "paddlerec_esmm" / f"{split}_small.txt").read_text().splitlines()
        if split == "train":
            lines = _vary_users(lines)
        (paddle_dir / f"{split}_small.txt").write_text("\n".join(lines) + "\n")
        blocks = _write_raw(lines, raw_dir, split)
        assert len(blocks) == (2 if split == "train" else 1)
    return paddle_dir, raw_dir


def _same_tables(a: DatasetBundle, b: DatasetBundle) -> None:
    for split in ("train", "validation", "test"):
        ta, tb = getattr(a, split), getattr(b, split)
        assert ta.schema.equals(tb.schema), split
        assert ta.equals(tb), split


def test_tianchi_gives_the_paddlerec_table(raw_dirs: tuple[Path, Path]) -> None:
    paddle_dir, raw_dir = raw_dirs
    paddle = ali_ccp(path=str(paddle_dir), validation_fraction=0.3)
    raw = ali_ccp(path=str(raw_dir), validation_fraction=0.3)
    _same_tables(raw, paddle)
    assert raw.features == paddle.features and raw.tasks == paddle.tasks
    assert raw.train.num_rows + raw.validation.num_rows == 10 and raw.test.num_rows == 10
    assert len({str(v) for v in pa.concat_tables([raw.train, raw.validation]).column("101").to_pylist()}) == 2
    assert "format tianchi" in raw.notes and "sample_skeleton_train.csv: 2 block(s)" in raw.notes
    assert "sample_skeleton_test.csv: 1 block(s)" in raw.notes and "exceed sequence_max_len=50" in raw.notes
    assert "smoke tests only" not in raw.notes
    assert raw.sources["test"] == f"{raw_dir / 'sample_skeleton_test.csv'} + {raw_dir / 'common_features_test.csv'}"
    explicit = ali_ccp(path=str(raw_dir), format="tianchi", validation_fraction=0.3)
    _same_tables(explicit, raw)


def test_tianchi_layouts_and_auto_detection(raw_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    paddle_dir, raw_dir = raw_dirs
    # Tianchi's archives unpack into sample_train/ and sample_test/; gzipped files are read too
    for split in ("train", "test"):
        (tmp_path / f"sample_{split}").mkdir()
        for kind in ("sample_skeleton", "common_features"):
            data = (raw_dir / f"{kind}_{split}.csv").read_bytes()
            (tmp_path / f"sample_{split}" / f"{kind}_{split}.csv.gz").write_bytes(gzip.compress(data))
    _same_tables(ali_ccp(path=str(tmp_path), validation_fraction=0.3), ali_ccp(path=str(paddle_dir), validation_fraction=0.3))
    # one sample_skeleton file: recognised from its first line, split three ways like one PaddleRec file
    one = ali_ccp(path=str(raw_dir / "sample_skeleton_train.csv"), validation_fraction=0.2, test_fraction=0.2)
    _same_tables(one, ali_ccp(path=str(paddle_dir / "train_small.txt"), validation_fraction=0.2, test_fraction=0.2))
    assert "format tianchi" in one.notes
    with pytest.raises(DataError, match="this is a common_features file"):
        ali_ccp(path=str(raw_dir / "common_features_train.csv"))


def test_tianchi_max_rows_reads_a_skeleton_prefix_and_only_its_blocks(raw_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    paddle_dir, raw_dir = raw_dirs
    for split in ("train", "test"):
        for kind in ("sample_skeleton", "common_features"):
            shutil.copy(raw_dir / f"{kind}_{split}.csv", tmp_path / f"{kind}_{split}.csv")
        common = tmp_path / f"common_features_{split}.csv"  # lines of blocks no impression uses are not parsed
        common.write_text("fedcba9876543210,1,101\x02not-an-id\x031.0\nffffffffffffffff,oops\n" + common.read_text())
    raw = ali_ccp(path=str(tmp_path), max_rows=4, validation_fraction=0.25)
    _same_tables(raw, ali_ccp(path=str(paddle_dir), max_rows=4, validation_fraction=0.25))
    assert (raw.train.num_rows, raw.validation.num_rows, raw.test.num_rows) == (3, 1, 4)
    assert "max_rows=4" in raw.notes and "sample_skeleton_train.csv: 2 block(s)" in raw.notes


def test_tianchi_chunked_parse_equals_one_chunk(raw_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import polytask.data.datasets.ali_ccp_formats.shared as module

    raw_dir = raw_dirs[1]
    whole = ali_ccp(path=str(raw_dir), validation_fraction=0.3)
    monkeypatch.setattr(module, "LINES_PER_CHUNK", 3)  # impressions and common blocks in several chunks
    chunked = ali_ccp(path=str(raw_dir), validation_fraction=0.3)
    _same_tables(chunked, whole)
    assert chunked.notes == whole.notes


def test_tianchi_conversion_without_click_is_kept_and_counted(tmp_path: Path) -> None:
    lines = [f"{i},{int(i == 2)},{int(i in (2, 5))},k{i % 2},2,205\x02{i}\x031.0\x01210\x027\x031.0" for i in range(1, 11)]
    (tmp_path / "sample_skeleton_train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "common_features_train.csv").write_text("k0,1,101\x0240\x031.0\nk1,1,101\x0241\x031.0\n")
    b = ali_ccp(path=str(tmp_path), validation_fraction=0.2, test_fraction=0.2)
    both = pa.concat_tables([b.train, b.validation, b.test]).sort_by("sample_id")
    assert both.column("purchase").to_pylist()[4] == 1 and both.column("ctcvr").to_pylist()[4] == 0
    assert both.column("101").to_pylist() == [41, 40] * 5 and both.column("210").to_pylist() == [[7]] * 10
    assert "1 row(s) have a purchase without a click" in b.notes


def test_tianchi_missing_common_block_names_the_index_and_both_files(raw_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    raw_dir = raw_dirs[1]
    shutil.copy(raw_dir / "sample_skeleton_train.csv", tmp_path / "sample_skeleton_train.csv")
    skeleton = (tmp_path / "sample_skeleton_train.csv").read_text().splitlines()
    gone = skeleton[1].split(",")[3]  # the second line's user (lines 2, 5, 8)
    common = [c for c in (raw_dir / "common_features_train.csv").read_text().splitlines() if not c.startswith(gone)]
    (tmp_path / "common_features_train.csv").write_text("\n".join(common) + "\n")
    with pytest.raises(DataError) as err:
        ali_ccp(path=str(tmp_path))
    message = str(err.value)
    assert f"line 2: common_feature_index {gone!r} has no block in {tmp_path / 'common_features_train.csv'}" in message
    assert str(tmp_path / "sample_skeleton_train.csv") in message and "1 of the 2 indices used are missing" in message


_GOOD = "1,0,0,k1,2,205\x026\x031.0\x01216\x024\x031.0"


@pytest.mark.parametrize(
    ("skeleton", "common", "bad_file", "pattern"),
    [
        (f"{_GOOD}\n2,0,0,k1,2,205\x026\x031.0\x01216\x024", None, "skeleton",
         r"line 2: feature '216\\x024' is not field_id\\x02feature_id\\x03value"),
        ("1,0,0,k1,1,216\x02a\x031.0", None, "skeleton", r"line 1: feature id 'a' of field '216' is not a non-negative integer"),
        ("1,0,0,k1,1,216\x024\x03x", None, "skeleton", r"line 1: value 'x' of field '216' is not a number"),
        (f"{_GOOD}\n\n2,0,0,k1,205\x026\x031.0", None, "skeleton", r"line 3 has 5 field\(s\); expected 6 \(sample_id,click"),
        (f"{_GOOD}\n2,x,0,k1,1,205\x026\x031.0", None, "skeleton", r"line 2: field 2 \(click\) must be 0 or 1, got 'x'"),
        ("1,0,2,k1,1,205\x026\x031.0", None, "skeleton", r"line 1: field 3 \(conversion\) must be 0 or 1, got '2'"),
        ("1,0,0,k1,two,205\x026\x031.0", None, "skeleton", r"line 1: field 5 \(feature_num\) must be a non-negative integer"),
        ("1,0,0,,1,205\x026\x031.0", None, "skeleton", r"line 1: field 4 \(common_feature_index\) is empty"),
        ("1,0,0,k1,1,101\x029\x031.0", None, "skeleton",
         r"line 1: field '101' holds one id per impression but appears 2 times \(its own features plus its common_features"),
        (_GOOD, "k0,1,101\x0212\x031.0\nk1,2,101\x0212\x031.0\x01124\x02-3\x031.0", "common",
         r"line 2: feature id '-3' of field '124' is not a non-negative integer"),
        (_GOOD, "k1,1,101\x0212\x031.0\x01124", "common", r"line 1: feature '124' is not field_id"),
        (_GOOD, "k1,101\x0212\x031.0", "common", r"line 1 has 2 field\(s\); expected 3 \(common_feature_index,feature_num"),
        (f"{_GOOD}\n2,0,0,k2,1,205\x026\x031.0", "k1,1,101\x0212\x031.0\nk2,1,101\x0213\x031.0\nk1,1,101\x0212\x031.0", "common",
         r"common_feature_index 'k1' appears twice, on lines 1 and 3"),
    ],
)
def test_tianchi_bad_lines_name_the_file_and_line(
    tmp_path: Path, skeleton: str, common: str | None, bad_file: str, pattern: str
) -> None:
    (tmp_path / "sample_skeleton_train.csv").write_text(skeleton + "\n")
    (tmp_path / "common_features_train.csv").write_text((common or "k1,1,101\x0212\x031.0") + "\n")
    with pytest.raises(DataError, match=pattern) as err:
        ali_ccp(path=str(tmp_path), validation_fraction=0.3)
    named = tmp_path / ("sample_skeleton_train.csv" if bad_file == "skeleton" else "common_features_train.csv")
    assert str(err.value).startswith(f"{named}: ")


def test_tianchi_missing_files(raw_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    raw_dir = raw_dirs[1]
    shutil.copy(raw_dir / "sample_skeleton_train.csv", tmp_path / "sample_skeleton_train.csv")
    common = tmp_path / "common_features_train.csv"
    for path in (tmp_path, tmp_path / "sample_skeleton_train.csv"):  # a folder, or the skeleton file itself
        with pytest.raises(DataNotFoundError, match="common_features file of the same split") as err:
            ali_ccp(path=str(path))
        assert str(err.value).startswith(f"{common} not found")
    shutil.copy(raw_dir / "common_features_test.csv", tmp_path / "common_features_test.csv")
    shutil.copy(raw_dir / "sample_skeleton_test.csv", tmp_path / "sample_skeleton_test.csv")
    (tmp_path / "sample_skeleton_train.csv").unlink()
    with pytest.raises(DataNotFoundError, match=r"holds no sample_skeleton_train\.csv"):
        ali_ccp(path=str(tmp_path))  # auto: a raw test file but no raw train file
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match=r"holds no sample_skeleton_train\.csv"):
        ali_ccp(path=str(empty), format="tianchi")
