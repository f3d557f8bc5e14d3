"""Figures of a sweep: a metric against each swept parameter, mean over seeds with its 95%
interval, one line per combination of the other parameters and one panel per further split.

Lines are never pooled: :func:`sweep_layout` splits the other swept parameters (and the variant)
into lines (at most :data:`MAX_LINES` per panel) and facets (panels), and :func:`draw_block`
draws the panels of some metrics against one parameter, ringing the sweep's best point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from moesim.figures.style import (
    BAND_ALPHA,
    NEUTRAL,
    OKABE_ITO,
    WIDTH,
    FigureSkipped,
    SeriesStyle,
    combo_label,
    grid_shape,
    hide_unused,
    legend_columns,
    new_figure,
    note,
    plain_ticks,
    series_styles,
    set_title,
    two_lines,
)
from moesim.results import ResultsData, group_rows, same_value
from moesim.results.metrics import (
    format_value,
    metric_spec,
    parameter_label,
    parameter_short,
    sort_key,
)
from moesim.statistics import mean_interval

#: Lines per sweep panel: one per colour. More combinations are split into panels (facets).
MAX_LINES = len(OKABE_ITO)
#: Panels per swept parameter; a grid that needs more is named in a note instead of drawn.
MAX_FACETS = 6
#: Metrics of the sweep overview figure, in panel order (the chosen metric comes first).
SWEEP_OVERVIEW_METRICS = (
    "max_vio_global",
    "final_max_vio_batch",
    "starved",
    "drop_rate",
    "specialization",
    "quality",
)


def require_sweep(data: ResultsData) -> dict:
    """The sweep's columns, or :class:`FigureSkipped` without a sweep or swept parameters."""
    if not data.is_sweep:
        raise FigureSkipped("no sweep results (sweep.csv) in this folder")
    if not data.sweep_params:
        raise FigureSkipped("sweep.csv names no swept parameter")
    return data.sweep


def x_parameters(data: ResultsData) -> list[str]:
    """Swept parameters drawn on x: the numeric ones (all of them when none is numeric)."""
    present = [p for p in data.sweep_params if p in data.sweep]
    return [p for p in present if data.sweep[p].dtype != object] or present


# ----------------------------------------------------------------------------- layout, panels


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
    categories = []
    if sweep[x_key].dtype == object:
        categories = sorted({str(v) for v in sweep[x_key]}, key=sort_key)
    return SweepLayout(x_key, facet_keys, facets, line_keys, styles, categories)


def sweep_panel(ax, sweep: dict, layout: SweepLayout, rows: np.ndarray, metric: str) -> list:
    """Mean line and 95% band of ``metric`` against ``layout.x_key`` over ``rows``, one line per
    line combination; bands are clipped to the metric's range. Returns the means drawn."""
    sub = {key: column[rows] for key, column in sweep.items()}
    groups = group_rows(sub, layout.line_keys) if layout.line_keys else [((), np.arange(len(rows)))]
    drawn = []
    for combo, indices in groups:
        line = _line_points(sub, layout, indices, metric)
        if line is None:
            continue
        xs, means, low, high = line
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
    _x_axis(ax, sweep, layout)
    return drawn


def _line_points(sub: dict, layout: SweepLayout, indices: np.ndarray, metric: str):
    """``(x, mean, low, high)`` arrays of one line (shown units, band clipped to the metric's
    range), or None when no x value has a finite mean."""
    spec = metric_spec(metric)
    xs, means, halves = [], [], []
    for ((_, x_value),), inner in group_rows({"x": sub[layout.x_key][indices]}, ["x"]):
        if x_value is None:
            continue  # a null parameter value has no place on the x axis
        mean, half, _ = mean_interval(sub[metric][indices][inner] * spec.scale)
        if not math.isfinite(mean):
            continue
        xs.append(layout.categories.index(str(x_value)) if layout.categories else x_value)
        means.append(mean)
        halves.append(half)
    if not xs:
        return None
    xs, means, halves = np.array(xs, dtype=float), np.array(means), np.array(halves)
    low, high = means - halves, means + halves
    if spec.low is not None:
        low = np.maximum(low, spec.low * spec.scale)
    if spec.high is not None:
        high = np.minimum(high, spec.high * spec.scale)
    return xs, means, low, high


