"""Figures: matplotlib (the Agg renderer, no display, no pyplot state) drawn to PNG and embedded
in the page as base64 ``<img>`` elements, so the report needs nothing but the file."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polytask.report.html import esc

#: pixels per inch of the embedded PNGs (a 6.4 in wide figure is 640 px)
DPI = 100
WIDTH, HEIGHT = 6.4, 3.3
#: figures wider than this (inches) span the page's whole width
WIDE = 7.0

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.7,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.6,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}

#: diverging map for signed values centred at 0 (cosines, correlations, mixing weights)
DIVERGING = "RdBu_r"
#: sequential map for weights in [0, 1] (gates)
SEQUENTIAL = "viridis"


def style() -> Any:
    """A context in which the report's figures are drawn (the style above, the Agg backend's
    defaults; global matplotlib settings are left as they were)."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def figure(width: float = WIDTH, height: float = HEIGHT) -> Any:
    """A new figure (not registered with pyplot, so nothing leaks between reports)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def grid(n: int, columns: int = 3, panel: tuple[float, float] = (3.3, 2.6), *, width: float | None = None) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels in rows of ``columns``; the unused axes are hidden."""
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    w = width if width is not None else panel[0] * columns
    fig = figure(w, panel[1] * rows + 0.3)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).reshape(-1)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def colours(names: Sequence[str]) -> dict[str, Any]:
    """A stable colour per name (tab10, tab20 past ten names)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def to_html(fig: Any, alt: str, caption: str | None = None, *, wide: bool = False) -> str:
    """The figure as an embedded PNG inside ``<figure class="plot">``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cls = "plot wide" if wide or fig.get_figwidth() > WIDE else "plot"
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="{cls}"><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def lines(ax: Any, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], colour: Mapping[str, Any] | None = None,
          *, title: str = "", xlabel: str = "", ylabel: str = "", style: Mapping[str, str] | None = None,
          legend: bool = True, log: bool = False) -> None:
    """One line per ``name -> (x, y)``; markers when there are few points."""
    colour = colour or colours(list(series))
    drawn = 0
    for name, (x, y) in series.items():
        if not len(x):
            continue
        few = len(x) <= 15
        ax.plot(x, y, label=name, color=colour.get(name), linestyle=(style or {}).get(name, "-"),
                marker="o" if few else None, markersize=3)
        drawn += 1
    if log and _positive(series):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend and drawn:
        if drawn > 4:  # beside the axes, where it hides no line
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        else:
            ax.legend(loc="best")
    integer_ticks(ax)


def shared_legend(fig: Any, axes: Sequence[Any], where: str = "right") -> None:
    """One legend for all panels (each label once, in the order first drawn), right of them or
    (``where="bottom"``) below them in one row."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if not seen:
        return
    if where == "bottom":
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=len(seen))
    else:
        fig.legend(list(seen.values()), list(seen), loc="outside right upper")


def _positive(series: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> bool:
    values = [v for _, y in series.values() for v in y if v == v]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def mark_epoch(ax: Any, epoch: int | None, label: str = "best epoch") -> None:
    """A dashed vertical line at ``epoch`` (the saved checkpoint's)."""
    if epoch is not None:
        ax.axvline(epoch, color="#6b7280", linestyle="--", linewidth=1.0, label=label, zorder=0)


def heatmap(ax: Any, matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], *, cmap: str = SEQUENTIAL,
            vmin: float | None = None, vmax: float | None = None, annotate: bool = True, digits: int = 2,
            title: str = "", colorbar: bool = True, xlabel: str = "", ylabel: str = "") -> Any:
    """An image of ``matrix`` (NaN cells grey), labelled rows and columns, values written in the
    cells when ``annotate`` and the matrix is small enough to read them."""
    from matplotlib import colormaps

    m = np.asarray(matrix, dtype=float)
    cm = colormaps[cmap].with_extremes(bad="#e5e7eb")
    image = ax.imshow(np.ma.masked_invalid(m), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set_yticks(range(len(rows)), [_short(r) for r in rows])
    if len(columns) <= 40:
        ax.set_xticks(range(len(columns)), [_short(c) for c in columns],
                      rotation=0 if max((len(str(c)) for c in columns), default=0) * len(columns) < 60 else 40,
                      ha="center" if max((len(str(c)) for c in columns), default=0) * len(columns) < 60 else "right")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate and m.size <= 144:
        lo = np.nanmin(m) if vmin is None and np.isfinite(m).any() else (vmin or 0.0)
        hi = np.nanmax(m) if vmax is None and np.isfinite(m).any() else (vmax or 1.0)
        for (i, j), v in np.ndenumerate(m):
            if v == v:
                ax.text(j, i, f"{v:.{digits}f}", ha="center", va="center", fontsize=7.5,
                        color=_text_colour(cm, v, lo, hi))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
    return image


def _text_colour(cmap: Any, value: float, lo: float, hi: float) -> str:
    t = 0.5 if hi == lo else (value - lo) / (hi - lo)
    r, g, b, _ = cmap(min(max(t, 0.0), 1.0))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _short(label: Any, limit: int = 22) -> str:
    text = str(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def symmetric_limit(matrix: np.ndarray, floor: float = 1e-6) -> float:
    """The largest absolute finite value (for a colour scale centred at 0)."""
    m = np.asarray(matrix, dtype=float)
    finite = m[np.isfinite(m)]
    return max(float(np.abs(finite).max()) if finite.size else 1.0, floor)
