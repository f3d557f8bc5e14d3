"""Figures of a results folder (a run, a sweep, or both) for design reviews.

Every figure function takes a :class:`ResultsData` and returns a :class:`matplotlib.figure.Figure`
built directly (Agg, never pyplot's global state) under one style (:data:`STYLE`, applied with
``matplotlib.rc_context``) and the Okabe-Ito colour-blind-safe palette. A figure whose data is
absent raises :class:`FigureSkipped` with the reason; :func:`write_figures` records it and goes on.

The registry :data:`FIGURES` maps each figure's name to its function and its one-line caption.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure

from moesim.results import read_history, read_loads, read_summary, write_atomic
from moesim.statistics import mean_interval

#: Okabe & Ito (2008) colour-blind-safe palette, ordered for contrast on white (yellow last).
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)

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
    "axes.prop_cycle": cycler(color=OKABE_ITO),
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

#: Sweep columns that are neither swept parameters nor metrics.
SWEEP_BOOKKEEPING = {"seed", "point", "run", "replicate", "variant", "error", "status", "id"}

#: Sweep metrics drawn against each swept parameter: column, axis label, log-y allowed.
SWEEP_METRICS = (
    ("max_vio_global", "MaxVio_global (max/mean - 1)", True),
    ("final_max_vio_batch", "final MaxVio_batch (max/mean - 1)", True),
    ("starved", "starved experts (count)", False),
    ("specialization", "specialization (MI / H(cluster))", False),
    ("quality", "quality (mean reward)", False),
    ("drop_rate", "assignment drop rate (%)", False),
)


class FigureSkipped(Exception):
    """The figure cannot be drawn from this results folder; ``str(error)`` says why."""


class NotResultsError(ValueError):
    """The folder is not a moesim results folder (no summary.json and no sweep.csv)."""


@dataclass
class Plot:
    """A drawn figure with its registry name and one-line caption."""

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

    def variant_history(self, name: str) -> dict[str, np.ndarray]:
        """History columns of one variant (rows of the tidy table with ``variant == name``)."""
        if self.history is None:
            raise FigureSkipped("no history.csv in the results folder")
        mask = self.history["variant"] == name
        return {key: values[mask] for key, values in self.history.items() if key != "variant"}

    def scenario_value(self, key_path: str):
        """A value of the resolved scenario by key path (None when unknown)."""
        if not self.resolved_yaml:
            return None
        try:
            import yaml

            node = yaml.safe_load(self.resolved_yaml)
        except Exception:
            return None
        for key in key_path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


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


def format_number(value, digits: int = 3) -> str:
    """One number for tables and legends: '-' for missing, 3 decimals, scientific when tiny."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    value = float(value)
    if not math.isfinite(value):
        return "-"
    if value != 0 and abs(value) < 10 ** (-digits + 1) / 10:
        return f"{value:.{max(1, digits - 1)}e}"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


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
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), max_cols))


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _hide_unused(axes, used: int) -> None:
    for ax in list(np.ravel(axes))[used:]:
        ax.set_visible(False)


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
    _hide_unused(axes, len(panels))
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
    for summary in variants:
        history = data.variant_history(summary["variant"])
        if not len(history.get("step", [])):
            continue
        values = np.clip(history["max_vio_batch"], floor, None)
        label = (
            f"{summary['variant']} (MaxVio_global {format_number(summary.get('max_vio_global'))})"
        )
        ax.plot(history["step"], values, label=label, alpha=0.9)
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
        ax.plot(fraction, share, label=f"{summary['variant']} (Gini {format_number(gini)})")
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
        ax.plot(history["step"], rate, label=label, alpha=0.9)
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


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def tradeoff(data: ResultsData) -> Figure:
    """Specialization (and quality) against MaxVio_global: one point per variant or sweep point.

    A run: one colour and marker per variant. A sweep: colour = value of the first swept
    parameter, marker = value of the second (means over seeds).
    """
    points, colour_title, marker_title = _tradeoff_points(data)
    has_quality = any(np.isfinite(p["quality"]) for p in points)
    has_spec = any(np.isfinite(p["specialization"]) for p in points)
    if not has_spec and not has_quality:
        raise FigureSkipped("no specialization or quality metric (a single token cluster?)")
    panels = [
        (key, label)
        for key, label, present in (
            ("specialization", "specialization (MI / H(cluster))", has_spec),
            ("quality", "quality (mean reward of chosen experts)", has_quality),
        )
        if present
    ]
    fig = new_figure(4.0, width=WIDTH if len(panels) > 1 else 5.5)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    colour_keys = list(dict.fromkeys(p["colour"] for p in points))
    marker_keys = list(dict.fromkeys(p["marker"] for p in points))
    xs = np.array([p["max_vio_global"] for p in points])
    log_x = xs.min() > 0 and xs.max() / xs.min() > 10
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for p in points:
            if not np.isfinite(p[key]):
                continue
            ax.scatter(
                max(p["max_vio_global"], 1e-4),
                p[key],
                s=42,
                color=OKABE_ITO[colour_keys.index(p["colour"]) % len(OKABE_ITO)],
                marker=MARKERS[marker_keys.index(p["marker"]) % len(MARKERS)],
                edgecolor="white",
                linewidth=0.6,
                zorder=3,
            )
        ax.axvline(0.1, color=NEUTRAL, linestyle=":", linewidth=1.0)
        ax.text(
            0.1,
            1.0,
            " balanced < 0.1",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color=NEUTRAL,
            va="top",
        )
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.margins(x=0.12, y=0.12)
        ax.set_xlabel("MaxVio_global (max/mean - 1; left is balanced)")
        ax.set_ylabel(ylabel)
    handles, labels = _tradeoff_legend(colour_keys, marker_keys, colour_title, marker_title)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
    _title(fig, data, "balance versus specialization trade-off")
    return fig


