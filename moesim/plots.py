"""Figures of a results folder (a run, a sweep, or both) for design reviews.

Every figure function takes a :class:`ResultsData` and returns a :class:`matplotlib.figure.Figure`
built directly (Agg, never pyplot's global state) under one style (:data:`STYLE`, applied with
``matplotlib.rc_context``) and the Okabe-Ito colour-blind-safe palette without its yellow. A
figure whose data is absent raises :class:`FigureSkipped` with the reason; :func:`write_figures`
records it and goes on.

The registry :data:`FIGURES` maps each figure's name to its function, its one-line caption and,
for the sweep's chosen metric, the file name (``sweep_<metric>``). Axis labels come from two
tables: :data:`METRICS` (summary metrics) and :data:`PARAMETERS` (scenario key paths).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from moesim.results import read_history, read_loads, read_summary, write_atomic
from moesim.results.metrics import (
    format_number,
    metric_spec,
    parameter_label,
    parameter_short,
)
from moesim.statistics import mean_interval

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
FORMATS = ("png", "svg", "pdf")
NEUTRAL = "#7f7f7f"
HEATMAP_CMAP = "PuOr_r"  # diverging, colour-blind safe: orange above fair share, purple below
BAND_ALPHA = 0.22
#: Lines per sweep panel: one per colour. More combinations are split into panels (facets).
MAX_LINES = len(OKABE_ITO)
#: Panels per swept parameter; a grid that needs more is named in a note instead of drawn.
MAX_FACETS = 6

#: Sweep columns that are neither swept parameters nor metrics.
SWEEP_BOOKKEEPING = {"seed", "point", "run", "replicate", "variant", "error", "status", "id"}


#: Metrics of the sweep overview figure, in panel order (the chosen metric comes first).
SWEEP_OVERVIEW_METRICS = (
    "max_vio_global",
    "final_max_vio_batch",
    "starved",
    "drop_rate",
    "specialization",
    "quality",
)

#: Sweep figures, drawn at the end of ``moesim sweep``.
SWEEP_FIGURES = ("sweep_chosen_metric", "sweep_metrics", "drop_vs_capacity", "tradeoff")


class FigureSkipped(Exception):
    """The figure cannot be drawn from this results folder; ``str(error)`` says why."""


class NotResultsError(ValueError):
    """The folder is not a moesim results folder (no summary.json and no sweep.csv)."""


@dataclass
class Plot:
    """A drawn figure with its file name (without extension) and one-line caption."""

    name: str
    figure: Figure
    caption: str


@dataclass
class ResultsData:
    """Everything the figures and the report read from one results folder.

    Attributes
    ----------
    summary : dict or None
        ``summary.json`` of a run (``{"scenario", "partial", "variants": [...]}``).
    history : dict[str, ndarray] or None
        ``history.csv`` columns (``variant`` as strings).
    loads : dict[str, dict[str, ndarray]] or None
        ``loads.npz`` per variant: ``loads``/``demand`` (R, E) int64, ``bias`` (R, E) float32,
        ``steps`` (R,), ``final_loads`` (E,), ``final_bias`` (E,).
    sweep : dict[str, ndarray] or None
        ``sweep.csv`` columns: floats where every cell parses as a number, else strings.
    sweep_params : list[str]
        Swept parameters (key paths such as ``balance.bias.rate``).
    sweep_summary : dict or None
        ``sweep_summary.json``: grid, seeds, the chosen metric and direction, the best point.
    """

    path: Path
    scenario: str
    summary: dict | None = None
    history: dict | None = None
    loads: dict | None = None
    manifest: dict | None = None
    resolved_yaml: str | None = None
    sweep: dict | None = None
    sweep_params: list[str] = field(default_factory=list)
    sweep_summary: dict | None = None

    @property
    def variants(self) -> list[dict]:
        """Variant summaries of the run, in scenario order (empty for a sweep-only folder)."""
        return list(self.summary.get("variants", [])) if self.summary else []

    @property
    def is_sweep(self) -> bool:
        return self.sweep is not None and len(self.sweep.get("seed", self._first_column())) > 0

    def _first_column(self):
        return next(iter(self.sweep.values())) if self.sweep else []

    @property
    def sweep_metric(self) -> tuple[str, bool] | None:
        """The sweep's chosen metric and whether lowest is best, from ``sweep_summary.json``."""
        summary = self.sweep_summary or {}
        metric = summary.get("metric")
        if not isinstance(metric, str) or not metric:
            return None
        return metric, bool(summary.get("minimize", True))

    @property
    def sweep_keys(self) -> list[str]:
        """Columns that tell sweep points apart: the swept parameters, and the variant when the
        scenario has more than one."""
        if not self.is_sweep:
            return []
        keys = [p for p in self.sweep_params if p in self.sweep]
        if "variant" in self.sweep and len(set(self.sweep["variant"].tolist())) > 1:
            keys.append("variant")
        return keys

    @property
    def seeds(self) -> list:
        """The distinct seeds of the sweep's rows, sorted."""
        if not self.is_sweep or "seed" not in self.sweep:
            return []
        return sorted({_hashable(s) for s in self.sweep["seed"].tolist()}, key=str)

    def variant_history(self, name: str) -> dict[str, np.ndarray]:
        """History columns of one variant (rows of the tidy table with ``variant == name``)."""
        if self.history is None:
            raise FigureSkipped("no history.csv in the results folder")
        mask = self.history["variant"] == name
        return {key: values[mask] for key, values in self.history.items() if key != "variant"}

    @cached_property
    def scenario_dict(self) -> dict:
        """The resolved scenario as a mapping (empty when absent or unreadable)."""
        if not self.resolved_yaml:
            return {}
        try:
            import yaml

            node = yaml.safe_load(self.resolved_yaml)
        except Exception:
            return {}
        return node if isinstance(node, dict) else {}

    def scenario_value(self, key_path: str):
        """A value of the resolved (base) scenario by key path (None when unknown)."""
        node = self.scenario_dict
        for key in key_path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    def variant_settings(self, name: str) -> dict:
        """What a variant sets (key path -> value), plus its score function when known.

        From the ``variants`` of the resolved scenario; ``{}`` (and the base score) for a
        variant it does not list.
        """
        settings: dict = {}
        for entry in self.scenario_dict.get("variants") or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                settings = {
                    k: v for k, v in _flatten(entry).items() if k not in ("name", "description")
                }
                break
        score = settings.get(SCORE_KEY, self.scenario_value(SCORE_KEY))
        if score is not None:
            settings[SCORE_KEY] = score
        return settings

    def variant_value(self, name: str, key_path: str):
        """A variant's value of a key path: its own setting, else the base scenario's."""
        settings = self.variant_settings(name)
        return settings[key_path] if key_path in settings else self.scenario_value(key_path)