def _x_axis(ax, sweep: dict, layout: SweepLayout) -> None:
    """Ticks, scale and label of the swept parameter on x."""
    if layout.categories:
        ax.set_xticks(range(len(layout.categories)), layout.categories)
    else:
        finite_x = sweep[layout.x_key][np.isfinite(sweep[layout.x_key])]
        if finite_x.size and finite_x.min() > 0 and finite_x.max() / finite_x.min() > 10:
            ax.set_xscale("log")
        elif 0 < np.unique(finite_x).size <= 8:
            # Few values on a linear axis: tick exactly the swept values (K = 2, 4; not 2.5).
            ax.set_xticks(np.unique(finite_x), [format_value(v) for v in np.unique(finite_x)])
    ax.set_xlabel(two_lines(parameter_label(layout.x_key)))


def _dodge(layout: SweepLayout, combo: tuple) -> float:
    """Horizontal offset of a line's points at a categorical x, so lines do not overlap."""
    if not layout.categories:
        return 0.0
    combos = list(layout.styles)
    return 0.1 * (combos.index(combo) - (len(combos) - 1) / 2)


def _log_if_wide(axes, means: list, metric: str) -> None:
    """Log y on these panels (one shared scale) when the metric allows it and spans > 30x."""
    if not metric_spec(metric).log or not means:
        return
    low, high = min(means), max(means)
    if low > 0 and high / low > 30:
        for ax in axes:
            ax.set_yscale("log")
            plain_ticks(ax.yaxis)


# --------------------------------------------------------------------------- a block of panels


def block_shape(layout: SweepLayout, n_metrics: int) -> tuple[int, int]:
    """Panel rows and columns of one swept parameter: metrics x facets, or a wrapped list."""
    if layout.too_many_facets:
        return 1, 1
    if len(layout.facets) == 1:
        return grid_shape(n_metrics, max_cols=2)
    if n_metrics == 1:
        return grid_shape(len(layout.facets))
    return n_metrics, len(layout.facets)


