"""The three registered text datasets: UD English-EWT, CoNLL-2000 chunking and SICK.

They read the real files from the data directory (``$POLYTASK_DATA_DIR`` or ``../shared/data``)
and skip only when there is no data directory at all; a data directory without these datasets
fails. Expected counts are the data READMEs' verified counts; malformed-line tests build small
copies of a dataset folder in tmp.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from polytask.config import TaskConfig
from polytask.data.datasets.base import DatasetBundle
from polytask.data.datasets.conll2000_chunking import conll2000_chunking
from polytask.data.datasets.sick2014 import read_sick, sick2014
from polytask.data.datasets.ud_english_ewt import UPOS_TAGS, WORDS_FEATURE, ud_english_ewt
from polytask.data.paths import resolve_data_dir
from polytask.data.schema import FeatureSpec
from polytask.data.sources import make_tasks
from polytask.data.text_formats import read_conll_columns
from polytask.errors import DataError
from polytask.registry import DATASETS


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """The data directory; like the other dataset tests, a missing one fails (DataNotFoundError)."""
    return resolve_data_dir()


@pytest.fixture(scope="module")
def ewt(data_dir: Path) -> DatasetBundle:
    return ud_english_ewt(data_dir)


@pytest.fixture(scope="module")
def chunking(data_dir: Path) -> DatasetBundle:
    return conll2000_chunking(data_dir)


@pytest.fixture(scope="module")
def sick(data_dir: Path) -> DatasetBundle:
    return sick2014(data_dir)


def tokens(table: pa.Table, column: str = "words") -> int:
    return sum(len(x) for x in table.column(column).to_pylist())


def test_registered() -> None:
    for name in ("ud_english_ewt", "conll2000_chunking", "sick2014"):
        assert name in DATASETS


def test_the_three_share_one_text_feature_declaration(ewt: DatasetBundle, chunking: DatasetBundle, sick: DatasetBundle) -> None:
    expected = {"name": "words", "max_len": 96, "separator": " ", "char_ngrams": [2, 3, 4]}
    for bundle in (ewt, chunking, sick):
        assert bundle.features["sequence"][0] == expected
        assert bundle.train.schema.field("words").type == pa.list_(pa.string())
        for spec in bundle.features["sequence"]:  # FeatureSpec takes every option
            FeatureSpec(**spec, type="sequence")
    assert sick.features["sequence"][1] == {**expected, "name": "words_b", "vocabulary": "words"}
    assert WORDS_FEATURE == expected


# -- UD English-EWT --------------------------------------------------------------------------------
def test_ewt_official_splits(ewt: DatasetBundle) -> None:
    counts = [(t.num_rows, tokens(t)) for t in (ewt.train, ewt.validation, ewt.test)]
    assert counts == [(12544, 204577), (2001, 25147), (2077, 25094)]
    assert {u for x in ewt.train.column("upos").to_pylist() for u in x} == set(UPOS_TAGS)
    assert len({u for x in ewt.train.column("deprels").to_pylist() for u in x}) == 51
    assert ewt.sources["validation"].endswith("en_ewt-ud-dev.conllu.gz")
    # max_len 96 covers every test sentence; the notes count the longer training sentences
    assert max(len(x) for x in ewt.test.column("words").to_pylist()) == 81
    longer = sum(len(x) > 96 for x in ewt.train.column("words").to_pylist())
    assert longer == 7 and f"{longer} training sentence(s) are longer and keep their last 96 tokens" in ewt.notes
    assert ewt.train.column("sent_id").to_pylist()[0].startswith("weblog-")


def test_ewt_tasks(ewt: DatasetBundle) -> None:
    assert ewt.tasks == [
        {"name": "upos", "kind": "tagging", "label": "upos", "tokens": "words", "classes": list(UPOS_TAGS)},
        {"name": "deps", "kind": "dependency", "label": "heads", "relations": "deprels", "tokens": "words"},
    ]
    assert all(t["name"] != "xpos" for t in ewt.tasks)
    tagging = make_tasks([TaskConfig(**ewt.tasks[0])])[0]
    assert tagging.spec.token_feature == "words"


def test_ewt_max_rows_caps_every_split_proportionally(data_dir: Path) -> None:
    b = ud_english_ewt(data_dir, max_rows=200)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (200, 32, 34)
    assert "max_rows=200" in b.notes
    with pytest.raises(ValueError, match="max_rows"):
        ud_english_ewt(data_dir, max_rows=0)


def test_ewt_malformed_line_names_file_and_line(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ud_english_ewt"
    shutil.copytree(data_dir / "ud_english_ewt", folder)
    dev = folder / "en_ewt-ud-dev.conllu.gz"
    lines = gzip.decompress(dev.read_bytes()).decode().split("\n")
    lines[4] = lines[4].replace("\t3\tcase\t", "\t99\tcase\t")  # the first word's HEAD
    dev.chmod(0o644)
    dev.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(DataError, match=r"en_ewt-ud-dev\.conllu\.gz: line 5: HEAD '99'"):
        ud_english_ewt(tmp_path)


# -- CoNLL-2000 ----------------------------------------------------------------------------------------
def test_chunking_holds_out_a_seeded_tenth_of_train(chunking: DatasetBundle, data_dir: Path) -> None:
    assert (chunking.train.num_rows, chunking.validation.num_rows) == (8042, 894)
    assert tokens(chunking.train) + tokens(chunking.validation) == 211727
    assert (chunking.test.num_rows, tokens(chunking.test)) == (2012, 47377)
    assert chunking.train.column_names == ["words", "pos", "chunk"]
    # the notes' recipe: the first 894 of numpy default_rng(0)'s permutation, both parts in file order
    full = read_conll_columns(data_dir / "conll2000_chunking" / "train.txt.gz")
    held = np.sort(np.random.default_rng(0).permutation(8936)[:894])
    assert chunking.validation.equals(full.take(held))
    assert chunking.train.equals(full.take(np.setdiff1d(np.arange(8936), held)))
    again = conll2000_chunking(data_dir)
    assert again.validation.equals(chunking.validation)
    other = conll2000_chunking(data_dir, seed=1, validation_fraction=0.2)
    assert other.validation.num_rows == 1787 and not other.validation.slice(0, 50).equals(chunking.validation.slice(0, 50))
    assert "default_rng(seed=0)" in chunking.notes and "dev.txt" in chunking.notes and "not used" in chunking.notes
    assert chunking.tasks == [
        {"name": "chunk", "kind": "tagging", "label": "chunk", "tokens": "words", "scheme": "bio"},
        {"name": "pos", "kind": "tagging", "label": "pos", "tokens": "words"},
    ]
    assert len({c for x in chunking.test.column("chunk").to_pylist() for c in x if c != "O"} | {"O"}) > 10
    tasks = make_tasks([TaskConfig(**t) for t in chunking.tasks])
    assert [t.name for t in tasks] == ["chunk", "pos"]


def test_chunking_official_dev_only_when_asked(data_dir: Path) -> None:
    b = conll2000_chunking(data_dir, official_dev=True)
    assert (b.train.num_rows, b.validation.num_rows, tokens(b.validation)) == (8936, 1844, 44352)
    assert "undocumented origin" in b.notes and b.sources["validation"].endswith("dev.txt.gz")
    small = conll2000_chunking(data_dir, max_rows=100)
    assert small.train.num_rows + small.validation.num_rows == 100 and small.test.num_rows == 23
    with pytest.raises(ValueError, match="validation_fraction"):
        conll2000_chunking(data_dir, validation_fraction=1.0)


def test_chunking_malformed_line_names_file_and_line(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "conll2000_chunking"
    folder.mkdir()
    for name in ("train.txt.gz", "test.txt.gz"):
        shutil.copy(data_dir / "conll2000_chunking" / name, folder / name)
    (folder / "test.txt.gz").chmod(0o644)
    (folder / "test.txt.gz").write_bytes(gzip.compress(b"a DT B-NP\nb NN\n\n"))
    with pytest.raises(DataError, match=r"test\.txt\.gz: line 2: 2 column"):
        conll2000_chunking(tmp_path)


# -- SICK ------------------------------------------------------------------------------------------------
def test_sick_splits_and_columns(sick: DatasetBundle) -> None:
    assert (sick.train.num_rows, sick.validation.num_rows, sick.test.num_rows) == (4500, 500, 4927)
    assert sick.train.column_names == ["pair_id", "words", "words_b", "relatedness", "entailment"]
    for table, counts in ((sick.train, (2536, 1299, 665)), (sick.validation, (282, 144, 74)), (sick.test, (2793, 1414, 720))):
        labels = table.column("entailment").to_pylist()
        assert tuple(labels.count(j) for j in ("NEUTRAL", "ENTAILMENT", "CONTRADICTION")) == counts
        scores = table.column("relatedness").to_numpy()
        assert scores.min() == 1.0 and scores.max() == 5.0
    first = sick.train.slice(0, 1).to_pylist()[0]
    assert first["pair_id"] == 1 and first["relatedness"] == pytest.approx(4.5)
    assert first["words"][:3] == ["A", "group", "of"]  # case kept
    # the test file has CRLF endings: nothing of the CR is left in the last field or the tokens
    assert not any("\r" in w for x in sick.test.column("words_b").to_pylist() for w in x)
    assert set(sick.test.column("entailment").to_pylist()) == {"NEUTRAL", "ENTAILMENT", "CONTRADICTION"}
    assert sick.tasks == [
        {"name": "relatedness", "kind": "relatedness", "label": "relatedness", "low": 1, "high": 5},
        {"name": "entailment", "kind": "multiclass", "label": "entailment"},
    ]
    assert "CC BY-NC-SA 3.0" in sick.notes and "non-commercial" in sick.notes
    assert np.isin(sick.validation.column("pair_id").to_numpy(), sick.train.column("pair_id").to_numpy()).sum() == 0


def test_sick_max_rows(data_dir: Path) -> None:
    b = sick2014(data_dir, max_rows=450)
    assert (b.train.num_rows, b.validation.num_rows, b.test.num_rows) == (450, 50, 493)


HEADER = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("3\tA dog\tA cat\t4.0\n", r"line 3: 4 tab-separated field\(s\), expected 5"),
        ("3\tA dog\tA cat\tfour\tNEUTRAL\n", r"line 3: relatedness_score 'four' is not a number"),
        ("3\tA dog\tA cat\t4.0\tMAYBE\n", r"line 3: entailment_judgment 'MAYBE' is not one of"),
        ("3\tA dog\tA cat\t7\tNEUTRAL\n", r"line 3: relatedness_score 7.0 is outside 1..5"),
        ("x\tA dog\tA cat\t4\tNEUTRAL\n", r"line 3: pair_ID 'x' is not an integer"),
    ],
)
def test_sick_malformed_line_names_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "SICK_x.txt"
    path.write_text(HEADER + "2\tA dog runs\tA dog is running\t4.8\tENTAILMENT\r\n" + row)
    with pytest.raises(DataError, match=rf"SICK_x\.txt: {message}"):
        read_sick(path)


def test_sick_bad_header_or_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "SICK_x.txt"
    path.write_text("id\ta\tb\n")
    with pytest.raises(DataError, match="line 1: expected the header"):
        read_sick(path)
    path.write_text(HEADER)
    with pytest.raises(DataError, match="no sentence pairs"):
        read_sick(path)


# -- the data path ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "features", "tasks"),
    [
        ("ud_english_ewt", ["words"], [("upos", "tagging"), ("deps", "dependency")]),
        ("conll2000_chunking", ["words"], [("chunk", "tagging"), ("pos", "tagging")]),
        ("sick2014", ["words", "words_b"], [("relatedness", "relatedness"), ("entailment", "multiclass")]),
    ],
)
def test_bundle_resolves_through_load_splits(data_dir: Path, name: str, features: list[str], tasks: list[tuple[str, str]]) -> None:
    from polytask.config import DataConfig
    from polytask.data.sources import load_splits

    splits = load_splits(DataConfig(dataset=name, params={"max_rows": 40}), data_dir)
    assert [f.name for f in splits.features] == features
    assert [(t.name, t.spec.name) for t in splits.tasks] == tasks
    assert all(f.char_ngrams == [2, 3, 4] and f.max_len == 96 and f.separator == " " for f in splits.features)


def test_the_three_combine_in_one_multi_source_run(data_dir: Path) -> None:
    """One run over all three (``data.sources``): one ``words`` feature, ``words_b`` sharing its vocabulary."""
    from polytask.config import DataConfig
    from polytask.data.sources import load_splits

    names = ("ud_english_ewt", "conll2000_chunking", "sick2014")
    config = DataConfig(sources={n: DataConfig(dataset=n, params={"max_rows": 30}) for n in names})
    splits = load_splits(config, data_dir)
    assert [(f.name, f.vocabulary) for f in splits.features] == [("words", None), ("words_b", "words")]
    assert [t.name for t in splits.tasks] == ["upos", "deps", "chunk", "pos", "relatedness", "entailment"]
