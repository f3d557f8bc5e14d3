"""The one look of every moesim figure: palette, rc style, figure size, legends, panel helpers,
and the style of each series (colour, line style, marker).

Figures are built directly (Agg, never pyplot's global state) under :data:`STYLE`, applied with
``matplotlib.rc_context``, and the Okabe-Ito colour-blind-safe palette without its yellow.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from moesim.results import ResultsData
from moesim.results.metrics import format_value, parameter_short

#: Okabe & Ito (2008) colour-blind-safe palette, ordered for contrast on white. Its eighth colour,
#: yellow #F0E442, is left out: a yellow line or a white-edged yellow marker is nearly invisible
#: on white. Beyond 7 series the line style changes instead (:data:`LINE_STYLES`).
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
)
#: Line styles of series 1-7, 8-14, ... (the colours repeat, the style does not).
LINE_STYLES = ("-", "--", ":", "-.")
#: Markers of series (scatter points and line markers).
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: The scenario key of the score function, and its line style and marker in every figure, so
#: sigmoid and softmax variants of the same balancing share a colour and differ in style.
SCORE_KEY = "router.score"
SCORE_STYLES = {"sigmoid": ("-", "o"), "softmax": ("--", "s"), "softmax_after_topk": (":", "^")}

#: The one style of every moesim figure.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 11,
    "figure.titleweight": "bold",
    "axes.prop_cycle": cycler(linestyle=LINE_STYLES) * cycler(color=OKABE_ITO),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": 150,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,
    "svg.fonttype": "path",
}

DPI = 150
WIDTH = 7.5  # inches: a page or a slide at 1125 px
NEUTRAL = "#7f7f7f"
HEATMAP_CMAP = "PuOr_r"  # diverging, colour-blind safe: orange above fair share, purple below
BAND_ALPHA = 0.22


class FigureSkipped(Exception):
    """The figure cannot be drawn from this results folder; ``str(error)`` says why."""


@contextmanager
def style():
    """The moesim figure style (rcParams) for the duration of a block."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(height: float, width: float = WIDTH) -> Figure:
    """An Agg figure of ``width x height`` inches with constrained layout (exact pixel size)."""
    # Whole pixels: Agg truncates a fractional size, and the PNG would be a pixel short.
    width, height = (round(size * DPI) / DPI for size in (width, height))
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def set_title(fig: Figure, data: ResultsData, what: str, *, per_layer: bool = False) -> None:
    """The figure's title: the scenario's name and what the figure shows; for a run with
    several MoE layers, the layer shown or that it is the mean over layers (unless the figure
    shows every layer: ``per_layer``)."""
    if data.layer is not None and not per_layer:
        what += f", layer {data.layer}"
    elif not per_layer and data.summary is not None and data.is_multi_layer:
        what += f", mean over {len(data.layer_numbers)} layers"
    fig.suptitle(f"{data.scenario}: {what}")


# ------------------------------------------------------------------------------ panel helpers


def note(ax, text: str) -> None:
    """A boxed grey note in the middle of a panel (no data, too many panels, ...)."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color=NEUTRAL,
        fontsize=9,
        wrap=True,
        bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "#cccccc"},
    )


def plain_ticks(axis) -> None:
    """Tick labels as plain numbers (``0.01``, ``2``), not matplotlib's ``10^{-2}``."""
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def log_y(ax) -> None:
    """Log y with plain-number tick labels (1, 2, 5 per decade when the range is narrow)."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 else 99
    subs = (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    plain_ticks(ax.yaxis)
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def legend_below(fig: Figure, ax, max_cols: int = 2) -> None:
    """One legend under the axes (outside the data, so it never hides a line)."""
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        ncol = legend_columns(labels, fig.get_figwidth(), max_cols)
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol)


def legend_columns(labels: list[str], width: float, max_cols: int = 4) -> int:
    """Columns of a legend under a figure ``width`` inches wide that keep it inside the figure:
    about 0.065 in per character of the longest label at 8 pt, plus 0.55 in for the handle."""
    longest = max((len(label) for label in labels), default=1)
    fits = int(width // (0.55 + 0.065 * longest))
    return max(1, min(len(labels), max_cols, fits))


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """Rows and columns of a grid of ``n`` panels at most ``max_cols`` wide."""
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def hide_unused(axes, used: int, xlabel: str | None = None) -> None:
    """Hide the panels after the first ``used``; the panel above a hidden one gets the x tick
    labels (and ``xlabel``) that shared x axes only show on the bottom row."""
    grid = np.atleast_2d(axes)
    for index, ax in enumerate(grid.ravel()):
        if index >= used:
            ax.set_visible(False)
    rows, cols = grid.shape
    for col in range(cols):
        used_rows = [r for r in range(rows) if r * cols + col < used]
        if used_rows and used_rows[-1] < rows - 1:
            ax = grid[used_rows[-1], col]
            ax.tick_params(axis="x", labelbottom=True)
            if xlabel:
                ax.set_xlabel(xlabel)


def as_float(value) -> float:
    """A summary value as a float for drawing: NaN when missing or not a number."""
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def two_lines(label: str) -> str:
    """``"name (units)"`` on two lines, so labels fit side-by-side panels."""
    name, separator, rest = label.partition(" (")
    return f"{name}\n({rest}" if separator else label


def short_label(key: str, value) -> str:
    """A parameter and its value for legends and panel titles: ``u=0.001``, ``score=softmax``."""
    return f"{parameter_short(key)}={format_value(value)}"


def combo_label(combo: tuple) -> str:
    """``((key, value), ...)`` as ``u=0.001, score=softmax``."""
    return ", ".join(short_label(k, v) for k, v in combo)


def marker_proxy(color: str, marker: str) -> Line2D:
    """A legend entry of a marker alone (scatter points)."""
    return Line2D(
        [], [], linestyle="", marker=marker, markersize=6, color=color, markeredgecolor="white"
    )


def value_colours(n: int) -> list:
    """``n`` colours: the palette, or for more values than it has a colour-blind-safe sequence
    (viridis, stopping short of its pale yellow end)."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    return [mcolors.to_hex(c) for c in matplotlib.colormaps["viridis"](np.linspace(0, 0.82, n))]