def draw_block(
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

    ``best`` (:meth:`ResultsData.best_point`) is ringed in the panels of the chosen metric that
    hold it; ``decorate(ax, facet_rows)`` adds to each panel (a reference curve).
    """
    if layout.too_many_facets:
        _too_many_panels(target, layout, metrics)
        return
    rows, _ = block_shape(layout, len(metrics))
    axes, panels = _block_axes(target, layout, metrics)
    faceted = len(layout.facets) > 1
    grid = faceted and len(metrics) > 1
    ringed = False
    for metric in metrics:
        mine = [p for p in panels if p[3] == metric]
        means = []
        for ax, combo, facet_rows, _ in mine:
            drawn = sweep_panel(ax, data.sweep, layout, facet_rows, metric)
            if not drawn:
                note(ax, "no data")
            means.extend(drawn)
            top = ax.get_subplotspec().rowspan.start == 0
            if faceted and (top or not grid):
                ax.set_title(combo_label(combo), fontsize=8.5)
            if grid and ax.get_subplotspec().rowspan.stop < rows:
                ax.set_xlabel("")
            if decorate is not None:
                decorate(ax, facet_rows)
            if best is not None and metric == best["metric"]:
                ringed |= _ring_best(ax, layout, combo, best)
            ax.set_ylabel(two_lines(metric_spec(metric).label))
            if faceted and ax.get_subplotspec().colspan.start > 0:
                ax.set_ylabel("")  # the row shares the y axis of its first panel
        _log_if_wide([p[0] for p in mine], means, metric)
    hide_unused(axes, len(panels), xlabel=two_lines(parameter_label(layout.x_key)))
    _block_legend(target, layout, panels[0][0], best if ringed else None)


def _too_many_panels(target, layout: SweepLayout, metrics: list[str]) -> None:
    """A note in place of a grid too large to draw honestly."""
    ax = target.subplots()
    names = ", ".join(parameter_short(k) for k in layout.facet_keys + layout.line_keys)
    note(
        ax,
        f"{len(layout.facets)} panels of up to {MAX_LINES} lines would be needed"
        f" (over {names}):\ntoo many to draw honestly; see sweep_aggregate.csv",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(parameter_label(layout.x_key))
    ax.set_ylabel(", ".join(metric_spec(m).title for m in metrics))


def _block_axes(target, layout: SweepLayout, metrics: list[str]):
    """The block's axes grid and its panels ``(ax, facet combination, facet rows, metric)``.

    Metrics x facets: a row per metric shares y, a column per facet shares x (labelled once);
    a single metric or a single facet wraps its panels over a grid.
    """
    rows, cols = block_shape(layout, len(metrics))
    faceted = len(layout.facets) > 1
    grid = faceted and len(metrics) > 1
    sharey = "row" if grid else faceted
    axes = target.subplots(
        rows, cols, squeeze=False, sharey=sharey, sharex="col" if grid else False
    )
    panels = []
    for i, metric in enumerate(metrics):
        for j, (combo, facet_rows) in enumerate(layout.facets):
            if not faceted:
                ax = axes.ravel()[i]
            elif len(metrics) == 1:
                ax = axes.ravel()[j]
            else:
                ax = axes[i, j]
            panels.append((ax, combo, facet_rows, metric))
    return axes, panels


def _block_legend(target, layout: SweepLayout, first_ax, ringed_best: dict | None) -> None:
    """One legend under the block: its lines, the best-point ring when drawn, and the reference
    curves of the first panel (the same in every panel, so listed once)."""
    handles, labels = [], []
    if layout.line_keys:
        for combo, st in layout.styles.items():
            handles.append(Line2D([], [], marker=st.marker, markersize=4, **st.line))
            labels.append(combo_label(combo))
    if ringed_best is not None:
        handles.append(_best_proxy())
        direction, title = ringed_best["direction"], metric_spec(ringed_best["metric"]).title
        labels.append(f"best point ({direction} mean {title})")
    extra_handles, extra_labels = first_ax.get_legend_handles_labels()
    handles += extra_handles
    labels += extra_labels
    if labels:
        ncol = legend_columns(labels, target.get_figure(root=True).get_figwidth())
        target.legend(handles, labels, loc="outside lower center", ncol=ncol)


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
    y = best["mean"] * metric_spec(best["metric"]).scale
    ax.scatter([float(x)], [y], **_BEST_RING)
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


def legend_height(layout: SweepLayout, width: float, extra: bool) -> float:
    """Inches of the legend under a block: one row per ``legend_columns`` entries."""
    labels = [combo_label(combo) for combo in layout.styles] if layout.line_keys else []
    labels += ["best point (lowest mean specialization)"] * extra
    if not labels:
        return 0.0
    return 0.22 * math.ceil(len(labels) / legend_columns(labels, width))


# ---------------------------------------------------------------------------- sweep figures


def _sweep_figure(data: ResultsData, metrics: list[str], title: str, *, best=None) -> Figure:
    """One block of panels per swept parameter on x (subfigures, each with its legend)."""
    layouts = [sweep_layout(data, x_key) for x_key in x_parameters(data)]
    shapes = [block_shape(layout, len(metrics)) for layout in layouts]
    width = max(WIDTH, 2.4 * max(c for _, c in shapes))
    heights = [
        0.35 + 2.5 * rows + legend_height(layout, width, best is not None)
        for (rows, _), layout in zip(shapes, layouts, strict=True)
    ]
    fig = new_figure(0.55 + sum(heights), width=width)
    subfigures = np.atleast_1d(fig.subfigures(len(layouts), 1, height_ratios=heights)).ravel()
    for target, layout in zip(subfigures, layouts, strict=True):
        draw_block(target, data, layout, metrics, best=best)
    seeds = len(data.seeds) or 1
    set_title(fig, data, f"{title}\nmean and 95% interval over {seeds} seed{'s' * (seeds > 1)}")
    return fig


def sweep_chosen_metric(data: ResultsData) -> Figure:
    """The sweep's chosen metric (``sweep_summary.json``) against each swept parameter; the best
    point is ringed. File name ``sweep_<metric>``."""
    sweep = require_sweep(data)
    if data.sweep_metric is None:
        raise FigureSkipped("no sweep_summary.json naming the sweep's metric")
    metric, minimize = data.sweep_metric
    column = sweep.get(metric)
    if column is None or column.dtype == object or not np.isfinite(column).any():
        raise FigureSkipped(f"sweep.csv has no numeric {metric}")
    direction = "lowest" if minimize else "highest"
    title = f"{metric_spec(metric).title} by swept parameter ({direction} is best)"
    return _sweep_figure(data, [metric], title, best=data.best_point())


def sweep_metric_stem(data: ResultsData) -> str:
    """File name of :func:`sweep_chosen_metric`: ``sweep_<metric>``."""
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
    require_sweep(data)
    metrics, constant = _overview_metrics(data)
    if not metrics:
        raise FigureSkipped("sweep.csv has no summary metric that varies between points")
    fig = _sweep_figure(data, metrics, "key metrics by swept parameter")
    if constant:
        same = "; ".join(
            f"{metric_spec(m).label} = {format_value(v * metric_spec(m).scale)}"
            for m, v in constant
        )
        fig.supxlabel(f"The same at every point, not drawn: {same}", fontsize=8, color=NEUTRAL)
    return fig
