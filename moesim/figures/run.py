"""Figures of one run, a panel or a series per variant: expert load over time, MaxVio_batch over
steps, bias trajectories, Lorenz curves of the final loads and the drop rate over steps."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure

from moesim.figures.style import (
    BAND_ALPHA,
    HEATMAP_CMAP,
    NEUTRAL,
    OKABE_ITO,
    FigureSkipped,
    as_float,
    grid_shape,
    hide_unused,
    legend_below,
    log_y,
    new_figure,
    note,
    plain_ticks,
    set_title,
    variant_styles,
)
from moesim.results import ResultsData
from moesim.results.metrics import format_metric


def require_run(data: ResultsData) -> list[dict]:
    """The variant summaries of the run, or :class:`FigureSkipped` for a sweep-only folder."""
    if not data.variants:
        raise FigureSkipped("no run results (summary.json) in this folder")
    return data.variants


def require_loads(data: ResultsData) -> dict:
    """``loads.npz`` per variant, or :class:`FigureSkipped` when the run did not save it."""
    if not data.loads:
        raise FigureSkipped("no loads.npz (the run was made with output.save_loads: false)")
    return data.loads


def recorded_histories(data: ResultsData, variants: list[dict]) -> list[tuple[dict, dict]]:
    """``(summary, history columns)`` of each variant with a recorded step, in order;
    :class:`FigureSkipped` without ``history.csv``."""
    if data.history is None:
        raise FigureSkipped("no history.csv in the results folder")
    histories = [(summary, data.variant_history(summary["variant"])) for summary in variants]
    return [(summary, history) for summary, history in histories if len(history.get("step", []))]


def load_heatmap(data: ResultsData) -> Figure:
    """Experts x recorded steps, colour = demand / fair share (log2 scale), one panel per variant.

    Experts are ordered by their final-window load, the most loaded at the top, so a collapse
    shows as a bright band at the top and a dark one below.
    """
    panels = _heatmap_panels(data)
    finite = np.concatenate([np.abs(p[1][np.isfinite(p[1])]) for p in panels])
    limit = float(np.clip(np.ceil(np.quantile(finite, 0.995)) if finite.size else 1.0, 1.0, 4.0))
    norm = mcolors.Normalize(vmin=-limit, vmax=limit)
    rows, cols = grid_shape(len(panels))
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
        max_vio = format_metric("max_vio_global", summary.get("max_vio_global"))
        ax.set_title(f"{summary['variant']}\nMaxVio_global {max_vio}", fontsize=8.5)
        ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=5, integer=True))
    for ax in axes[-1, :]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("expert rank\n(by final-window load)")
    hide_unused(axes, len(panels), xlabel="step")
    load_ratio_colorbar(fig, axes, mesh, limit, "load / fair share (log scale)")
    set_title(fig, data, "expert load over time")
    return fig


def _heatmap_panels(data: ResultsData) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Per variant with loads: its summary, log2(demand / fair share) (E, R) with experts by
    final-window load (most loaded first), and the step edges (R + 1,) of the records."""
    variants = require_run(data)
    require_loads(data)
    panels = []
    for summary in variants:
        arrays = data.layer_loads(summary["variant"])
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
    return panels


def load_ratio_colorbar(fig, axes, mesh, limit: float, label: str) -> None:
    """The colour bar of a heatmap of log2(load / fair share) clipped to ``[-limit, limit]``:
    one tick per power of two, labelled as a ratio (``1/2×``, ``1×``, ``2×``)."""
    ticks = np.arange(-limit, limit + 1)
    colorbar = fig.colorbar(
        mesh, ax=axes.ravel().tolist(), shrink=0.9, aspect=30, pad=0.02, extend="both"
    )
    colorbar.set_ticks(ticks)
    colorbar.set_ticklabels([_power_of_two_label(t) for t in ticks])
    colorbar.set_label(label)


def _power_of_two_label(exponent: float) -> str:
    exponent = int(exponent)
    if exponent >= 0:
        return f"{2**exponent}×"
    return f"1/{2 ** (-exponent)}×"


