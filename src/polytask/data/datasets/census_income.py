"""UCI Census-Income (KDD) as used by MMoE (Ma et al., KDD 2018, Sec. 6.3).

Files: ``census_income_kdd/census-income.test(.gz)`` (99,762 rows, the official test split) and,
when available, ``census-income.data(.gz)`` (199,523 rows, the official train split). Both are
header-less CSV with 42 fields separated by ``", "``; ``?`` marks a missing value. Column names
come from ``columns.txt`` in the dataset folder when present, else from :data:`COLUMNS`.

Inputs: 7 numeric columns (float64) and 31 categorical columns (strings). Not inputs:
``instance_weight`` (a survey sampling weight that the ``.names`` file says must not be used as a
feature) and the three label sources ``income_50k``, ``education`` and ``marital_stat`` (the MMoE
paper removes education and marital status from the inputs because they serve as labels).

Labels (int8 0/1), following the paper's task groups:

* ``income``: ``income_50k == "50000+."`` (income above $50K);
* ``never_married``: ``marital_stat == "Never married"``;
* ``education_college``: education is at least college, i.e. an Associates degree (academic or
  occupational/vocational), Bachelors, Masters, Prof school or Doctorate.

Group 1 = income + never_married, group 2 = education_college + never_married (marital status is
the auxiliary task in both, as in the paper), group 3 = all three (an extension with no published
table).

Splits: with the official train file present, the paper's protocol (train on it, split the test
file 1:1 at random into validation and test). With only the test file (the usual case here), a
seeded random train/validation/test split of the test file (50/25/25 by default), which is NOT
the paper's protocol; ``DatasetBundle.notes`` says which one was used. Splits depend only on
``split_seed``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.registry import DATASETS

PUBLISHED_AT = "https://archive.ics.uci.edu/dataset/117/census+income+kdd"
FOLDER = "census_income_kdd"
TEST_FILES = ("census-income.test.gz", "census-income.test")
TRAIN_FILES = ("census-income.data.gz", "census-income.data")

#: The 42 fields of a row, in file order (the short names of ``columns.txt``).
COLUMNS: tuple[str, ...] = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour",
    "hs_college", "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin",
    "sex", "union_member", "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses",
    "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same",
    "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father", "country_mother",
    "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits", "weeks_worked",
    "year", "income_50k",
)  # fmt: skip

NUMERIC: tuple[str, ...] = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp", "weeks_worked",
)  # fmt: skip
LABEL_SOURCES: tuple[str, ...] = ("income_50k", "education", "marital_stat")
NOT_FEATURES: tuple[str, ...] = ("instance_weight",)
CATEGORICAL: tuple[str, ...] = tuple(c for c in COLUMNS if c not in NUMERIC + LABEL_SOURCES + NOT_FEATURES)

#: Education values counted as "college or above" (matched by prefix).
COLLEGE_PREFIXES: tuple[str, ...] = ("Associates", "Bachelors", "Masters", "Prof school", "Doctorate")

TASKS: dict[str, dict[str, str]] = {
    "income": {"name": "income", "kind": "binary", "label": "income"},
    "education_college": {"name": "education_college", "kind": "binary", "label": "education_college"},
    "never_married": {"name": "never_married", "kind": "binary", "label": "never_married"},
}
GROUPS: dict[int, tuple[str, ...]] = {
    1: ("income", "never_married"),
    2: ("education_college", "never_married"),
    3: ("income", "education_college", "never_married"),
}


def _column_names(folder: Path) -> list[str]:
    path = folder / "columns.txt"
    if not path.is_file():
        return list(COLUMNS)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{path} lists a column name twice")
    return names


def _first_existing(folder: Path, candidates: tuple[str, ...]) -> Path | None:
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    return None


def _read(path: Path, names: list[str]) -> pa.Table:
    """Read one header-less census file: all fields as stripped strings, ``?`` -> null, then
    numeric columns cast to float64 and the three labels derived. Raises ValueError naming the
    file (and the column) when the file does not have the expected layout."""
    try:
        raw = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: cannot parse as a {len(names)}-column census file ({names}): {err}") from err
    for column in (*NUMERIC, *CATEGORICAL, *LABEL_SOURCES):
        if column not in raw.column_names:
            raise ValueError(f"{path}: expected column {column!r} is missing (columns read: {raw.column_names})")
    if raw.num_rows == 0:
        raise ValueError(f"{path}: no rows")

    null = pa.scalar(None, pa.string())

    def clean(column: str) -> pa.ChunkedArray:
        values = pc.utf8_trim_whitespace(raw.column(column))
        return pc.if_else(pc.equal(values, "?"), null, values)

    out: dict[str, pa.ChunkedArray] = {}
    for column in NUMERIC:
        try:
            out[column] = pc.cast(clean(column), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ValueError(f"{path}: column {column!r} is not numeric: {err}") from err
    for column in CATEGORICAL:
        out[column] = clean(column)

    income = clean("income_50k")
    positive = pc.match_substring_regex(income, r"^50000\+")
    negative = pc.match_substring_regex(income, r"^-\s*50000")
    unknown = pc.invert(pc.fill_null(pc.or_(positive, negative), False))
    if pc.any(unknown).as_py():
        bad = pc.filter(income, unknown)[0].as_py()
        raise ValueError(f"{path}: column 'income_50k' has a value that is not '- 50000.' or '50000+.': {bad!r}")
    out["income"] = pc.cast(positive, pa.int8())
    college = pc.match_substring_regex(clean("education"), "^(" + "|".join(COLLEGE_PREFIXES) + ")")
    out["education_college"] = pc.cast(pc.fill_null(college, False), pa.int8())
    never = pc.equal(clean("marital_stat"), "Never married")
    out["never_married"] = pc.cast(pc.fill_null(never, False), pa.int8())
    return pa.table(out)


def _check_args(
    group: int, max_rows: int | None, validation_fraction: float, test_fraction: float
) -> None:
    if isinstance(group, bool) or group not in GROUPS:
        raise ValueError(
            f"group must be one of {sorted(GROUPS)} (1: income + never_married, "
            f"2: education_college + never_married, 3: all three), got {group!r}"
        )
    if max_rows is not None and (int(max_rows) != max_rows or max_rows <= 0):
        raise ValueError(f"max_rows must be None or an integer > 0, got {max_rows!r}")
    if not (0.0 < validation_fraction < 1.0):
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    if not (0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be < 1 (the rest is train), "
            f"got {validation_fraction!r} + {test_fraction!r}"
        )


@DATASETS.register("census_income")
def census_income(
    data_dir: str | os.PathLike | None = None,
    *,
    group: int = 1,
    split_seed: int = 0,
    max_rows: int | None = None,
    validation_fraction: float = 0.25,
    test_fraction: float = 0.25,
) -> DatasetBundle:
    """UCI Census-Income (KDD), binary tasks of the MMoE paper (Ma et al., KDD 2018, Sec. 6.3).

    ``group`` picks the tasks (1: income + never_married, 2: education_college + never_married,
    3: all three). With only the official test file present it is split at random (seeded by
    ``split_seed``) into train/validation/test with fractions
    ``(1 - validation_fraction - test_fraction, validation_fraction, test_fraction)``; with the
    official train file present the paper's protocol is used instead (fractions are ignored).
    ``max_rows`` keeps the first ``max_rows`` rows of each shuffled file (for quick tests).
    """
    _check_args(group, max_rows, validation_fraction, test_fraction)
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    test_path = _first_existing(folder, TEST_FILES)
    if test_path is None:
        raise DataNotFoundError(
            f"{folder} holds none of {list(TEST_FILES)}: put the official Census-Income (KDD) test file there "
            f"(published at {PUBLISHED_AT})."
        )
    train_path = _first_existing(folder, TRAIN_FILES)
    names = _column_names(folder)
    task_names = GROUPS[group]
    keep = [*NUMERIC, *CATEGORICAL, *task_names]

    rng = np.random.Generator(np.random.PCG64(split_seed))
    test_file = _read(test_path, names).select(keep)
    order = rng.permutation(test_file.num_rows)
    if max_rows is not None:
        order = order[: int(max_rows)]
    n = len(order)
    # per split: the file it comes from (error messages name it); plus provenance
    sources = {
        "train": f"{test_path} (seeded train split, split_seed={split_seed})",
        "validation": f"{test_path} (seeded validation split, split_seed={split_seed})",
        "test": f"{test_path} (seeded test split, split_seed={split_seed})",
        "published_at": PUBLISHED_AT,
        "paper": "Ma et al., KDD 2018, Sec. 6.3 (MMoE census-income)",
    }

    if train_path is not None:
        n_validation = n - n // 2
        validation = test_file.take(np.sort(order[:n_validation]))
        test: pa.Table | None = test_file.take(np.sort(order[n_validation:]))
        train = _read(train_path, names).select(keep)
        if max_rows is not None:
            train_order = rng.permutation(train.num_rows)[: int(max_rows)]
            train = train.take(np.sort(train_order))
        sources["train"] = str(train_path)
        sources["validation"] = f"{test_path} (1:1 validation half, split_seed={split_seed})"
        sources["test"] = f"{test_path} (1:1 test half, split_seed={split_seed})"
        protocol = (
            f"Paper protocol (MMoE Sec. 6.3): train = official train file {train_path.name} "
            f"({train.num_rows} rows); official test file {test_path.name} split 1:1 at random "
            f"(split_seed={split_seed}) into validation ({validation.num_rows}) and test ({test.num_rows}). "
            "validation_fraction/test_fraction are not used under this protocol."
        )
    else:
        n_validation = int(round(n * validation_fraction))
        n_test = int(round(n * test_fraction))
        n_train = n - n_validation - n_test
        if n_train <= 0 or n_validation <= 0 or (test_fraction > 0 and n_test <= 0):
            raise ValueError(
                f"max_rows={max_rows!r} leaves an empty split (train {n_train}, validation {n_validation}, "
                f"test {n_test}); use more rows"
            )
        train = test_file.take(np.sort(order[:n_train]))
        validation = test_file.take(np.sort(order[n_train : n_train + n_validation]))
        test = test_file.take(np.sort(order[n_train + n_validation :])) if test_fraction > 0 else None
        protocol = (
            f"NOT the paper's protocol: only the official test file {test_path.name} is present "
            f"(the official train file {TRAIN_FILES[0]} is missing), so its "
            f"{n} rows{'' if max_rows is None else f' (max_rows={max_rows} of {test_file.num_rows})'} were split "
            f"at random (split_seed={split_seed}) into train {n_train} / validation {n_validation} / test {n_test} "
            f"(fractions {1 - validation_fraction - test_fraction:g}/{validation_fraction:g}/{test_fraction:g}). "
            "The paper trains on the 199,523-row official train file and splits the test file 1:1 into "
            "validation/test, so numbers are not directly comparable with its tables."
        )

    notes = (
        f"Census-Income (KDD), group {group}: tasks {', '.join(task_names)}. {protocol} "
        f"Inputs: {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical columns; instance_weight dropped; "
        "education, marital_stat and income_50k removed from the inputs (label sources, as in the paper)."
    )
    return DatasetBundle(
        train=train,
        validation=validation,
        test=test,
        features={"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)},
        tasks=[dict(TASKS[name]) for name in task_names],
        notes=notes,
        sources=sources,
    )