def _tradeoff_legend(colour_keys, marker_keys, colour_title, marker_title):
    from matplotlib.lines import Line2D

    def proxy(colour, marker):
        return Line2D(
            [], [], linestyle="", marker=marker, markersize=6, color=colour, markeredgecolor="white"
        )

    if marker_title is None and colour_title is None:  # a run: colour and marker per variant
        return (
            [
                proxy(OKABE_ITO[i % len(OKABE_ITO)], MARKERS[i % len(MARKERS)])
                for i in range(len(colour_keys))
            ],
            list(colour_keys),
        )
    handles = [proxy(OKABE_ITO[i % len(OKABE_ITO)], "o") for i in range(len(colour_keys))]
    labels = [_short(colour_title, k) for k in colour_keys]
    if marker_title is not None:
        handles += [proxy(NEUTRAL, MARKERS[i % len(MARKERS)]) for i in range(len(marker_keys))]
        labels += [_short(marker_title, k) for k in marker_keys]
    return handles, labels


def _tradeoff_points(data: ResultsData) -> tuple[list[dict], str | None, str | None]:
    """Points ``{max_vio_global, specialization, quality, colour, marker}`` and legend titles."""
    nan = float("nan")
    if data.is_sweep:
        sweep = data.sweep
        keys = [c for c in (*data.sweep_params, "variant") if c in sweep]
        colour_title = keys[0] if keys else None
        marker_title = keys[1] if len(keys) > 1 else None
        points = []
        for combo, rows in _group_rows(sweep, keys):
            values = dict(combo)
            entry = {
                "colour": values.get(colour_title, ""),
                "marker": values.get(marker_title, ""),
            }
            for metric in ("max_vio_global", "specialization", "quality"):
                column = sweep.get(metric)
                if column is None or column.dtype == object:
                    entry[metric] = nan
                    continue
                finite = column[rows][np.isfinite(column[rows])]
                entry[metric] = float(finite.mean()) if finite.size else nan
            points.append(entry)
        points = [p for p in points if np.isfinite(p["max_vio_global"])]
        if not points:
            raise FigureSkipped("sweep.csv has no finite MaxVio_global")
        return points, colour_title, marker_title
    points = [
        {
            "colour": summary["variant"],
            "marker": summary["variant"],
            "max_vio_global": _float(summary.get("max_vio_global")),
            "specialization": _float(summary.get("specialization")),
            "quality": _float(summary.get("quality")),
        }
        for summary in _require_run(data)
    ]
    points = [p for p in points if np.isfinite(p["max_vio_global"])]
    if not points:
        raise FigureSkipped("no variant has a finite MaxVio_global")
    return points, None, None


def _float(value) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _short(key: str, value) -> str:
    name = key.rsplit(".", 1)[-1]
    return f"{name}={_value_text(value)}"


def _value_text(value) -> str:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:g}"
    return str(value)


