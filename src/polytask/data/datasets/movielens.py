"""MovieLens-100K as a sequential, multi-task recommendation dataset (behaviour sequences + profile tasks).

Files (GroupLens ML-100K, in ``<data dir>/movielens_100k/``): ``u.data.gz`` (or ``u.data``;
``user \\t item \\t rating \\t unix seconds``, 100,000 ratings), ``u.user``
(``user|age|gender|occupation|zip``, 943 users), ``u.item`` (``item|title|release|video release|
url|19 genre flags``, 1,682 movies, Latin-1 text).

**Events and samples.** Each user's ratings are ordered by time, ties (same second: about half of
all consecutive ratings of a user share their timestamp) broken by item id. Every rating event
``e`` is one sample, the first events of a user included: their history is empty (a sequence of
length 0), which keeps the first events' labels and exercises the empty case.

**History: strictly earlier in time.** The history of ``e`` is the user's events with a timestamp
*strictly smaller* than ``e``'s, oldest first, the last ``max_len`` kept. Events in the same second
as ``e`` are not in its history (their order within the second is unknown, and one of them could be
the event being predicted), so no rating made at or after ``e``'s time reaches any sequence. Three
aligned sequences, one entry per history event (same length, step by step):

* ``hist_items``: the item id;
* ``hist_ratings``: the rating given (1-5), the behaviour type;
* ``hist_gaps``: the time gap to ``e``, bucketised: ``floor(log2(1 + gap_minutes))`` (0: under a
  minute, 1: 1-3 min, ... about 18 for seven months).

**Candidate and context features:** ``item_id`` (categorical), the 19 genre flags ``genre_<name>``
(numeric 0/1; ``genre_unknown`` is u.item's "unknown" genre), ``hour`` and ``weekday`` of ``e``
(UTC; categorical). The user id and the user's attributes are *not* features: the attributes are
tasks, and a user-id embedding would let profile tasks be memorised.

**Labels** (columns present whatever tasks are chosen):

* ``like`` (binary, int8): the candidate's rating >= 4;
* ``rating`` (regression, float32): the candidate's rating, 1-5;
* ``gender`` (binary, int8): 1 = female (``F`` in u.user), 0 = male;
* ``age_group`` (multiclass, 7, int8): the MovieLens-1M age bins ``<18, 18-24, 25-34, 35-44, 45-49,
  50-55, 56+`` as classes 0..6;
* ``occupation`` (multiclass, 21, int8): index of the occupation in alphabetical order
  (:data:`OCCUPATIONS`, as in u.occupation). Not in the default task list: kept for transfer
  experiments (a task the representation was not trained on); ask for it with
  ``tasks=["occupation"]`` or ``tasks=[..., "occupation"]``.

Provenance columns (not features): ``user_id`` (int32), ``timestamp`` (int64 unix seconds).

**Split: leave-last-out by time, per user.** A user's last event (in the tie-broken order) is their
test sample, the second-last their validation sample, the rest are training samples: 943 test, 943
validation and 98,114 training rows with every user. Every sample's history holds only events
strictly earlier than it, so a test sample sees the user's training events (and the validation
event when it is strictly earlier) but nothing later. Users appear in all three splits (profile
tasks are predicted for users whose earlier events were trained on, with their labels, as in a
deployed system that learns from a user's past); the user id is not an input.

**Split ``users``: held-out users** (``split="users"``). The users are shuffled
(``split_seed``) and a ``holdout`` fraction each becomes validation users and test users; every event
of the remaining users is a training sample, and a held-out user gives one sample, their last event
(their whole earlier history as the sequence). No event, label or sequence of a test user is seen in
training, so profile tasks and transfer to a new task are measured on *new* users, which a model that
memorises users' histories cannot exploit. One sample per held-out user: the profile metrics are
per-user numbers.

``max_users`` keeps the users with the ``max_users`` smallest ids (quick runs); ``max_len`` caps
the sequences (the feature declarations carry it, so the encoder pads to it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from polytask.data.datasets.base import DatasetBundle
from polytask.data.paths import DataNotFoundError, dataset_dir
from polytask.registry import DATASETS

FOLDER = "movielens_100k"
PUBLISHED_AT = "https://grouplens.org/datasets/movielens/100k/"
CITATION = "Harper & Konstan, ACM TiiS 2015"
RATINGS_FILES = ("u.data.gz", "u.data")

GENRES: tuple[str, ...] = (
    "unknown", "action", "adventure", "animation", "childrens", "comedy", "crime", "documentary", "drama",
    "fantasy", "film_noir", "horror", "musical", "mystery", "romance", "sci_fi", "thriller", "war", "western",
)  # fmt: skip
OCCUPATIONS: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive", "healthcare",
    "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer", "retired", "salesman",
    "scientist", "student", "technician", "writer",
)  # fmt: skip
#: lower edges of the age groups (ML-1M bins): <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
AGE_GROUPS: tuple[str, ...] = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")

SEQUENCES: tuple[str, ...] = ("hist_items", "hist_ratings", "hist_gaps")
CATEGORICAL: tuple[str, ...] = ("item_id", "hour", "weekday")
NUMERIC: tuple[str, ...] = tuple(f"genre_{g}" for g in GENRES)

TASKS: dict[str, dict[str, object]] = {
    "like": {"name": "like", "kind": "binary", "label": "like"},
    "rating": {"name": "rating", "kind": "regression", "label": "rating"},
    "gender": {"name": "gender", "kind": "binary", "label": "gender"},
    "age_group": {"name": "age_group", "kind": "multiclass", "label": "age_group", "num_classes": len(AGE_GROUPS)},
    "occupation": {"name": "occupation", "kind": "multiclass", "label": "occupation", "num_classes": len(OCCUPATIONS)},
}
DEFAULT_TASKS: tuple[str, ...] = ("like", "rating", "gender", "age_group")
SPLITS: tuple[str, ...] = ("leave_last_out", "users")


# -- reading ---------------------------------------------------------------------------------------
def _read_psv(path: Path, names: list[str], types: dict[str, pa.DataType], delimiter: str = "|",
              encoding: str = "utf8") -> pa.Table:
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"{path}: cannot parse as {len(names)} {delimiter!r}-separated fields {names}: {err}") from err


def read_ratings(folder: Path) -> dict[str, np.ndarray]:
    """``u.data(.gz)`` as int64 arrays ``user``, ``item``, ``rating``, ``timestamp`` (file order)."""
    path = next((folder / n for n in RATINGS_FILES if (folder / n).is_file()), None)
    if path is None:
        raise DataNotFoundError(
            f"{folder} holds none of {list(RATINGS_FILES)}: put MovieLens-100K there ({PUBLISHED_AT})"
        )
    names = ["user", "item", "rating", "timestamp"]
    t = _read_psv(path, names, {n: pa.int64() for n in names}, delimiter="\t")
    out = {n: t.column(n).to_numpy() for n in names}
    if t.num_rows == 0:
        raise ValueError(f"{path}: no ratings")
    bad = (out["rating"] < 1) | (out["rating"] > 5)
    if bad.any():
        raise ValueError(f"{path}: row {int(np.flatnonzero(bad)[0])} has rating {int(out['rating'][bad][0])} (not 1-5)")
    return out


def read_users(folder: Path) -> dict[str, np.ndarray]:
    """``u.user``: ``user`` (int64), ``age`` (int64), ``gender`` (1 = F), ``occupation`` (index in OCCUPATIONS)."""
    path = folder / "u.user"
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found: put MovieLens-100K's u.user there ({PUBLISHED_AT})")
    names = ["user", "age", "gender", "occupation", "zip"]
    t = _read_psv(path, names, {"user": pa.int64(), "age": pa.int64(), "gender": pa.string(),
                                "occupation": pa.string(), "zip": pa.string()})
    gender = np.asarray(t.column("gender").to_pylist())
    if not np.isin(gender, ["M", "F"]).all():
        raise ValueError(f"{path}: gender must be M or F, found {sorted(set(gender) - {'M', 'F'})}")
    occ = t.column("occupation").to_pylist()
    unknown = sorted(set(occ) - set(OCCUPATIONS))
    if unknown:
        raise ValueError(f"{path}: unknown occupation(s) {unknown} (expected one of {list(OCCUPATIONS)})")
    index = {o: i for i, o in enumerate(OCCUPATIONS)}
    return {
        "user": t.column("user").to_numpy(),
        "age": t.column("age").to_numpy(),
        "gender": (gender == "F").astype(np.int8),
        "occupation": np.array([index[o] for o in occ], dtype=np.int8),
    }


def read_items(folder: Path) -> dict[str, np.ndarray]:
    """``u.item`` (Latin-1): ``item`` (int64) and ``genres`` ``[n, 19]`` int8 flags."""
    path = folder / "u.item"
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found: put MovieLens-100K's u.item there ({PUBLISHED_AT})")
    names = ["item", "title", "release", "video_release", "url", *GENRES]
    types = {"item": pa.int64(), **{n: pa.string() for n in names[1:5]}, **{g: pa.int8() for g in GENRES}}
    t = _read_psv(path, names, types, encoding="latin1")
    genres = np.stack([t.column(g).to_numpy() for g in GENRES], axis=1).astype(np.int8)
    if not np.isin(genres, [0, 1]).all():
        raise ValueError(f"{path}: genre flags must be 0 or 1")
    return {"item": t.column("item").to_numpy(), "genres": genres}


def gap_bucket(gap_seconds: np.ndarray) -> np.ndarray:
    """``floor(log2(1 + gap_minutes))`` as int16 (0 under a minute; about 18 for seven months)."""
    return np.floor(np.log2(1.0 + np.asarray(gap_seconds, dtype=np.float64) / 60.0)).astype(np.int16)


def age_group(age: np.ndarray) -> np.ndarray:
    """Age in years -> class 0..6 of :data:`AGE_GROUPS`."""
    return np.searchsorted(np.asarray(AGE_EDGES), np.asarray(age), side="right").astype(np.int8)


# -- building --------------------------------------------------------------------------------------
def _lists(offsets: np.ndarray, values: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def _rows_of(ids: np.ndarray, known: np.ndarray, missing: str) -> np.ndarray:
    """The row of each of ``ids`` in the id column ``known``; an id not there is a ValueError
    (``"u.data rates " + missing`` formatted with the id)."""
    row = np.full(int(known.max()) + 1, -1, dtype=np.int64)
    row[known] = np.arange(len(known))
    out = row[np.clip(ids, 0, len(row) - 1)]
    bad = (ids >= len(row)) | (out < 0)
    if bad.any():
        raise ValueError("u.data rates " + missing.format(int(ids[bad][0])))
    return out


def build_events(
    ratings: dict[str, np.ndarray], users: dict[str, np.ndarray], items: dict[str, np.ndarray], max_len: int
) -> tuple[pa.Table, np.ndarray]:
    """One row per rating event, ordered by (user, time, item); returns the table and each row's
    split (0 train, 1 validation, 2 test). Vectorised over all events."""
    user, item, rating, ts = (ratings[k] for k in ("user", "item", "rating", "timestamp"))
    order = np.lexsort((item, ts, user))
    user, item, rating, ts = user[order], item[order], rating[order], ts[order]
    n = len(user)
    user_start = np.searchsorted(user, user, side="left")
    user_end = np.searchsorted(user, user, side="right")
    # history of event i: the user's events before the first event in i's second
    key = user * (1 << 32) + (ts - ts.min())
    first_same_second = np.searchsorted(key, key, side="left")
    lo = np.maximum(user_start, first_same_second - max_len)
    lengths = first_same_second - lo
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    owner = np.repeat(np.arange(n), lengths)
    hist = np.repeat(lo, lengths) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))

    pos = np.arange(n) - user_start
    count = user_end - user_start
    split = np.zeros(n, dtype=np.int8)
    split[pos == count - 2] = 1
    split[pos == count - 1] = 2

    urow = _rows_of(user, users["user"], "user {}, who is not in u.user")
    irow = _rows_of(item, items["item"], "item {}, which is not in u.item")

    hour = ((ts // 3600) % 24).astype(np.int8)
    weekday = ((ts // 86400 + 3) % 7).astype(np.int8)  # 0 = Monday (1970-01-01 was a Thursday)
    columns: dict[str, object] = {
        "hist_items": _lists(offsets, item[hist].astype(np.int32)),
        "hist_ratings": _lists(offsets, rating[hist].astype(np.int8)),
        "hist_gaps": _lists(offsets, gap_bucket(ts[owner] - ts[hist])),
        "item_id": pa.array(item.astype(np.int32)),
        "hour": pa.array(hour),
        "weekday": pa.array(weekday),
    }
    genres = items["genres"][irow]
    for j, name in enumerate(NUMERIC):
        columns[name] = pa.array(genres[:, j])
    columns |= {
        "like": pa.array((rating >= 4).astype(np.int8)),
        "rating": pa.array(rating.astype(np.float32)),
        "gender": pa.array(users["gender"][urow]),
        "age_group": pa.array(age_group(users["age"][urow])),
        "occupation": pa.array(users["occupation"][urow]),
        "user_id": pa.array(user.astype(np.int32)),
        "timestamp": pa.array(ts),
    }
    return pa.table(columns), split


def user_split(user: np.ndarray, split: np.ndarray, holdout: float, seed: int) -> np.ndarray:
    """Re-split the events of :func:`build_events` by user: a shuffled ``holdout`` fraction of the
    users each for validation and test (at least one user each), whose last event (``split == 2``)
    becomes their only sample; every event of the other users is a training sample; the held-out
    users' other events are dropped (-1)."""
    ids = np.unique(user)
    if len(ids) < 3:
        raise ValueError(f"split='users' needs at least 3 users, got {len(ids)}")
    n = min(max(1, int(round(holdout * len(ids)))), (len(ids) - 1) // 2)
    shuffled = np.random.default_rng(seed).permutation(ids)
    role = np.zeros(int(ids.max()) + 1, dtype=np.int8)  # 0 train, 1 validation, 2 test
    role[shuffled[:n]] = 1
    role[shuffled[n : 2 * n]] = 2
    r = role[user]
    out = np.where(r == 0, 0, -1).astype(np.int8)
    last = split == 2
    out[last & (r == 1)] = 1
    out[last & (r == 2)] = 2
    return out


def _check(max_len: int, max_users: int | None, tasks: list[str]) -> None:
    if isinstance(max_len, bool) or int(max_len) != max_len or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
    if max_users is not None and (isinstance(max_users, bool) or int(max_users) != max_users or max_users < 1):
        raise ValueError(f"max_users must be None or an integer >= 1, got {max_users!r}")
    if not tasks:
        raise ValueError(f"tasks must name at least one of {list(TASKS)}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks lists a task twice: {tasks}")


@DATASETS.register("movielens_100k")
def movielens(
    data_dir: str | os.PathLike | None = None,
    *,
    max_len: int = 50,
    max_users: int | None = None,
    tasks: list[str] = list(DEFAULT_TASKS),  # noqa: B006 - read-only default
    split: str = "leave_last_out",
    holdout: float = 0.2,
    split_seed: int = 0,
) -> DatasetBundle:
    """MovieLens-100K rating events with behaviour-sequence features and user-profile tasks.

    Tasks (``tasks``, default ``like, rating, gender, age_group``; ``occupation`` on request):
    ``like`` (binary: rating >= 4), ``rating`` (regression), ``gender`` (binary: 1 = female),
    ``age_group`` (7 classes: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+), ``occupation``
    (21 classes). Features: the history sequences ``hist_items``, ``hist_ratings``, ``hist_gaps``
    (aligned, strictly earlier events only, last ``max_len`` kept), the candidate ``item_id`` and
    genres, ``hour`` and ``weekday``. ``split="leave_last_out"`` (default): each user's last event
    is test, the second-last validation, the rest train. ``split="users"``: ``holdout`` of the
    users (shuffled by ``split_seed``) each for validation and test, one sample (their last event)
    per held-out user, all events of the others for training. ``max_users`` keeps the users with
    the smallest ids. See the module docstring for the details.
    """
    tasks = list(tasks)
    _check(max_len, max_users, tasks)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if isinstance(holdout, bool) or not (0.0 < float(holdout) < 0.5):
        raise ValueError(f"holdout must be a fraction in (0, 0.5), got {holdout!r}")
    if isinstance(split_seed, bool) or int(split_seed) != split_seed or split_seed < 0:
        raise ValueError(f"split_seed must be an integer >= 0, got {split_seed!r}")
    folder = dataset_dir(FOLDER, data_dir, published_at=PUBLISHED_AT)
    ratings, users, items = read_ratings(folder), read_users(folder), read_items(folder)
    n_users_all = len(np.unique(ratings["user"]))
    if max_users is not None:
        keep_users = np.unique(ratings["user"])[: int(max_users)]
        keep = np.isin(ratings["user"], keep_users)
        ratings = {k: v[keep] for k, v in ratings.items()}
    table, which = build_events(ratings, users, items, int(max_len))
    if split == "users":
        which = user_split(table.column("user_id").to_numpy(), which, float(holdout), int(split_seed))
    parts = {name: table.filter(pa.array(which == code)) for code, name in enumerate(("train", "validation", "test"))}
    sizes = {k: t.num_rows for k, t in parts.items()}
    n_users = len(np.unique(ratings["user"]))
    empty = int((np.diff(table.column("hist_items").combine_chunks().offsets.to_numpy()) == 0).sum())
    notes = (
        f"MovieLens-100K ({CITATION}): {len(which)} rating events of {n_users} users"
        + (f" (max_users={max_users} of {n_users_all})" if max_users is not None else "")
        + f"; tasks {', '.join(tasks)}. "
        + (
            "Leave-last-out by time per user (ties in time broken by item id): "
            if split == "leave_last_out"
            else f"Held-out users (holdout={float(holdout)}, split_seed={int(split_seed)}): every event of the "
            "training users; validation and test users give their last event only (unseen in training): "
        )
        + f"train {sizes['train']} / validation {sizes['validation']} / test {sizes['test']}. "
        f"Histories hold only events strictly earlier in time than the sample's (same-second events excluded), "
        f"last max_len={max_len}; {empty} samples have an empty history (kept). "
        "Features: hist_items, hist_ratings, hist_gaps (floor(log2(1 + gap minutes))) sequences, item_id, "
        "19 genre flags, hour, weekday (UTC); no user id, no user attributes."
    )
    return DatasetBundle(
        train=parts["train"],
        validation=parts["validation"],
        test=parts["test"],
        features={
            "sequence": [{"name": s, "max_len": int(max_len)} for s in SEQUENCES],
            "categorical": list(CATEGORICAL),
            "numeric": list(NUMERIC),
        },
        tasks=[dict(TASKS[t]) for t in tasks],
        notes=notes,
        sources={
            **(
                {
                    "train": f"{folder} (leave-last-out: all but each user's last two events)",
                    "validation": f"{folder} (leave-last-out: each user's second-last event)",
                    "test": f"{folder} (leave-last-out: each user's last event)",
                }
                if split == "leave_last_out"
                else {
                    "train": f"{folder} (held-out users: every event of the training users)",
                    "validation": f"{folder} (held-out users: each validation user's last event)",
                    "test": f"{folder} (held-out users: each test user's last event)",
                }
            ),
            "published_at": PUBLISHED_AT,
            "paper": CITATION,
        },
    )
