"""The balance/quality trade-off: specialization and quality against MaxVio_global, one point per
variant of a run or per point of a sweep (mean over seeds)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from moesim.figures.run import require_run
from moesim.figures.style import (
    MARKERS,
    NEUTRAL,
    SCORE_KEY,
    SCORE_STYLES,
    WIDTH,
    FigureSkipped,
    as_float,
    legend_columns,
    marker_proxy,
    new_figure,
    plain_ticks,
    set_title,
    short_label,
    two_lines,
    value_colours,
    variant_styles,
)
from moesim.results import ResultsData, group_rows
from moesim.results.metrics import metric_spec, parameter_short
from moesim.statistics import mean_interval

#: What a point shows: x, then the metrics of the panels (a panel for each the data has).
POINT_METRICS = ("max_vio_global", "specialization", "quality")


def tradeoff(data: ResultsData) -> Figure:
    """Specialization and quality against MaxVio_global: one point per variant or sweep point.

    A run: each variant in its style (:func:`~moesim.figures.style.variant_styles`). A sweep:
    means over seeds; colour is one swept parameter, the marker another (the score function when
    it is swept).
    """
    points, handles, labels, legend_title = (
        _sweep_points(data) if data.is_sweep else _variant_points(data)
    )
    panels = [
        (key, metric_spec(key).label)
        for key in POINT_METRICS[1:]
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
        _scatter(ax, points, key)
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
            plain_ticks(ax.xaxis)
        ax.margins(x=0.12, y=0.12)
        ax.set_xlabel(f"{metric_spec('max_vio_global').label}\nleft is balanced")
        ax.set_ylabel(two_lines(ylabel))
    ncol = legend_columns(labels, fig.get_figwidth())
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=legend_title)
    what = " and ".join(key for key, _ in panels)
    set_title(fig, data, f"balance versus {what}")
    return fig


def _scatter(ax, points: list[dict], key: str) -> None:
    """The points with a finite ``key`` (MaxVio_global floored at 1e-4 for a log axis)."""
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


def _variant_points(data: ResultsData):
    """A run's points (one per variant, in its style), legend handles and labels, no title."""
    styles = variant_styles(data)
    points = [
        {
            **{metric: as_float(summary.get(metric)) for metric in POINT_METRICS},
            "color": styles[summary["variant"]].color,
            "marker": styles[summary["variant"]].marker,
        }
        for summary in require_run(data)
    ]
    points = [p for p in points if np.isfinite(p["max_vio_global"])]
    if not points:
        raise FigureSkipped("no variant has a finite MaxVio_global")
    handles = [marker_proxy(s.color, s.marker) for s in styles.values()]
    return points, handles, list(styles), None


def _sweep_points(data: ResultsData):
    """A sweep's points (means over seeds), legend handles and labels, and a legend title
    naming what points of the same look still differ in."""
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
    colours = dict(zip(colour_values, value_colours(len(colour_values)), strict=True))
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
        for metric in POINT_METRICS:
            column = sweep.get(metric)
            numeric = column is not None and column.dtype != object
            entry[metric] = mean_interval(column[rows])[0] if numeric else float("nan")
        points.append(entry)
    points = [p for p in points if np.isfinite(p["max_vio_global"])]
    if not points:
        raise FigureSkipped("sweep.csv has no finite MaxVio_global")
    handles = [marker_proxy(colours[v], "o") for v in colour_values]
    labels = [short_label(colour_key, v) for v in colour_values]
    handles += [marker_proxy(NEUTRAL, markers[v]) for v in marker_values]
    labels += [short_label(marker_key, v) for v in marker_values]
    legend_title = "means over seeds"
    if extra:
        legend_title += "; points alike also differ in " + ", ".join(
            parameter_short(k) for k in extra
        )
    return points, handles, labels, legend_title