def _group_rows(columns: dict, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """Rows grouped by the values of ``keys``: ``[(((key, value), ...), row indices)]``, sorted."""
    n = len(next(iter(columns.values()))) if columns else 0
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        combo = tuple((k, _hashable(columns[k][i])) for k in keys)
        groups.setdefault(combo, []).append(i)
    return sorted(((c, np.asarray(r)) for c, r in groups.items()), key=lambda g: _sort_key(g[0]))


def _hashable(value):
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value


def _sort_key(combo: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, float) else (1, 0.0, str(v)) for _, v in combo)


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


def sweep_panel(ax, sweep: dict, x_key: str, metric: str, other_keys: list[str], log_y: bool):
    """Mean line and 95% band of ``metric`` versus ``x_key``, one line per other-key combination."""
    scale = 100.0 if metric == "drop_rate" else 1.0
    x_column = sweep[x_key]
    categorical = x_column.dtype == object
    categories = sorted({str(v) for v in x_column}) if categorical else []
    groups = _group_rows(sweep, other_keys) if other_keys else [((), np.arange(len(x_column)))]
    pooled = len(groups) > 7
    if pooled:
        groups = [((), np.arange(len(x_column)))]
    all_y = []
    for colour_index, (combo, rows) in enumerate(groups):
        by_x = _group_rows({"x": x_column[rows]}, ["x"])
        xs, means, halves = [], [], []
        for ((_, x_value),), sub in by_x:
            mean, half, _ = interval(sweep[metric][rows][sub] * scale)
            if not math.isfinite(mean):
                continue
            xs.append(categories.index(str(x_value)) if categorical else float(x_value))
            means.append(mean)
            halves.append(half)
        if not xs:
            continue
        xs, means, halves = np.array(xs), np.array(means), np.array(halves)
        colour = OKABE_ITO[colour_index % len(OKABE_ITO)]
        label = ", ".join(_short(k, v) for k, v in combo) if combo else None
        if pooled:
            label = "mean over the other parameters"
        ax.plot(xs, means, marker="o", markersize=3.5, color=colour, label=label)
        low, high = means - halves, means + halves
        if log_y:
            low = np.maximum(low, means * 0.05)
        ax.fill_between(xs, low, high, color=colour, alpha=BAND_ALPHA, linewidth=0)
        all_y.extend(means[np.isfinite(means)])
    if categorical:
        ax.set_xticks(range(len(categories)), categories)
    else:
        finite_x = x_column[np.isfinite(x_column)]
        if finite_x.size and finite_x.min() > 0 and finite_x.max() / finite_x.min() > 10:
            ax.set_xscale("log")
    if log_y and all_y and min(all_y) > 0 and max(all_y) / min(all_y) > 30:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    return bool(all_y)


def _sweep_metrics_present(sweep: dict) -> list[tuple[str, str, bool]]:
    chosen = []
    for metric, label, log_y in SWEEP_METRICS:
        column = sweep.get(metric)
        if column is None or column.dtype == object or not np.isfinite(column).any():
            continue
        if metric == "drop_rate" and not np.nanmax(column) > 0:
            continue
        chosen.append((metric, label, log_y))
    return chosen[:4]


def sweep_metrics(data: ResultsData) -> Figure:
    """Each chosen metric versus each swept parameter: mean over seeds and 95% band."""
    sweep = _require_sweep(data)
    metrics = _sweep_metrics_present(sweep)
    if not metrics:
        raise FigureSkipped("sweep.csv has none of the summary metrics")
    x_params = [p for p in data.sweep_params if sweep[p].dtype != object] or data.sweep_params
    rows, cols = len(x_params), len(metrics)
    fig = new_figure(1.0 + 2.4 * rows, width=max(WIDTH, 2.6 * cols))
    axes = fig.subplots(rows, cols, squeeze=False)
    extra = ["variant"] if "variant" in sweep else []
    for r, x_key in enumerate(x_params):
        others = [p for p in data.sweep_params if p != x_key] + extra
        for c, (metric, label, log_y) in enumerate(metrics):
            ax = axes[r, c]
            if not sweep_panel(ax, sweep, x_key, metric, others, log_y):
                _note(ax, "no data")
            ax.set_xlabel(x_key)
            ax.set_ylabel(label)
        handles, labels = axes[r, 0].get_legend_handles_labels()
        if labels:
            axes[r, -1].legend(
                handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7
            )
    seeds = len(set(sweep["seed"].tolist())) if "seed" in sweep else 1
    _title(fig, data, f"parameter sweep, mean and 95% interval over {seeds} seed(s)")
    return fig