def _flatten(node: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and empty mappings are values)."""
    flat = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


# --------------------------------------------------------------------------------- loading


def load_results(results_dir: Path) -> ResultsData:
    """Read a results folder written by ``moesim run`` and/or ``moesim sweep``.

    Raises
    ------
    NotResultsError
        When the folder does not exist or holds neither ``summary.json`` nor ``sweep.csv``.
    """
    path = Path(results_dir)
    if not path.is_dir():
        raise NotResultsError(f"{path} is not a folder")
    has_run = (path / "summary.json").is_file()
    has_sweep = (path / "sweep.csv").is_file()
    if not has_run and not has_sweep:
        raise NotResultsError(
            f"{path} is not a moesim results folder (no summary.json or sweep.csv); "
            "make one with `moesim run` or `moesim sweep`"
        )
    data = ResultsData(path=path, scenario=path.name)
    try:
        if has_run:
            data.summary = read_summary(path)
            if (path / "history.csv").is_file():
                data.history = read_history(path)
            if (path / "loads.npz").is_file():
                data.loads = read_loads(path)
        if (path / "manifest.json").is_file():
            data.manifest = json.loads((path / "manifest.json").read_text())
        if (path / "scenario.resolved.yaml").is_file():
            data.resolved_yaml = (path / "scenario.resolved.yaml").read_text()
        if (path / "sweep_summary.json").is_file():
            data.sweep_summary = json.loads((path / "sweep_summary.json").read_text())
        if has_sweep:
            data.sweep = read_sweep_csv(path / "sweep.csv")
            data.sweep_params = sweep_parameters(data.sweep, data.sweep_summary)
    except (OSError, ValueError, KeyError) as error:
        raise NotResultsError(f"{path}: cannot read results ({error})") from error
    for source in (data.summary, data.manifest, data.sweep_summary):
        if isinstance(source, dict) and isinstance(source.get("scenario"), str):
            data.scenario = source["scenario"]
            break
    else:
        name = data.scenario_value("name")
        if isinstance(name, str) and name:
            data.scenario = name
    return data


def read_sweep_csv(path: Path) -> dict[str, np.ndarray]:
    """``sweep.csv`` as columns; failed points (a non-empty ``error`` cell) are left out."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if "error" in (rows[0] if rows else {}):
        rows = [row for row in rows if not (row.get("error") or "").strip()]
    names = list(rows[0].keys()) if rows else []
    columns: dict[str, np.ndarray] = {}
    for name in names:
        cells = [row.get(name) or "" for row in rows]
        columns[name] = _parse_column(cells)
    return columns


def _parse_column(cells: list[str]) -> np.ndarray:
    values = []
    for cell in cells:
        text = cell.strip()
        if text in ("", "None", "null", "nan", "NaN"):
            values.append(np.nan)
            continue
        if text in ("True", "False", "true", "false"):
            values.append(1.0 if text.lower() == "true" else 0.0)
            continue
        try:
            values.append(float(text))
        except ValueError:
            return np.asarray(cells, dtype=object)
    return np.asarray(values, dtype=float)


def sweep_parameters(columns: dict[str, np.ndarray], sweep_summary: dict | None = None) -> list:
    """Swept parameter columns: named in ``sweep_summary.json`` or key paths (``a.b``)."""
    if isinstance(sweep_summary, dict):
        for key in ("parameters", "params", "swept", "grid"):
            named = sweep_summary.get(key)
            if isinstance(named, dict):
                named = list(named)
            if isinstance(named, list) and named and all(isinstance(n, str) for n in named):
                return [n for n in named if n in columns]
    return [n for n in columns if "." in n and n not in SWEEP_BOOKKEEPING]


# --------------------------------------------------------------------------------- helpers


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


def _title(fig: Figure, data: ResultsData, what: str) -> None:
    fig.suptitle(f"{data.scenario}: {what}")


def _require_run(data: ResultsData) -> list[dict]:
    if not data.variants:
        raise FigureSkipped("no run results (summary.json) in this folder")
    return data.variants


def _require_loads(data: ResultsData) -> dict:
    if not data.loads:
        raise FigureSkipped("no loads.npz (the run was made with output.save_loads: false)")
    return data.loads


def _note(ax, text: str) -> None:
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


