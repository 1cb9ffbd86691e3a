"""An entire-space click -> conversion simulator with known ground truth (for ESMM-style studies).

Real logs show a conversion only after a click, so the post-click conversion rate (CVR) of an
unclicked impression is never observed and a CVR model's quality over the *entire* impression
space cannot be measured on them. Here every impression carries its true click and conversion
probabilities and a conversion outcome drawn even when it was not clicked, so entire-space CVR
metrics (:func:`polytask.analysis.entire_space.entire_space_metrics`) can be computed.

Generative process (all randomness from ``numpy.random.SeedSequence(seed)``: child 0 draws the
universe of users and items, child 1 a 200,000-impression calibration sample, children 2/3/4 the
train/validation/test impressions; so a split's rows depend only on the seed and the knobs: the
test split is the same whatever ``rows`` is, and a smaller split is a prefix of a larger one):

1. Universe. ``U = num_users`` users, each in a segment ``s_u ~ Uniform{0..S-1}``
   (``S = num_segments``); ``I = num_items`` items, each in a category ``c_i ~ Uniform{0..C-1}``
   (``C = num_categories``). Two latent spaces of dimension ``k = latent_dim``: a *click* space
   and a *conversion-only* space. In each, segment and category centroids are drawn
   ``~ N(0, I_k)`` and ``user vector = sqrt(1/2) centroid[s_u] + sqrt(1/2) N(0, I_k)`` (items
   likewise with their category), so half of a vector's variance is shared with its group. Affinities
   ``a(u, i) = <x_u, y_i> / sqrt(k)`` (click space) and ``a_perp(u, i)`` (conversion-only space),
   each of mean 0 and variance 1, independent of each other.
   Biases: user click activity ``b_u ~ N(0, 0.5^2)``, user purchase propensity ``d_u ~ N(0, 0.5^2)``
   (independent), item attractiveness ``b_i = 0.5 z_i`` and item quality
   ``q_i = 0.5 (-lambda z_i + sqrt(1 - lambda^2) e_i)`` with ``z_i, e_i ~ N(0, 1)`` and
   ``lambda = clickbait`` (attractive items convert worse when lambda > 0). Item price
   ``price_i ~ N(0, 1)`` (a standardised log price).
2. Impression: user ``u``, item ``i`` and position ``pos ~ Uniform{1..10}``, independently; users
   and items uniform by default, or long-tailed (``user_popularity`` / ``item_popularity`` = a Zipf
   exponent ``e > 0``: ``P(i) ∝ r_i^-e`` over a random ranking ``r`` drawn with the universe,
   unrelated to the entity's attributes, as in real logs where a few items take most impressions);
   ``f_c = beta_c + s a + b_u + b_i - 0.5 ln(pos)`` and
   ``f_v = beta_v + s (rho a + sqrt(1 - rho^2) a_perp) + d_u + q_i - 0.4 price_i`` with
   ``s = affinity_scale`` and ``rho = shared``: the shared component ``rho a`` drives both click
   and conversion. Position acts on clicks only, price on conversion only.
3. ``p_click = sigmoid(f_c)``, ``p_cvr = sigmoid(f_v)`` (the true conversion probability given a
   click, defined for every impression), ``p_ctcvr = p_click p_cvr``; ``click ~ Bernoulli(p_click)``
   and, independently given the features, ``conversion_if_clicked ~ Bernoulli(p_cvr)`` for every
   impression; observed ``purchase = click * conversion_if_clicked`` and ``ctcvr = purchase``.
4. The intercepts ``beta_c``, ``beta_v`` are solved by bisection on the calibration sample so that
   the mean ``p_click`` is ``click_rate`` and the expected conversion rate among clicks,
   ``sum(p_click p_cvr) / sum(p_click)``, is ``cvr_rate``.

Defaults: 2,000 users in 10 segments, 1,000 items in 20 categories, ``k = 8``, ``shared = 0.5``,
``clickbait = 0.3``, ``affinity_scale = 1``, uniform popularity, ``click_rate = 0.07``,
``cvr_rate = 0.10``; 200,000 train and 50,000 validation and test impressions.

Why the clicked space is biased: selection (click) depends on the affinity ``a`` which also drives
conversion (``rho > 0``), so clicked impressions have higher ``p_cvr`` than impressions at large:
``E[p_cvr | click] / E[p_cvr] = 1 + Cov(p_click, p_cvr) / (E[p_click] E[p_cvr])``; ``clickbait > 0``
works against it (clicked items convert worse). With ``shared = clickbait = 0`` nothing drives both
and the ratio is 1 (no selection bias). The conversion-only part ``sqrt(1 - rho^2) a_perp`` and the
item quality ``q_i`` are learnable only from conversions, i.e. from clicked rows (about
``click_rate x cvr_rate`` positives per impression): the sparse, weakly identified part. The
features carry ``q_i`` only through the noisy ``item_rating`` and the item id.
Measured on the default train split (seed 0, 200,000 rows: 14,051 clicks, 1,406 purchases): click
rate 7.03 %, CVR among clicks 10.01 %, mean ``p_cvr`` 0.0766 over all impressions vs 0.1003 over
clicked ones (ratio 1.31; 1.21-1.32 over seeds 0-4); the oracle (``p_cvr`` itself) has an
entire-space CVR AUC of 0.81. Other settings (seed 0): ``shared = clickbait = 0`` ratio 1.00 (no
bias; 0.975-1.015 over seeds 0-4), ``clickbait = 0`` 1.37, ``shared = 0.8`` 1.60,
``affinity_scale = 1.5`` 1.75 (oracle AUC 0.86).

Columns: features ``user_id``, ``item_id``, ``user_segment``, ``item_category`` (int32,
categorical) and ``position``, ``price``, ``user_activity`` (``0.6 b_u / 0.5 + 0.8 N(0, 1)``, a noisy
view of the click activity, per user), ``item_rating`` (``0.6 q_i / 0.5 + 0.8 N(0, 1)``, per item)
(float32, numeric); labels ``click``, ``purchase``, ``ctcvr`` (int8); ground truth ``p_click``,
``p_cvr``, ``p_ctcvr`` (float64) and ``conversion_if_clicked`` (int8). The ground-truth columns
are NOT features (:data:`TRUTH_COLUMNS` is kept out of ``DatasetBundle.features``) but stay in the
tables for evaluation. Tasks: ``ctr`` (click), ``cvr`` (purchase where ``click == 1``), ``ctcvr``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from polytask.data.datasets._ctcvr import esmm_tasks
from polytask.data.datasets.base import DatasetBundle
from polytask.registry import DATASETS

CATEGORICAL: tuple[str, ...] = ("user_id", "item_id", "user_segment", "item_category")
NUMERIC: tuple[str, ...] = ("position", "price", "user_activity", "item_rating")
LABELS: tuple[str, ...] = ("click", "purchase", "ctcvr")
#: Ground truth kept in the tables for evaluation, never features.
TRUTH_COLUMNS: tuple[str, ...] = ("p_click", "p_cvr", "p_ctcvr", "conversion_if_clicked")

GROUP_SHARE = 0.5  #: share of a latent vector's variance that comes from its segment/category
BIAS_STD = 0.5  #: std of the user/item click and conversion biases
POSITION_EFFECT = 0.5  #: click logit -= POSITION_EFFECT * ln(position)
PRICE_EFFECT = 0.4  #: conversion logit -= PRICE_EFFECT * price
POSITIONS = 10
CALIBRATION_ROWS = 200_000
CHUNK = 4_096  #: impressions are drawn in blocks of this many rows (prefix-stable splits)


@dataclass(frozen=True)
class World:
    """The users and items of one simulated market (everything but the impressions)."""

    user_segment: np.ndarray  # [U] int
    item_category: np.ndarray  # [I] int
    user_click: np.ndarray  # [U, k] click-space user vectors
    item_click: np.ndarray  # [I, k]
    user_conv: np.ndarray  # [U, k] conversion-only space
    item_conv: np.ndarray  # [I, k]
    user_click_bias: np.ndarray  # [U]  b_u
    user_buy_bias: np.ndarray  # [U]  d_u
    item_click_bias: np.ndarray  # [I]  b_i
    item_quality: np.ndarray  # [I]  q_i
    item_price: np.ndarray  # [I]
    user_activity: np.ndarray  # [U] observed feature
    item_rating: np.ndarray  # [I] observed feature
    shared: float
    affinity_scale: float
    user_weights: np.ndarray | None = None  # [U] impression probabilities (None: uniform)
    item_weights: np.ndarray | None = None  # [I]
    click_intercept: float = 0.0
    cvr_intercept: float = 0.0


def _vectors(rng: np.random.Generator, group: np.ndarray, groups: int, k: int) -> np.ndarray:
    centroids = rng.standard_normal((groups, k))
    noise = rng.standard_normal((len(group), k))
    return math.sqrt(GROUP_SHARE) * centroids[group] + math.sqrt(1.0 - GROUP_SHARE) * noise


def zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray | None:
    """Impression probabilities ``∝ rank^-exponent`` over a random ranking of ``n`` entities
    (independent of their attributes), or ``None`` (uniform) when ``exponent == 0``."""
    if exponent == 0:
        return None
    rank = rng.permutation(n) + 1.0
    w = rank ** -float(exponent)
    return w / w.sum()


def make_world(
    rng: np.random.Generator,
    *,
    num_users: int,
    num_items: int,
    num_segments: int,
    num_categories: int,
    latent_dim: int,
    shared: float,
    clickbait: float,
    affinity_scale: float,
    user_popularity: float = 0.0,
    item_popularity: float = 0.0,
) -> World:
    """Draw the universe (step 1 of the module docstring), intercepts not yet calibrated."""
    seg = rng.integers(0, num_segments, num_users)
    cat = rng.integers(0, num_categories, num_items)
    user_click = _vectors(rng, seg, num_segments, latent_dim)
    item_click = _vectors(rng, cat, num_categories, latent_dim)
    user_conv = _vectors(rng, seg, num_segments, latent_dim)
    item_conv = _vectors(rng, cat, num_categories, latent_dim)
    b_u = BIAS_STD * rng.standard_normal(num_users)
    d_u = BIAS_STD * rng.standard_normal(num_users)
    z = rng.standard_normal(num_items)
    e = rng.standard_normal(num_items)
    lam = float(clickbait)
    q = BIAS_STD * (-lam * z + math.sqrt(max(0.0, 1.0 - lam * lam)) * e)
    price = rng.standard_normal(num_items)
    activity = 0.6 * b_u / BIAS_STD + 0.8 * rng.standard_normal(num_users)
    rating = 0.6 * q / BIAS_STD + 0.8 * rng.standard_normal(num_items)
    # drawn last, so that popularity 0 leaves every other draw of the universe as it was
    user_weights = zipf_weights(rng, num_users, user_popularity)
    item_weights = zipf_weights(rng, num_items, item_popularity)
    return World(
        user_segment=seg, item_category=cat, user_click=user_click, item_click=item_click,
        user_conv=user_conv, item_conv=item_conv, user_click_bias=b_u, user_buy_bias=d_u,
        item_click_bias=BIAS_STD * z, item_quality=q, item_price=price, user_activity=activity,
        item_rating=rating, shared=float(shared), affinity_scale=float(affinity_scale),
        user_weights=user_weights, item_weights=item_weights,
    )  # fmt: skip


def _pick(rng: np.random.Generator, count: int, weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return rng.integers(0, count, n)
    return rng.choice(count, size=n, p=weights)


def _draw(world: World, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users = _pick(rng, len(world.user_segment), world.user_weights, n)
    items = _pick(rng, len(world.item_category), world.item_weights, n)
    position = rng.integers(1, POSITIONS + 1, n)
    return users, items, position


def logits(world: World, users: np.ndarray, items: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f_c, f_v)`` of impressions, intercepts included (step 2 of the module docstring)."""
    k = world.user_click.shape[1]
    a = np.einsum("nk,nk->n", world.user_click[users], world.item_click[items]) / math.sqrt(k)
    a_perp = np.einsum("nk,nk->n", world.user_conv[users], world.item_conv[items]) / math.sqrt(k)
    rho, s = world.shared, world.affinity_scale
    f_c = world.click_intercept + s * a + world.user_click_bias[users] + world.item_click_bias[items]
    f_c = f_c - POSITION_EFFECT * np.log(position)
    f_v = world.cvr_intercept + s * (rho * a + math.sqrt(max(0.0, 1.0 - rho * rho)) * a_perp)
    f_v = f_v + world.user_buy_bias[users] + world.item_quality[items] - PRICE_EFFECT * world.item_price[items]
    return f_c, f_v


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _bisect(fn: Any, target: float) -> float:
    """The x in [-40, 40] with fn(x) = target for an increasing fn."""
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if fn(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate(world: World, rng: np.random.Generator, click_rate: float, cvr_rate: float, n: int = CALIBRATION_ROWS) -> World:
    """Solve the intercepts (step 4) on ``n`` impressions drawn from ``rng``."""
    users, items, position = _draw(world, rng, n)
    f_c, f_v = logits(world, users, items, position)  # intercepts are 0 here
    beta_c = _bisect(lambda b: float(_sigmoid(f_c + b).mean()), click_rate)
    w = _sigmoid(f_c + beta_c)
    beta_v = _bisect(lambda b: float((w * _sigmoid(f_v + b)).sum() / w.sum()), cvr_rate)
    return dataclasses.replace(
        world, click_intercept=world.click_intercept + beta_c, cvr_intercept=world.cvr_intercept + beta_v
    )


def impressions(world: World, rng: np.random.Generator, n: int) -> pa.Table:
    """``n`` impressions (steps 2-3) as a table: features, labels and ground truth.

    Drawn in blocks of :data:`CHUNK` rows (user, item, position, then the two uniforms of the
    click and conversion draws), the last block in full and then cut, so the first ``m`` rows
    of ``n > m`` impressions are the ``m`` impressions drawn from the same stream."""
    draws: list[tuple[np.ndarray, ...]] = []
    for _ in range(-(-n // CHUNK)):
        users, items, position = _draw(world, rng, CHUNK)
        draws.append((users, items, position, rng.random(CHUNK), rng.random(CHUNK)))
    users, items, position, u_click, u_conv = (np.concatenate(parts)[:n] for parts in zip(*draws))
    f_c, f_v = logits(world, users, items, position)
    p_click, p_cvr = _sigmoid(f_c), _sigmoid(f_v)
    click = (u_click < p_click).astype(np.int8)
    converted = (u_conv < p_cvr).astype(np.int8)
    purchase = click * converted
    return pa.table(
        {
            "user_id": pa.array(users.astype(np.int32)),
            "item_id": pa.array(items.astype(np.int32)),
            "user_segment": pa.array(world.user_segment[users].astype(np.int32)),
            "item_category": pa.array(world.item_category[items].astype(np.int32)),
            "position": pa.array(position.astype(np.float32)),
            "price": pa.array(world.item_price[items].astype(np.float32)),
            "user_activity": pa.array(world.user_activity[users].astype(np.float32)),
            "item_rating": pa.array(world.item_rating[items].astype(np.float32)),
            "click": pa.array(click),
            "purchase": pa.array(purchase),
            "ctcvr": pa.array(purchase.copy()),
            "p_click": pa.array(p_click),
            "p_cvr": pa.array(p_cvr),
            "p_ctcvr": pa.array(p_click * p_cvr),
            "conversion_if_clicked": pa.array(converted),
        }
    )


def _check(**kwargs: Any) -> None:
    for name in ("rows", "num_users", "num_items", "num_segments", "num_categories", "latent_dim"):
        v = kwargs[name]
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name in ("validation_rows", "test_rows"):
        v = kwargs[name]
        if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
            raise ValueError(f"{name} must be None or an integer >= 1, got {v!r}")
    for name in ("shared", "clickbait"):
        v = kwargs[name]
        if not (-1.0 <= float(v) <= 1.0):
            raise ValueError(f"{name} must be in [-1, 1], got {v!r}")
    for name in ("affinity_scale", "user_popularity", "item_popularity"):
        v = kwargs[name]
        if isinstance(v, bool) or not (math.isfinite(float(v)) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    for name in ("click_rate", "cvr_rate"):
        v = kwargs[name]
        if not (0.0 < float(v) < 1.0):
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    if isinstance(kwargs["seed"], bool) or int(kwargs["seed"]) != kwargs["seed"] or kwargs["seed"] < 0:
        raise ValueError(f"seed must be an integer >= 0, got {kwargs['seed']!r}")


def _summary(table: pa.Table) -> dict[str, float]:
    click = table.column("click").to_numpy().astype(bool)
    p_cvr = table.column("p_cvr").to_numpy()
    purchase = table.column("purchase").to_numpy()
    return {
        "click_rate": float(click.mean()),
        "cvr_among_clicks": float(purchase[click].mean()) if click.any() else float("nan"),
        "mean_p_cvr_all": float(p_cvr.mean()),
        "mean_p_cvr_clicked": float(p_cvr[click].mean()) if click.any() else float("nan"),
    }


@DATASETS.register("entire_space")
def entire_space(
    data_dir: str | os.PathLike | None = None,
    *,
    rows: int = 200_000,
    validation_rows: int | None = None,
    test_rows: int | None = None,
    seed: int = 0,
    num_users: int = 2_000,
    num_items: int = 1_000,
    num_segments: int = 10,
    num_categories: int = 20,
    latent_dim: int = 8,
    shared: float = 0.5,
    clickbait: float = 0.3,
    affinity_scale: float = 1.0,
    user_popularity: float = 0.0,
    item_popularity: float = 0.0,
    click_rate: float = 0.07,
    cvr_rate: float = 0.10,
    tasks: list[str] | None = None,
) -> DatasetBundle:
    """Entire-space click -> conversion simulator with ground-truth p_click/p_cvr: ctr, cvr, ctcvr.

    ``rows`` train impressions (validation and test: ``rows // 4`` each unless given). ``shared``
    (rho) is the weight of the click affinity in the conversion logit, ``clickbait`` (lambda) the
    anti-correlation of item attractiveness and quality, ``affinity_scale`` the strength of both
    affinities; ``user_popularity`` / ``item_popularity`` Zipf exponents of the impression
    distributions (0 = uniform); ``click_rate`` / ``cvr_rate`` are the targets the intercepts are
    solved for.
    ``data_dir`` is accepted for a uniform loader signature and ignored. See the module docstring.
    """
    _check(
        rows=rows, validation_rows=validation_rows, test_rows=test_rows, num_users=num_users, num_items=num_items,
        num_segments=num_segments, num_categories=num_categories, latent_dim=latent_dim, shared=shared,
        clickbait=clickbait, affinity_scale=affinity_scale, click_rate=click_rate, cvr_rate=cvr_rate, seed=seed,
        user_popularity=user_popularity, item_popularity=item_popularity,
    )  # fmt: skip
    task_dicts = esmm_tasks(tasks, click="click", conversion="purchase")
    sizes = {
        "train": int(rows),
        "validation": int(validation_rows) if validation_rows is not None else max(1, int(rows) // 4),
        "test": int(test_rows) if test_rows is not None else max(1, int(rows) // 4),
    }
    streams = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(int(seed)).spawn(5)]
    world = make_world(
        streams[0], num_users=int(num_users), num_items=int(num_items), num_segments=int(num_segments),
        num_categories=int(num_categories), latent_dim=int(latent_dim), shared=float(shared),
        clickbait=float(clickbait), affinity_scale=float(affinity_scale),
        user_popularity=float(user_popularity), item_popularity=float(item_popularity),
    )  # fmt: skip
    world = calibrate(world, streams[1], float(click_rate), float(cvr_rate))
    tables = {split: impressions(world, streams[2 + i], n) for i, (split, n) in enumerate(sizes.items())}

    s = _summary(tables["train"])
    from polytask.analysis.entire_space import auc

    oracle = auc(tables["train"].column("p_cvr").to_numpy(), tables["train"].column("conversion_if_clicked").to_numpy())
    knobs = (
        f"seed={seed}, num_users={num_users}, num_items={num_items}, num_segments={num_segments}, "
        f"num_categories={num_categories}, latent_dim={latent_dim}, shared={float(shared)}, clickbait={float(clickbait)}, "
        f"affinity_scale={float(affinity_scale)}, user_popularity={float(user_popularity)}, "
        f"item_popularity={float(item_popularity)}, click_rate={float(click_rate)}, cvr_rate={float(cvr_rate)}"
    )
    notes = (
        f"Entire-space simulator (polytask.data.datasets.entire_space; generative process in its docstring), {knobs}; "
        f"intercepts beta_c={world.click_intercept:.4f}, beta_v={world.cvr_intercept:.4f}. Splits drawn independently "
        f"(SeedSequence children 2/3/4): train {sizes['train']} / validation {sizes['validation']} / test {sizes['test']} "
        f"impressions from the same users and items. Train: click rate {s['click_rate']:.4f}, CVR among clicks "
        f"{s['cvr_among_clicks']:.4f}; selection bias: mean p_cvr {s['mean_p_cvr_all']:.4f} over all impressions vs "
        f"{s['mean_p_cvr_clicked']:.4f} over clicked ones (ratio {s['mean_p_cvr_clicked'] / s['mean_p_cvr_all']:.3f}); "
        f"oracle entire-space CVR AUC (p_cvr vs conversion_if_clicked) {oracle:.4f}. Tasks: "
        + ", ".join(t["name"] for t in task_dicts)
        + " (cvr: purchase where click == 1). Ground-truth columns "
        + ", ".join(TRUTH_COLUMNS)
        + " are in the tables but not features (use polytask.analysis.entire_space.entire_space_metrics)."
    )
    features = {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)}
    assert not {c for cols in features.values() for c in cols} & set(TRUTH_COLUMNS)
    return DatasetBundle(
        train=tables["train"],
        validation=tables["validation"],
        test=tables["test"],
        features=features,
        tasks=task_dicts,
        notes=notes,
        sources={"generator": "polytask.data.datasets.entire_space (simulated; no files)"},
    )