def drop_vs_capacity(data: ResultsData) -> Figure:
    """Drop rate against the swept capacity factor, with the uniform-routing expectation."""
    sweep = _require_sweep(data)
    key = "capacity.factor"
    if key not in sweep or sweep[key].dtype == object or "drop_rate" not in sweep:
        raise FigureSkipped("the sweep does not vary capacity.factor")
    fig = new_figure(3.6, width=WIDTH)
    ax = fig.subplots()
    others = [p for p in data.sweep_params if p != key] + (
        ["variant"] if "variant" in sweep else []
    )
    sweep_panel(ax, sweep, key, "drop_rate", others, log_y=False)
    factors = np.unique(sweep[key][np.isfinite(sweep[key])])
    tokens = data.scenario_value("tokens.tokens_per_step")
    top_k = data.scenario_value("router.top_k")
    experts = data.scenario_value("router.experts")
    fixed = not any(
        p in data.sweep_params for p in ("tokens.tokens_per_step", "router.top_k", "router.experts")
    )
    if fixed and all(isinstance(v, int) for v in (tokens, top_k, experts)) and factors.size:
        grid = np.linspace(factors.min(), factors.max(), 60)
        expected = [100 * uniform_drop_rate(tokens, top_k, experts, f) for f in grid]
        ax.plot(
            grid,
            expected,
            color=NEUTRAL,
            linestyle="--",
            linewidth=1.0,
            label="uniform routing (analytic)",
        )
    ax.set_xlabel("capacity factor (x fair share)")
    ax.set_ylabel("assignments dropped (%)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    _title(fig, data, "drop rate versus capacity factor")
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

#: name -> (function, one-line caption). Order is the order of the report.
FIGURES: dict[str, tuple[Callable[[ResultsData], Figure], str]] = {
    "load_heatmap": (
        load_heatmap,
        "Routed load of every expert (rows, most loaded at the top) over training; colour is "
        "load divided by the fair share T·K/E on a log scale, white = perfectly balanced.",
    ),
    "max_vio": (
        max_vio_over_steps,
        "MaxVio_batch (most loaded expert over the mean, minus 1) at each recorded step, log "
        "scale; the legend gives MaxVio_global over the final window, the dashed line the level "
        "that uniform random routing would show.",
    ),
    "bias": (
        bias_trajectories,
        "Loss-free balancing bias of each expert over training: median and 5-95% band across "
        "experts, with the three experts that end furthest from the median.",
    ),
    "lorenz": (
        lorenz_curves,
        "Lorenz curves of the final-window loads: the further below the diagonal, the more "
        "unequal; Gini 0 is perfect balance, 1 a single expert taking everything.",
    ),
    "drop_rate": (
        drop_rate_over_steps,
        "Share of token-to-expert assignments dropped at the capacity limit in each recorded "
        "window; the legend gives each variant's capacity and its run-average drop rate.",
    ),
    "drop_vs_capacity": (
        drop_vs_capacity,
        "Assignment drop rate against the swept capacity factor, mean and 95% interval over "
        "seeds; dashed: the analytic drop rate of uniform random routing.",
    ),
    "tradeoff": (
        tradeoff,
        "The balance/quality trade-off: each point is a variant (or sweep point); left is "
        "balanced, up is more specialized experts (mutual information of cluster and expert).",
    ),
    "sweep_metrics": (
        sweep_metrics,
        "Key metrics against each swept parameter: line = mean over seeds, band = 95% interval "
        "(mean ± t·std/√n, Student's t), one line per value of the other swept parameters.",
    ),
}


def render_figures(
    data: ResultsData, only: Iterable[str] | None = None
) -> tuple[list[Plot], dict[str, str]]:
    """Draw the registered figures (or ``only`` these names).

    Returns
    -------
    plots : list[Plot]
        The figures drawn, in registry order.
    skipped : dict[str, str]
        Name -> reason for each figure that could not be drawn from this folder.
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
            function, caption = FIGURES[name]
            try:
                figure = function(data)
            except FigureSkipped as reason:
                skipped[name] = str(reason)
                continue
            plots.append(Plot(name, figure, caption))
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