def _log_y(ax) -> None:
    """Log y with plain-number tick labels (1, 2, 5 per decade when the range is narrow)."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 else 99
    subs = (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _legend_below(fig: Figure, ax, max_cols: int = 2) -> None:
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


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _hide_unused(axes, used: int, xlabel: str | None = None) -> None:
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
    rest = [_settings_key({k: v for k, v in s.items() if k != SCORE_KEY}) for s in settings]
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


def _settings_key(settings: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in settings.items()))


def variant_styles(data: ResultsData) -> dict[str, SeriesStyle]:
    """Variant name -> its style in every run figure (see :func:`series_styles`)."""
    names = [str(s["variant"]) for s in data.variants]
    styles = series_styles([data.variant_settings(name) for name in names])
    return dict(zip(names, styles, strict=True))


# --------------------------------------------------------------------------- run figures


def load_heatmap(data: ResultsData) -> Figure:
    """Experts x recorded steps, colour = demand / fair share (log2 scale), one panel per variant.

    Experts are ordered by their final-window load, the most loaded at the top, so a collapse
    shows as a bright band at the top and a dark one below.
    """
    variants = _require_run(data)
    loads = _require_loads(data)
    panels = []
    for summary in variants:
        arrays = loads.get(summary["variant"])
        if arrays is None or arrays["demand"].size == 0:
            continue
        demand = arrays["demand"].astype(float)  # (R, E)
        fair = demand.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log2(demand / np.where(fair > 0, fair, np.nan))
        order = np.argsort(-arrays["final_loads"], kind="stable")
        steps = arrays["steps"].astype(float)
        edges = np.concatenate([[0.0], steps + 1.0])
        panels.append((summary, ratio[:, order].T, edges))
    if not panels:
        raise FigureSkipped("no per-expert loads recorded")
    finite = np.concatenate([np.abs(p[1][np.isfinite(p[1])]) for p in panels])
    limit = float(np.clip(np.ceil(np.quantile(finite, 0.995)) if finite.size else 1.0, 1.0, 4.0))
    norm = mcolors.Normalize(vmin=-limit, vmax=limit)
    rows, cols = _grid_shape(len(panels))
    fig = new_figure(0.9 + 2.3 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False))
    mesh = None
    for ax, (summary, ratio, edges) in zip(axes.ravel(), panels, strict=False):
        n_experts = ratio.shape[0]
        # Zero loads have ratio -inf: clip them to the darkest colour rather than leave a hole.
        shown = np.nan_to_num(np.clip(ratio, -limit, limit), nan=-limit)
        mesh = ax.pcolormesh(
            edges,
            np.arange(n_experts + 1),
            shown,
            cmap=HEATMAP_CMAP,
            norm=norm,
            rasterized=True,
            shading="flat",
        )
        ax.set_ylim(n_experts, 0)
        ax.grid(False)
        ax.set_title(
            f"{summary['variant']}\nMaxVio_global {format_number(summary.get('max_vio_global'))}",
            fontsize=8.5,
        )
        ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=5, integer=True))
    for ax in axes[-1, :]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("expert rank\n(by final-window load)")
    _hide_unused(axes, len(panels), xlabel="step")
    ticks = np.arange(-limit, limit + 1)
    colorbar = fig.colorbar(
        mesh, ax=axes.ravel().tolist(), shrink=0.9, aspect=30, pad=0.02, extend="both"
    )
    colorbar.set_ticks(ticks)
    colorbar.set_ticklabels([_power_of_two_label(t) for t in ticks])
    colorbar.set_label("load / fair share (log scale)")
    _title(fig, data, "expert load over time")
    return fig


def _power_of_two_label(exponent: float) -> str:
    exponent = int(exponent)
    if exponent >= 0:
        return f"{2**exponent}×"
    return f"1/{2 ** (-exponent)}×"


def max_vio_over_steps(data: ResultsData) -> Figure:
    """MaxVio_batch at each recorded step, log y, every variant, MaxVio_global in the legend."""
    variants = _require_run(data)
    fig = new_figure(3.6)
    ax = fig.subplots()
    floor = 1e-3
    drawn = False
    styles = variant_styles(data)
    for summary in variants:
        history = data.variant_history(summary["variant"])
        if not len(history.get("step", [])):
            continue
        values = np.clip(history["max_vio_batch"], floor, None)
        label = (
            f"{summary['variant']} (MaxVio_global {format_number(summary.get('max_vio_global'))})"
        )
        ax.plot(history["step"], values, label=label, alpha=0.9, **styles[summary["variant"]].line)
        drawn = True
    if not drawn:
        raise FigureSkipped("no recorded steps")
    noise = [s.get("max_vio_noise_floor") for s in variants if s.get("max_vio_noise_floor")]
    if noise:
        ax.axhline(
            float(np.median(noise)),
            color=NEUTRAL,
            linestyle="--",
            linewidth=1.0,
            label="noise floor of uniform routing",
        )
    _log_y(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("MaxVio_batch\n(max / mean load − 1)")
    ax.set_xlim(left=0)
    _legend_below(fig, ax)
    _title(fig, data, "batch load imbalance over training")
    return fig


def bias_trajectories(data: ResultsData) -> Figure:
    """Expert bias over steps: median, 5-95% band across experts, the 3 most extreme experts."""
    variants = _require_run(data)
    loads = _require_loads(data)
    panels = []
    for summary in variants:
        arrays = loads.get(summary["variant"])
        if arrays is None or arrays["bias"].size == 0 or not np.any(arrays["bias"]):
            continue
        panels.append((summary, arrays))
    if not panels:
        raise FigureSkipped("no variant uses the expert bias (loss-free balancing)")
    rows, cols = _grid_shape(len(panels), max_cols=2)
    fig = new_figure(0.9 + 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False))
    for ax, (summary, arrays) in zip(axes.ravel(), panels, strict=False):
        bias = arrays["bias"].astype(float)  # (R, E)
        steps = arrays["steps"]
        low, median, high = np.percentile(bias, [5, 50, 95], axis=1)
        ax.fill_between(
            steps,
            low,
            high,
            color=OKABE_ITO[0],
            alpha=BAND_ALPHA,
            linewidth=0,
            label="5-95% of experts",
        )
        ax.plot(steps, median, color=OKABE_ITO[0], label="median expert")
        final = bias[-1]
        extreme = np.argsort(-np.abs(final - np.median(final)), kind="stable")[:3]
        for colour, expert in zip(OKABE_ITO[1:4], extreme, strict=False):
            ax.plot(steps, bias[:, expert], color=colour, linewidth=0.9, label=f"expert {expert}")
        ax.axhline(0.0, color=NEUTRAL, linewidth=0.6)
        ax.set_title(summary["variant"])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=3)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    for ax in axes.ravel():
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("expert bias b (score units)")
    _hide_unused(axes, len(panels))
    _title(fig, data, "expert bias trajectories")
    return fig


def lorenz_curves(data: ResultsData) -> Figure:
    """Lorenz curve of the final-window demand per variant, Gini in the legend."""
    variants = _require_run(data)
    loads = _require_loads(data)
    fig = new_figure(4.6, width=5.6)
    ax = fig.subplots()
    ax.plot([0, 100], [0, 100], color=NEUTRAL, linestyle="--", linewidth=1.0, label="equality")
    drawn = False
    styles = variant_styles(data)
    for summary in variants:
        arrays = loads.get(summary["variant"])
        if arrays is None:
            continue
        final = np.sort(arrays["final_loads"].astype(float))
        if final.sum() <= 0:
            continue
        share = np.concatenate([[0.0], np.cumsum(final) / final.sum()]) * 100
        fraction = np.linspace(0, 100, final.size + 1)
        gini = summary.get("gini")
        if gini is None:
            gini = _gini(final)
        label = f"{summary['variant']} (Gini {format_number(gini)})"
        ax.plot(fraction, share, label=label, **styles[summary["variant"]].line)
        drawn = True
    if not drawn:
        raise FigureSkipped("no final-window loads")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_aspect("equal")
    ax.set_xlabel("experts, least loaded first (% of experts)")
    ax.set_ylabel("cumulative share of assignments (%)")
    ax.legend(loc="upper left")
    _title(fig, data, "final-window load inequality")
    return fig


def _gini(sorted_loads: np.ndarray) -> float:
    n = sorted_loads.size
    weights = 2 * np.arange(n) - n + 1
    return float((weights * sorted_loads).sum() / (n * sorted_loads.sum()))


def drop_rate_over_steps(data: ResultsData) -> Figure:
    """Assignment drop rate per recorded window; a flat zero line with a note when none drop."""
    variants = _require_run(data)
    fig = new_figure(3.4)
    ax = fig.subplots()
    any_drops = False
    styles = variant_styles(data)
    for summary in variants:
        history = data.variant_history(summary["variant"])
        if not len(history.get("step", [])):
            continue
        rate = np.nan_to_num(history["drop_rate"]) * 100
        any_drops |= bool(np.any(rate > 0))
        capacity = summary.get("capacity")
        limit = "no capacity limit" if capacity is None else f"capacity {capacity}/expert"
        average = format_number(100 * float(summary.get("drop_rate") or 0.0), 2)
        label = f"{summary['variant']} ({limit}, {average}% dropped)"
        ax.plot(history["step"], rate, label=label, alpha=0.9, **styles[summary["variant"]].line)
    if not any_drops:
        ax.set_ylim(-0.25, 5)
        _note(ax, "no assignment was dropped")
    else:
        top = ax.get_ylim()[1]
        ax.set_ylim(-0.02 * top, top)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("assignments dropped (%)")
    _legend_below(fig, ax)
    _title(fig, data, "token dropping at the capacity limit")
    return fig


def tradeoff(data: ResultsData) -> Figure:
    """Specialization and quality against MaxVio_global: one point per variant or sweep point.

    A run: each variant in its style (:func:`variant_styles`). A sweep: means over seeds; colour
    is one swept parameter, the marker another (the score function when it is swept).
    """
    points, handles, labels, note = _tradeoff_points(data)
    panels = [
        (key, metric_spec(key).label)
        for key in ("specialization", "quality")
        if any(np.isfinite(p[key]) for p in points)
    ]
    if not panels:
        raise FigureSkipped("no specialization or quality metric (a single token cluster?)")
    fig = new_figure(4.0, width=WIDTH if len(panels) > 1 else 5.5)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    xs = np.array([p["max_vio_global"] for p in points])
    log_x = xs.min() > 0 and xs.max() / xs.min() > 10
    # The verdict's bar, as the run was judged (metrics.balanced_max_vio; 0.1 before it existed).
    bar = data.scenario_value("metrics.balanced_max_vio") or 0.1
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for p in points:
            if not np.isfinite(p[key]):
                continue
            ax.scatter(
                max(p["max_vio_global"], 1e-4),
                p[key],
                s=46,
                color=p["color"],
                marker=p["marker"],
                edgecolor="white",
                linewidth=0.6,
                zorder=3,
            )
        ax.axvline(bar, color=NEUTRAL, linestyle=":", linewidth=1.0)
        ax.text(
            bar,
            1.0,
            f" balanced < {bar:g}",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color=NEUTRAL,
            va="top",
        )
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.margins(x=0.12, y=0.12)
        ax.set_xlabel(f"{metric_spec('max_vio_global').label}\nleft is balanced")
        ax.set_ylabel(_two_lines(ylabel))
    ncol = legend_columns(labels, fig.get_figwidth())
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=note)
    what = " and ".join(key for key, _ in panels)
    _title(fig, data, f"balance versus {what}")
    return fig


def _marker_proxy(color: str, marker: str) -> Line2D:
    return Line2D(
        [], [], linestyle="", marker=marker, markersize=6, color=color, markeredgecolor="white"
    )


def _tradeoff_points(data: ResultsData):
    """Points ``{max_vio_global, specialization, quality, color, marker}``, legend handles and
    labels, and a legend title naming what points of the same look still differ in."""
    nan = float("nan")
    if not data.is_sweep:
        styles = variant_styles(data)
        points = [
            {
                "max_vio_global": _float(summary.get("max_vio_global")),
                "specialization": _float(summary.get("specialization")),
                "quality": _float(summary.get("quality")),
                "color": styles[summary["variant"]].color,
                "marker": styles[summary["variant"]].marker,
            }
            for summary in _require_run(data)
        ]
        points = [p for p in points if np.isfinite(p["max_vio_global"])]
        if not points:
            raise FigureSkipped("no variant has a finite MaxVio_global")
        handles = [_marker_proxy(s.color, s.marker) for s in styles.values()]
        return points, handles, list(styles), None
    sweep = data.sweep
    keys = data.sweep_keys
    if not keys:
        raise FigureSkipped("sweep.csv names no swept parameter")
    # The score function takes the marker (as in every figure); the other parameter the colour.
    if SCORE_KEY in keys and len(keys) > 1:
        marker_key = SCORE_KEY
    else:
        marker_key = keys[1] if len(keys) > 1 else None
    colour_key = next(k for k in keys if k != marker_key)
    extra = [k for k in keys if k not in (colour_key, marker_key)]
    colour_values = [combo[0][1] for combo, _ in group_rows(sweep, [colour_key])]
    colours = dict(zip(colour_values, _value_colours(len(colour_values)), strict=True))
    marker_values = (
        [combo[0][1] for combo, _ in group_rows(sweep, [marker_key])] if marker_key else []
    )
    markers = {
        v: SCORE_STYLES[v][1]
        if marker_key == SCORE_KEY and v in SCORE_STYLES
        else MARKERS[i % len(MARKERS)]
        for i, v in enumerate(marker_values)
    }
    points = []
    for combo, rows in group_rows(sweep, keys):
        values = dict(combo)
        entry = {
            "color": colours[values[colour_key]],
            "marker": markers.get(values.get(marker_key), "o"),
        }
        for metric in ("max_vio_global", "specialization", "quality"):
            column = sweep.get(metric)
            numeric = column is not None and column.dtype != object
            entry[metric] = interval(column[rows])[0] if numeric else nan
        points.append(entry)
    points = [p for p in points if np.isfinite(p["max_vio_global"])]
    if not points:
        raise FigureSkipped("sweep.csv has no finite MaxVio_global")
    handles = [_marker_proxy(colours[v], "o") for v in colour_values]
    labels = [_short(colour_key, v) for v in colour_values]
    handles += [_marker_proxy(NEUTRAL, markers[v]) for v in marker_values]
    labels += [_short(marker_key, v) for v in marker_values]
    note = "means over seeds"
    if extra:
        note += "; points alike also differ in " + ", ".join(parameter_short(k) for k in extra)
    return points, handles, labels, note


def _value_colours(n: int) -> list:
    """``n`` colours: the palette, or for more values than it has a colour-blind-safe sequence
    (viridis, stopping short of its pale yellow end)."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    return [mcolors.to_hex(c) for c in matplotlib.colormaps["viridis"](np.linspace(0, 0.82, n))]


