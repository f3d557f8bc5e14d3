"""Drop rate against the capacity factor, from a sweep of ``capacity.factor`` or from variants
that differ in it, beside the analytic drop rate of uniform random routing (docs/model.md §3)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from moesim.figures.style import (
    NEUTRAL,
    WIDTH,
    FigureSkipped,
    as_float,
    legend_below,
    new_figure,
    series_styles,
    set_title,
    settings_key,
    short_label,
    styled_settings,
)
from moesim.figures.sweep import draw_block, legend_height, sweep_layout
from moesim.results import ResultsData
from moesim.results.metrics import metric_spec, parameter_label

CAPACITY_KEY = "capacity.factor"
#: Legend label of the analytic curve.
UNIFORM_LABEL = "uniform routing (analytic)"
#: Scenario keys that fix the analytic curve: T, K and E.
SHAPE_KEYS = ("tokens.tokens_per_step", "router.top_k", "router.experts")


def uniform_drop_rate(tokens: int, top_k: int, experts: int, capacity_factor: float) -> float:
    """Expected drop rate with iid uniform routing (docs/model.md §3).

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


def drop_vs_capacity(data: ResultsData) -> Figure:
    """Drop rate against the capacity factor, from the sweep when it varies ``capacity.factor``,
    else from the variants; with the uniform-routing expectation when T, K and E are fixed."""
    if data.is_sweep and CAPACITY_KEY in data.sweep_params and "drop_rate" in data.sweep:
        if data.sweep[CAPACITY_KEY].dtype != object:
            return _from_sweep(data)
    return _from_variants(data)


def _uniform_curve(ax, factors, shape) -> None:
    """Dashed analytic drop rate of uniform routing over the range of ``factors``."""
    tokens, top_k, experts = shape
    grid = np.linspace(min(factors), max(factors), 60)
    expected = [100 * uniform_drop_rate(tokens, top_k, experts, f) for f in grid]
    ax.plot(grid, expected, color=NEUTRAL, linestyle="--", linewidth=1.0, label=UNIFORM_LABEL)


def _from_sweep(data: ResultsData) -> Figure:
    sweep = data.sweep
    factors = np.unique(sweep[CAPACITY_KEY][np.isfinite(sweep[CAPACITY_KEY])])
    shape = tuple(data.scenario_value(k) for k in SHAPE_KEYS)
    fixed = not any(k in data.sweep_params for k in SHAPE_KEYS)
    analytic = fixed and all(isinstance(v, int) for v in shape) and factors.size > 0

    def decorate(ax, _rows):
        if analytic:
            _uniform_curve(ax, factors, shape)
        ax.set_ylim(bottom=0)

    layout = sweep_layout(data, CAPACITY_KEY)
    fig = new_figure(3.7 + legend_height(layout, WIDTH, analytic), width=WIDTH)
    draw_block(fig, data, layout, ["drop_rate"], decorate=decorate)
    set_title(fig, data, "drop rate versus capacity factor (mean and 95% interval over seeds)")
    return fig


def _variant_drops(data: ResultsData) -> list[tuple[str, float, float]]:
    """``(variant, capacity factor, drop rate in %)`` of every variant with a numeric factor and
    a finite drop rate; :class:`FigureSkipped` unless there are two factors at least."""
    if not data.variants:
        raise FigureSkipped("neither a sweep nor variants vary capacity.factor")
    points = []
    for summary in data.variants:
        name = str(summary["variant"])
        factor, drop = data.variant_value(name, CAPACITY_KEY), as_float(summary.get("drop_rate"))
        if isinstance(factor, (int, float)) and not isinstance(factor, bool) and np.isfinite(drop):
            points.append((name, float(factor), 100 * drop))
    if len({factor for _, factor, _ in points}) < 2:
        raise FigureSkipped("the variants do not differ in capacity.factor (and no sweep does)")
    return points


def _from_variants(data: ResultsData) -> Figure:
    points = _variant_drops(data)
    # One line per combination of the variants' other settings (the score, a bias, ...).
    rest = {
        name: {k: v for k, v in styled_settings(data, name).items() if k != CAPACITY_KEY}
        for name, _, _ in points
    }
    groups: dict[tuple, list] = {}
    for point in points:
        groups.setdefault(settings_key(rest[point[0]]), []).append(point)
    settings = [rest[members[0][0]] for members in groups.values()]
    differing = sorted(
        {k for s in settings for k in s if len({repr(t.get(k)) for t in settings}) > 1}
    )
    fig = new_figure(3.9, width=WIDTH)
    ax = fig.subplots()
    styles = series_styles(settings)
    for members, setting, st in zip(groups.values(), settings, styles, strict=True):
        members.sort(key=lambda p: p[1])
        label = ", ".join(short_label(k, setting.get(k)) for k in differing) or "variants"
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
    shapes = {tuple(data.variant_value(name, k) for k in SHAPE_KEYS) for name, _, _ in points}
    if len(shapes) == 1 and all(isinstance(v, int) for v in next(iter(shapes))):
        _uniform_curve(ax, [p[1] for p in points], next(iter(shapes)))
    ax.set_xlabel(parameter_label(CAPACITY_KEY))
    ax.set_ylabel(f"{metric_spec('drop_rate').label}, run average")
    ax.set_ylim(bottom=0)
    ax.margins(x=0.08)
    legend_below(fig, ax, max_cols=3)
    set_title(fig, data, "drop rate versus capacity factor (one point per variant)")
    return fig