# ------------------------------------------------------------------------------ series styles


@dataclass(frozen=True)
class SeriesStyle:
    """Colour, line style and marker of one series (a variant, or a line of a sweep)."""

    color: str
    linestyle: str
    marker: str

    @property
    def line(self) -> dict:
        return {"color": self.color, "linestyle": self.linestyle}


def series_styles(settings: list[dict]) -> list[SeriesStyle]:
    """A distinct style for each series, described by its settings (key path -> value).

    When the series differ in the score function (``router.score``), the score sets the line
    style and the marker (:data:`SCORE_STYLES`) and the other settings the colour, so the same
    balancing under sigmoid and softmax shares a colour (when the score is the only difference,
    it sets the colour too). Otherwise the colours go in order and the line style (and marker)
    changes every 7 series.
    """
    scores = [s.get(SCORE_KEY) for s in settings]
    rest = [settings_key({k: v for k, v in s.items() if k != SCORE_KEY}) for s in settings]
    groups = list(dict.fromkeys(rest))
    by_score = (
        len(set(scores)) > 1
        and all(score in SCORE_STYLES for score in scores)
        and len(groups) <= len(OKABE_ITO)
        and len(set(zip(scores, rest, strict=True))) == len(settings)
    )
    # When the score is all that differs, it sets the colour as well (bands need colours).
    colour_keys = groups if len(groups) > 1 else list(dict.fromkeys(scores))
    styles = []
    for i, (score, key) in enumerate(zip(scores, rest, strict=True)):
        if by_score:
            linestyle, marker = SCORE_STYLES[score]
            colour = OKABE_ITO[colour_keys.index(key if len(groups) > 1 else score)]
            styles.append(SeriesStyle(colour, linestyle, marker))
        else:
            cycle = i // len(OKABE_ITO)
            styles.append(
                SeriesStyle(
                    OKABE_ITO[i % len(OKABE_ITO)],
                    LINE_STYLES[cycle % len(LINE_STYLES)],
                    # Shifted each cycle, so a colour never repeats with the same marker.
                    MARKERS[(i + cycle) % len(MARKERS)],
                )
            )
    return styles


def settings_key(settings: dict) -> tuple:
    """Settings as a hashable, order-free key (values by ``repr``)."""
    return tuple(sorted((k, repr(v)) for k, v in settings.items()))


def styled_settings(data: ResultsData, name: str) -> dict:
    """What a variant sets (key path -> value) plus its score function when known: the score
    sets a series' line style and marker (:func:`series_styles`) even when the base sets it."""
    settings = data.variant_settings(name)
    score = data.variant_value(name, SCORE_KEY)
    if score is not None:
        settings[SCORE_KEY] = score
    return settings


def variant_styles(data: ResultsData) -> dict[str, SeriesStyle]:
    """Variant name -> its style in every run figure (see :func:`series_styles`)."""
    names = [str(s["variant"]) for s in data.variants]
    styles = series_styles([styled_settings(data, name) for name in names])
    return dict(zip(names, styles, strict=True))