def _float(value) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _short(key: str, value) -> str:
    return f"{parameter_short(key)}={value_text(value)}"


def _combo_label(combo: tuple) -> str:
    return ", ".join(_short(k, v) for k, v in combo)


def value_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def group_rows(columns: dict, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """Rows grouped by the values of ``keys``: ``[(((key, value), ...), row indices)]``, sorted."""
    n = len(next(iter(columns.values()))) if columns else 0
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        combo = tuple((k, _hashable(columns[k][i])) for k in keys)
        groups.setdefault(combo, []).append(i)
    return sorted(((c, np.asarray(r)) for c, r in groups.items()), key=lambda g: _sort_key(g[0]))


def _hashable(value):
    if isinstance(value, (float, np.floating)):
        # NaN (a null parameter) is one group, not one per row (NaN != NaN).
        return None if math.isnan(value) else float(value)
    return value


def _sort_key(combo: tuple) -> tuple:
    return tuple(
        (0, v, "") if isinstance(v, float) else (2, 0.0, "") if v is None else (1, 0.0, str(v))
        for _, v in combo
    )


def same_value(a, b) -> bool:
    """Equal sweep values: numbers within rounding (JSON and CSV spell floats alike), else text."""
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


# ------------------------------------------------------------------------- sweep figures


def _require_sweep(data: ResultsData) -> dict:
    if not data.is_sweep:
        raise FigureSkipped("no sweep results (sweep.csv) in this folder")
    if not data.sweep_params:
        raise FigureSkipped("sweep.csv names no swept parameter")
    return data.sweep


def interval(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, 95% half-width (Student's t) and count over seeds; NaN-safe (see moesim.statistics)."""
    return mean_interval(values)


def _x_parameters(data: ResultsData) -> list[str]:
    """Swept parameters drawn on x: the numeric ones (all of them when none is numeric)."""
    present = [p for p in data.sweep_params if p in data.sweep]
    return [p for p in present if data.sweep[p].dtype != object] or present


@dataclass
class SweepLayout:
    """How the sweep is drawn against one parameter ``x_key``.

    The other parameters (and the variant) are split into ``line_keys``, one line per value
    combination (at most :data:`MAX_LINES`), and ``facet_keys``, one panel per combination:
    lines are never pooled, so no line averages over, say, sigmoid and softmax.
    """

    x_key: str
    facet_keys: list[str]
    facets: list[tuple[tuple, np.ndarray]]  # (facet combination, its rows of sweep.csv)
    line_keys: list[str]
    styles: dict[tuple, SeriesStyle]  # line combination -> style, the same in every panel
    categories: list[str]  # x values when x is not numeric

    @property
    def too_many_facets(self) -> bool:
        return len(self.facets) > MAX_FACETS


def sweep_layout(data: ResultsData, x_key: str) -> SweepLayout:
    """Lines and facets of the panels against ``x_key`` (see :class:`SweepLayout`)."""
    sweep = data.sweep
    line_keys = [k for k in data.sweep_keys if k != x_key]
    facet_keys: list[str] = []
    while line_keys and len(group_rows(sweep, line_keys)) > MAX_LINES:
        # Facet by the parameter with the fewest values (a text one such as the score on ties).
        key = min(line_keys, key=lambda k: (len(group_rows(sweep, [k])), sweep[k].dtype != object))
        line_keys.remove(key)
        facet_keys.append(key)
    n = len(sweep[x_key])
    facets = group_rows(sweep, facet_keys) if facet_keys else [((), np.arange(n))]
    combos = [combo for combo, _ in group_rows(sweep, line_keys)] if line_keys else [()]
    styles = dict(zip(combos, series_styles([dict(c) for c in combos]), strict=True))
    x_column = sweep[x_key]
    categories = sorted({str(v) for v in x_column}) if x_column.dtype == object else []
    return SweepLayout(x_key, facet_keys, facets, line_keys, styles, categories)


def sweep_panel(ax, sweep: dict, layout: SweepLayout, rows: np.ndarray, metric: str) -> list:
    """Mean line and 95% band of ``metric`` against ``layout.x_key`` over ``rows``, one line per
    line combination; bands are clipped to the metric's range. Returns the means drawn."""
    spec = metric_spec(metric)
    scale = 100.0 if spec.percent else 1.0
    sub = {key: column[rows] for key, column in sweep.items()}
    groups = group_rows(sub, layout.line_keys) if layout.line_keys else [((), np.arange(len(rows)))]
    drawn = []
    for combo, indices in groups:
        xs, means, halves = [], [], []
        for ((_, x_value),), inner in group_rows({"x": sub[layout.x_key][indices]}, ["x"]):
            if x_value is None:
                continue  # a null parameter value has no place on the x axis
            mean, half, _ = interval(sub[metric][indices][inner] * scale)
            if not math.isfinite(mean):
                continue
            xs.append(layout.categories.index(str(x_value)) if layout.categories else x_value)
            means.append(mean)
            halves.append(half)
        if not xs:
            continue
        xs, means, halves = np.array(xs, dtype=float), np.array(means), np.array(halves)
        low, high = means - halves, means + halves
        if spec.low is not None:
            low = np.maximum(low, spec.low * scale)
        if spec.high is not None:
            high = np.minimum(high, spec.high * scale)
        style = layout.styles[combo]
        if layout.categories:
            # Categories have no order to interpolate along: points with error bars, side by
            # side, instead of a line and a band.
            ax.errorbar(
                xs + _dodge(layout, combo),
                means,
                yerr=[means - low, high - means],
                fmt=style.marker,
                markersize=4,
                capsize=3,
                color=style.color,
            )
        else:
            ax.plot(xs, means, marker=style.marker, markersize=3.5, **style.line)
            ax.fill_between(xs, low, high, color=style.color, alpha=BAND_ALPHA, linewidth=0)
        drawn.extend(means)
    if layout.categories:
        ax.set_xticks(range(len(layout.categories)), layout.categories)
    else:
        finite_x = sweep[layout.x_key][np.isfinite(sweep[layout.x_key])]
        if finite_x.size and finite_x.min() > 0 and finite_x.max() / finite_x.min() > 10:
            ax.set_xscale("log")
        elif 0 < np.unique(finite_x).size <= 8:
            # Few values on a linear axis: tick exactly the swept values (K = 2, 4; not 2.5).
            ax.set_xticks(np.unique(finite_x), [value_text(v) for v in np.unique(finite_x)])
    ax.set_xlabel(_two_lines(parameter_label(layout.x_key)))
    return drawn


def _dodge(layout: SweepLayout, combo: tuple) -> float:
    """Horizontal offset of a line's points at a categorical x, so lines do not overlap."""
    if not layout.categories:
        return 0.0
    combos = list(layout.styles)
    return 0.1 * (combos.index(combo) - (len(combos) - 1) / 2)


def _two_lines(label: str) -> str:
    """``"name (units)"`` on two lines, so labels fit side-by-side panels."""
    name, separator, rest = label.partition(" (")
    return f"{name}\n({rest}" if separator else label


def _log_if_wide(axes, means: list, metric: str) -> None:
    """Log y on these panels (one shared scale) when the metric allows it and spans > 30x."""
    if not metric_spec(metric).log or not means:
        return
    low, high = min(means), max(means)
    if low > 0 and high / low > 30:
        for ax in axes:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def _block_shape(layout: SweepLayout, n_metrics: int) -> tuple[int, int]:
    """Panel rows and columns of one swept parameter: metrics x facets, or a wrapped list."""
    if layout.too_many_facets:
        return 1, 1
    if len(layout.facets) == 1:
        return _grid_shape(n_metrics, max_cols=2)
    if n_metrics == 1:
        return _grid_shape(len(layout.facets))
    return n_metrics, len(layout.facets)


def _draw_block(
    target,
    data: ResultsData,
    layout: SweepLayout,
    metrics: list[str],
    *,
    best: dict | None = None,
    decorate: Callable | None = None,
) -> None:
    """The panels of ``metrics`` against one swept parameter into ``target`` (a (sub)figure),
    with one legend of the lines under them.

    ``best`` (``sweep_summary.json``'s best point) is ringed in the panels of the chosen metric
    that hold it; ``decorate(ax, facet_rows)`` adds to each panel (a reference curve).
    """
    sweep = data.sweep
    rows, cols = _block_shape(layout, len(metrics))
    if layout.too_many_facets:
        ax = target.subplots()
        names = ", ".join(parameter_short(k) for k in layout.facet_keys + layout.line_keys)
        _note(
            ax,
            f"{len(layout.facets)} panels of up to {MAX_LINES} lines would be needed"
            f" (over {names}):\ntoo many to draw honestly; see sweep_aggregate.csv",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(parameter_label(layout.x_key))
        ax.set_ylabel(", ".join(metric_spec(m).title for m in metrics))
        return
    faceted = len(layout.facets) > 1
    # Metrics x facets: a row per metric shares y, a column per facet shares x (labelled once).
    grid = faceted and len(metrics) > 1
    sharey = "row" if grid else faceted
    axes = target.subplots(
        rows, cols, squeeze=False, sharey=sharey, sharex="col" if grid else False
    )
    panels = []  # (ax, facet combo, facet rows, metric)
    for i, metric in enumerate(metrics):
        for j, (combo, facet_rows) in enumerate(layout.facets):
            if not faceted:
                ax = axes.ravel()[i]
            elif len(metrics) == 1:
                ax = axes.ravel()[j]
            else:
                ax = axes[i, j]
            panels.append((ax, combo, facet_rows, metric))
    ringed = False
    for metric in metrics:
        mine = [p for p in panels if p[3] == metric]
        means = []
        for ax, combo, facet_rows, _ in mine:
            drawn = sweep_panel(ax, sweep, layout, facet_rows, metric)
            if not drawn:
                _note(ax, "no data")
            means.extend(drawn)
            top = ax.get_subplotspec().rowspan.start == 0
            if faceted and (top or not grid):
                ax.set_title(_combo_label(combo), fontsize=8.5)
            if grid and ax.get_subplotspec().rowspan.stop < rows:
                ax.set_xlabel("")
            if decorate is not None:
                decorate(ax, facet_rows)
            if best is not None and metric == best["metric"]:
                ringed |= _ring_best(ax, layout, combo, best)
            ax.set_ylabel(_two_lines(metric_spec(metric).label))
            if faceted and ax.get_subplotspec().colspan.start > 0:
                ax.set_ylabel("")  # the row shares the y axis of its first panel
        _log_if_wide([p[0] for p in mine], means, metric)
    _hide_unused(axes, len(panels), xlabel=_two_lines(parameter_label(layout.x_key)))
    handles, labels = [], []
    if layout.line_keys:
        for combo, st in layout.styles.items():
            handles.append(Line2D([], [], marker=st.marker, markersize=4, **st.line))
            labels.append(_combo_label(combo))
    if ringed:
        handles.append(_best_proxy())
        labels.append(f"best point ({best['direction']} mean {metric_spec(best['metric']).title})")
    # Reference curves added by ``decorate`` are the same in every panel: listed once.
    extra_handles, extra_labels = panels[0][0].get_legend_handles_labels()
    handles += extra_handles
    labels += extra_labels
    if labels:
        ncol = legend_columns(labels, target.get_figure(root=True).get_figwidth())
        target.legend(handles, labels, loc="outside lower center", ncol=ncol)


def best_point(data: ResultsData) -> dict | None:
    """The sweep's best point from ``sweep_summary.json``: ``{values, mean, metric, direction}``
    with ``values`` key -> value for every column of :attr:`ResultsData.sweep_keys`."""
    summary = data.sweep_summary or {}
    chosen = data.sweep_metric
    best = summary.get("best")
    if chosen is None or not isinstance(best, dict):
        return None
    metric, minimize = chosen
    params = best.get("params") or {}
    values = {k: params.get(k) for k in data.sweep_params}
    values["variant"] = best.get("variant")
    stats = best.get(metric)
    mean = stats.get("mean") if isinstance(stats, dict) else None
    if not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return None
    direction = "lowest" if minimize else "highest"
    return {"values": values, "mean": float(mean), "metric": metric, "direction": direction}


def _ring_best(ax, layout: SweepLayout, facet: tuple, best: dict) -> bool:
    """Ring the best point if it lies in this panel; True when drawn."""
    values = best["values"]
    if not all(same_value(values.get(k), v) for k, v in facet):
        return False
    x = values.get(layout.x_key)
    if x is None:
        return False
    if layout.categories:
        if str(x) not in layout.categories:
            return False
        line = next(
            (c for c in layout.styles if all(same_value(values.get(k), v) for k, v in c)), None
        )
        x = layout.categories.index(str(x)) + (_dodge(layout, line) if line is not None else 0)
    scale = 100.0 if metric_spec(best["metric"]).percent else 1.0
    ax.scatter([float(x)], [best["mean"] * scale], **_BEST_RING)
    return True


_BEST_RING = {"s": 140, "facecolors": "none", "edgecolors": "black", "linewidths": 1.3, "zorder": 5}


def _best_proxy() -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="",
        marker="o",
        markersize=9,
        markerfacecolor="none",
        markeredgecolor="black",
        markeredgewidth=1.3,
    )


def _legend_height(layout: SweepLayout, width: float, extra: bool) -> float:
    """Inches of the legend under a block: one row per ``legend_columns`` entries."""
    labels = [_combo_label(combo) for combo in layout.styles] if layout.line_keys else []
    labels += ["best point (lowest mean specialization)"] * extra
    if not labels:
        return 0.0
    return 0.22 * math.ceil(len(labels) / legend_columns(labels, width))


def _sweep_figure(data: ResultsData, metrics: list[str], title: str, *, best=None) -> Figure:
    """One block of panels per swept parameter on x (subfigures, each with its legend)."""
    layouts = [sweep_layout(data, x_key) for x_key in _x_parameters(data)]
    shapes = [_block_shape(layout, len(metrics)) for layout in layouts]
    width = max(WIDTH, 2.4 * max(c for _, c in shapes))
    heights = [
        0.35 + 2.5 * rows + _legend_height(layout, width, best is not None)
        for (rows, _), layout in zip(shapes, layouts, strict=True)
    ]
    fig = new_figure(0.55 + sum(heights), width=width)
    subfigures = np.atleast_1d(fig.subfigures(len(layouts), 1, height_ratios=heights)).ravel()
    for target, layout in zip(subfigures, layouts, strict=True):
        _draw_block(target, data, layout, metrics, best=best)
    seeds = len(data.seeds) or 1
    _title(fig, data, f"{title}\nmean and 95% interval over {seeds} seed{'s' * (seeds > 1)}")
    return fig


def sweep_chosen_metric(data: ResultsData) -> Figure:
    """The sweep's chosen metric (``sweep_summary.json``) against each swept parameter; the best
    point is ringed. File name ``sweep_<metric>``."""
    sweep = _require_sweep(data)
    if data.sweep_metric is None:
        raise FigureSkipped("no sweep_summary.json naming the sweep's metric")
    metric, minimize = data.sweep_metric
    column = sweep.get(metric)
    if column is None or column.dtype == object or not np.isfinite(column).any():
        raise FigureSkipped(f"sweep.csv has no numeric {metric}")
    direction = "lowest" if minimize else "highest"
    title = f"{metric_spec(metric).title} by swept parameter ({direction} is best)"
    return _sweep_figure(data, [metric], title, best=best_point(data))


def _sweep_metric_stem(data: ResultsData) -> str:
    return f"sweep_{data.sweep_metric[0]}" if data.sweep_metric else "sweep_chosen_metric"


def _overview_metrics(data: ResultsData) -> tuple[list[str], list[tuple[str, float]]]:
    """Metrics of the overview (the chosen one first), and those left out because they are the
    same at every point (an all-zero panel says nothing), with their value."""
    chosen = [data.sweep_metric[0]] if data.sweep_metric else []
    drawn, constant = [], []
    for name in dict.fromkeys(chosen + list(SWEEP_OVERVIEW_METRICS)):
        column = data.sweep.get(name)
        if column is None or column.dtype == object:
            continue
        finite = column[np.isfinite(column)]
        if not finite.size:
            continue
        if finite.min() == finite.max():
            constant.append((name, float(finite[0])))
        else:
            drawn.append(name)
    return drawn, constant


def sweep_metrics(data: ResultsData) -> Figure:
    """Key metrics against each swept parameter: mean over seeds and 95% band."""
    _require_sweep(data)
    metrics, constant = _overview_metrics(data)
    if not metrics:
        raise FigureSkipped("sweep.csv has no summary metric that varies between points")
    fig = _sweep_figure(data, metrics, "key metrics by swept parameter")
    if constant:
        same = "; ".join(
            f"{metric_spec(m).label} = {value_text(v * (100 if metric_spec(m).percent else 1))}"
            for m, v in constant
        )
        fig.supxlabel(f"The same at every point, not drawn: {same}", fontsize=8, color=NEUTRAL)
    return fig


def drop_vs_capacity(data: ResultsData) -> Figure:
    """Drop rate against the capacity factor, from the sweep when it varies ``capacity.factor``,
    else from the variants; with the uniform-routing expectation when T, K and E are fixed."""
    key = "capacity.factor"
    if data.is_sweep and key in data.sweep_params and "drop_rate" in data.sweep:
        if data.sweep[key].dtype != object:
            return _drop_vs_capacity_sweep(data)
    return _drop_vs_capacity_variants(data)


def _uniform_curve(ax, factors, shape) -> None:
    """Dashed analytic drop rate of uniform routing over the range of ``factors``."""
    tokens, top_k, experts = shape
    grid = np.linspace(min(factors), max(factors), 60)
    expected = [100 * uniform_drop_rate(tokens, top_k, experts, f) for f in grid]
    ax.plot(grid, expected, color=NEUTRAL, linestyle="--", linewidth=1.0, label=_UNIFORM)


_UNIFORM = "uniform routing (analytic)"
_SHAPE_KEYS = ("tokens.tokens_per_step", "router.top_k", "router.experts")


def _drop_vs_capacity_sweep(data: ResultsData) -> Figure:
    key = "capacity.factor"
    sweep = data.sweep
    factors = np.unique(sweep[key][np.isfinite(sweep[key])])
    shape = tuple(data.scenario_value(k) for k in _SHAPE_KEYS)
    fixed = not any(k in data.sweep_params for k in _SHAPE_KEYS)
    analytic = fixed and all(isinstance(v, int) for v in shape) and factors.size > 0

    def decorate(ax, _rows):
        if analytic:
            _uniform_curve(ax, factors, shape)
        ax.set_ylim(bottom=0)

    layout = sweep_layout(data, key)
    fig = new_figure(3.7 + _legend_height(layout, WIDTH, analytic), width=WIDTH)
    _draw_block(fig, data, layout, ["drop_rate"], decorate=decorate)
    _title(fig, data, "drop rate versus capacity factor (mean and 95% interval over seeds)")
    return fig


def _drop_vs_capacity_variants(data: ResultsData) -> Figure:
    key = "capacity.factor"
    if not data.variants:
        raise FigureSkipped("neither a sweep nor variants vary capacity.factor")
    points = []  # (variant, factor, drop %)
    for summary in data.variants:
        name = str(summary["variant"])
        factor, drop = data.variant_value(name, key), _float(summary.get("drop_rate"))
        if isinstance(factor, (int, float)) and not isinstance(factor, bool) and np.isfinite(drop):
            points.append((name, float(factor), 100 * drop))
    if len({factor for _, factor, _ in points}) < 2:
        raise FigureSkipped("the variants do not differ in capacity.factor (and no sweep does)")
    # One line per combination of the variants' other settings (the score, a bias, ...).
    rest = {
        name: {k: v for k, v in data.variant_settings(name).items() if k != key}
        for name, _, _ in points
    }
    groups: dict[tuple, list] = {}
    for point in points:
        groups.setdefault(_settings_key(rest[point[0]]), []).append(point)
    settings = [rest[members[0][0]] for members in groups.values()]
    differing = sorted(
        {k for s in settings for k in s if len({repr(t.get(k)) for t in settings}) > 1}
    )
    fig = new_figure(3.9, width=WIDTH)
    ax = fig.subplots()
    styles = series_styles(settings)
    for members, setting, st in zip(groups.values(), settings, styles, strict=True):
        members.sort(key=lambda p: p[1])
        label = ", ".join(_short(k, setting.get(k)) for k in differing) or "variants"
        xs, ys = [p[1] for p in members], [p[2] for p in members]
        ax.plot(xs, ys, marker=st.marker, label=label, **st.line)
        for name, factor, drop in members:
            ax.annotate(
                name,
                (factor, drop),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color=st.color,
            )
    shapes = {tuple(data.variant_value(name, k) for k in _SHAPE_KEYS) for name, _, _ in points}
    if len(shapes) == 1 and all(isinstance(v, int) for v in next(iter(shapes))):
        _uniform_curve(ax, [p[1] for p in points], next(iter(shapes)))
    ax.set_xlabel(parameter_label(key))
    ax.set_ylabel(f"{metric_spec('drop_rate').label}, run average")
    ax.set_ylim(bottom=0)
    ax.margins(x=0.08)
    _legend_below(fig, ax, max_cols=3)
    _title(fig, data, "drop rate versus capacity factor (one point per variant)")
    return fig


def uniform_drop_rate(tokens: int, top_k: int, experts: int, capacity_factor: float) -> float:
    """Expected drop rate with iid uniform routing (model.md 1.3).

    An expert's demand is Binomial(T, K/E); drop rate = E[max(0, L - cap)] / (T K / E) with
    cap = ceil(T K / E * capacity_factor).
    """
    p = top_k / experts
    capacity = math.ceil(tokens * top_k / experts * capacity_factor)
    loads = np.arange(tokens + 1)
    log_pmf = (
        math.lgamma(tokens + 1)
        - np.array([math.lgamma(k + 1) + math.lgamma(tokens - k + 1) for k in loads])
        + loads * math.log(p)
        + (tokens - loads) * math.log1p(-p)
    )
    excess = np.maximum(0, loads - capacity)
    return float((np.exp(log_pmf) * excess).sum() / (tokens * p))


# ------------------------------------------------------------------------------ registry


class FigureSpec(NamedTuple):
    """A registered figure: its function, one-line caption and, when the file is not named
    after the registry entry, a function of the data giving the file name."""

    function: Callable[[ResultsData], Figure]
    caption: str
    stem: Callable[[ResultsData], str] | None = None


#: name -> FigureSpec. Order is the order of the report.
FIGURES: dict[str, FigureSpec] = {
    "load_heatmap": FigureSpec(
        load_heatmap,
        "Routed load of every expert (rows, most loaded at the top) over training; colour is "
        "load divided by the fair share T·K/E on a log scale, white = perfectly balanced.",
    ),
    "max_vio": FigureSpec(
        max_vio_over_steps,
        "MaxVio_batch (most loaded expert over the mean, minus 1) at each recorded step, log "
        "scale; the legend gives MaxVio_global over the final window, the dashed line the level "
        "that uniform random routing would show.",
    ),
    "bias": FigureSpec(
        bias_trajectories,
        "Loss-free balancing bias of each expert over training: median and 5-95% band across "
        "experts, with the three experts that end furthest from the median.",
    ),
    "lorenz": FigureSpec(
        lorenz_curves,
        "Lorenz curves of the final-window loads: the further below the diagonal, the more "
        "unequal; Gini 0 is perfect balance, 1 a single expert taking everything.",
    ),
    "drop_rate": FigureSpec(
        drop_rate_over_steps,
        "Share of token-to-expert assignments dropped at the capacity limit in each recorded "
        "window; the legend gives each variant's capacity and its run-average drop rate.",
    ),
    "sweep_chosen_metric": FigureSpec(
        sweep_chosen_metric,
        "The metric the sweep ranks points by, against each swept parameter: line = mean over "
        "seeds, band = 95% interval (Student's t); the ring marks the best point.",
        _sweep_metric_stem,
    ),
    "sweep_metrics": FigureSpec(
        sweep_metrics,
        "Key metrics against each swept parameter: line = mean over seeds, band = 95% interval "
        "(Student's t), one line per combination of the other parameters (panels split them "
        "beyond 7).",
    ),
    "drop_vs_capacity": FigureSpec(
        drop_vs_capacity,
        "Assignment drop rate against the capacity factor (a sweep: mean and 95% interval over "
        "seeds; a run: one point per variant); dashed: the analytic rate of uniform routing.",
    ),
    "tradeoff": FigureSpec(
        tradeoff,
        "The balance/quality trade-off: each point is a variant (or sweep point); left is "
        "balanced, up is more specialized experts (mutual information of cluster and expert) "
        "or a higher quality.",
    ),
}


def render_figures(
    data: ResultsData, only: Iterable[str] | None = None
) -> tuple[list[Plot], dict[str, str]]:
    """Draw the registered figures (or ``only`` these registry names).

    Returns
    -------
    plots : list[Plot]
        The figures drawn, in registry order, each named by its file name.
    skipped : dict[str, str]
        Registry name -> reason for each figure that could not be drawn from this folder.
    """
    names = list(FIGURES)
    if only:
        only = list(only)
        unknown = [name for name in only if name not in FIGURES]
        if unknown:
            raise ValueError(
                f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}"
            )
        names = [name for name in names if name in only]
    plots, skipped = [], {}
    with style():
        for name in names:
            spec = FIGURES[name]
            try:
                figure = spec.function(data)
            except FigureSkipped as reason:
                skipped[name] = str(reason)
                continue
            stem = spec.stem(data) if spec.stem else name
            plots.append(Plot(stem, figure, spec.caption))
    return plots, skipped


def figure_bytes(figure: Figure, fmt: str = "png") -> bytes:
    """The figure encoded as ``fmt`` (png at :data:`DPI`, svg or pdf)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    with style():
        metadata = {"Software": None} if fmt == "png" else {}
        if fmt == "svg":
            metadata = {"Date": None}
        elif fmt == "pdf":
            metadata = {"CreationDate": None, "ModDate": None}
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()


def write_figures(
    results_dir: Path,
    formats: Iterable[str] = ("png",),
    only: Iterable[str] | None = None,
    *,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Path]:
    """Draw the figures of a results folder into ``results_dir/figures/`` (atomic writes).

    Parameters
    ----------
    formats : iterable of {"png", "svg", "pdf"}
    only : iterable of str, optional
        Figure names from :data:`FIGURES`; all by default.
    on_skip : callable(name, reason), optional
        Told about each figure that cannot be drawn from this folder.

    Returns
    -------
    list[Path]
        The files written, figure by figure, format by format.
    """
    formats = list(dict.fromkeys(formats)) or ["png"]
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    data = load_results(results_dir)
    plots, skipped = render_figures(data, only)
    if on_skip is not None:
        for name, reason in skipped.items():
            on_skip(name, reason)
    target = data.path / "figures"
    target.mkdir(exist_ok=True)
    written = []
    for plot in plots:
        for fmt in formats:
            path = target / f"{plot.name}.{fmt}"
            write_atomic(path, figure_bytes(plot.figure, fmt))
            written.append(path)
    return written