def max_vio_over_steps(data: ResultsData) -> Figure:
    """MaxVio_batch at each recorded step, log y, every variant, MaxVio_global in the legend."""
    variants = require_run(data)
    fig = new_figure(3.6)
    ax = fig.subplots()
    floor = 1e-3
    drawn = False
    styles = variant_styles(data)
    for summary, history in recorded_histories(data, variants):
        values = np.clip(history["max_vio_batch"], floor, None)
        max_vio = format_metric("max_vio_global", summary.get("max_vio_global"))
        label = f"{summary['variant']} (MaxVio_global {max_vio})"
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
    log_y(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("MaxVio_batch\n(max / mean load − 1)")
    ax.set_xlim(left=0)
    legend_below(fig, ax)
    set_title(fig, data, "batch load imbalance over training")
    return fig


def bias_trajectories(data: ResultsData) -> Figure:
    """Expert bias over steps: median, 5-95% band across experts, the 3 most extreme experts."""
    variants = require_run(data)
    require_loads(data)
    panels = []
    for summary in variants:
        arrays = data.layer_loads(summary["variant"])
        if arrays is None or arrays["bias"].size == 0 or not np.any(arrays["bias"]):
            continue
        panels.append((summary, arrays))
    if not panels:
        raise FigureSkipped("no variant uses the expert bias (loss-free balancing)")
    rows, cols = grid_shape(len(panels), max_cols=2)
    fig = new_figure(0.9 + 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False))
    for ax, (summary, arrays) in zip(axes.ravel(), panels, strict=False):
        _bias_panel(ax, arrays["bias"].astype(float), arrays["steps"])
        ax.set_title(summary["variant"])
    for ax in axes.ravel():
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("expert bias b (score units)")
    hide_unused(axes, len(panels))
    set_title(fig, data, "expert bias trajectories")
    return fig


def _bias_panel(ax, bias: np.ndarray, steps: np.ndarray) -> None:
    """Median and 5-95% band of the bias (R, E) across experts at each record of ``steps``
    (R,), and the three experts that end furthest from the median."""
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
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=3)
    plain_ticks(ax.yaxis)


def lorenz_curves(data: ResultsData) -> Figure:
    """Lorenz curve of the final-window demand per variant, Gini in the legend."""
    variants = require_run(data)
    require_loads(data)
    fig = new_figure(4.6, width=5.6)
    ax = fig.subplots()
    ax.plot([0, 100], [0, 100], color=NEUTRAL, linestyle="--", linewidth=1.0, label="equality")
    drawn = False
    styles = variant_styles(data)
    for summary in variants:
        arrays = data.layer_loads(summary["variant"])
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
        label = f"{summary['variant']} (Gini {format_metric('gini', gini)})"
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
    set_title(fig, data, "final-window load inequality")
    return fig


def _gini(sorted_loads: np.ndarray) -> float:
    n = sorted_loads.size
    weights = 2 * np.arange(n) - n + 1
    return float((weights * sorted_loads).sum() / (n * sorted_loads.sum()))


def drop_rate_over_steps(data: ResultsData) -> Figure:
    """Assignment drop rate per recorded window; a flat zero line with a note when none drop."""
    variants = require_run(data)
    if not any(np.isfinite(as_float(summary.get("drop_rate"))) for summary in variants):
        raise FigureSkipped(
            "no drop rates: a replayed load trace (deployment.load_trace) records no drops"
        )
    fig = new_figure(3.4)
    ax = fig.subplots()
    any_drops = False
    styles = variant_styles(data)
    for summary, history in recorded_histories(data, variants):
        rate = np.nan_to_num(history["drop_rate"]) * 100
        any_drops |= bool(np.any(rate > 0))
        capacity = summary.get("capacity")
        limit = "no capacity limit" if capacity is None else f"capacity {capacity}/expert"
        average = format_metric("drop_rate", float(summary.get("drop_rate") or 0.0))
        label = f"{summary['variant']} ({limit}, {average} dropped)"
        ax.plot(history["step"], rate, label=label, alpha=0.9, **styles[summary["variant"]].line)
    if not any_drops:
        ax.set_ylim(-0.25, 5)
        note(ax, "no assignment was dropped")
    else:
        top = ax.get_ylim()[1]
        ax.set_ylim(-0.02 * top, top)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("assignments dropped (%)")
    legend_below(fig, ax)
    set_title(fig, data, "token dropping at the capacity limit")
    return fig
