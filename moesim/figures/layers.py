"""Figures of a run with several MoE layers (docs/model.md §1.1), a panel per variant: the
final-window load of every layer and expert, and MaxVio_batch of every layer over training."""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure

from moesim.figures.run import load_ratio_colorbar, require_loads, require_run
from moesim.figures.style import (
    HEATMAP_CMAP,
    FigureSkipped,
    grid_shape,
    hide_unused,
    new_figure,
    set_title,
)
from moesim.results import ResultsData
from moesim.results.metrics import LAYER_COLUMN, format_metric

#: Colour range of MaxVio_batch (log scale): a balanced layer to a collapsed one.
MAX_VIO_RANGE = (0.01, 10.0)


def require_layers(data: ResultsData) -> None:
    """:class:`FigureSkipped` unless the run has several MoE layers."""
    require_run(data)
    if not data.is_multi_layer:
        raise FigureSkipped("the run has one MoE layer (load_heatmap and max_vio show it)")


def _panels(n_panels: int, height_per_row: float):
    rows, cols = grid_shape(n_panels, max_cols=2)
    fig = new_figure(1.0 + height_per_row * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False))
    return fig, axes


def _layer_ticks(ax, numbers: np.ndarray) -> None:
    """Rows are layers: label the middle of a few rows, evenly spread, by the layers' numbers."""
    every = max(1, -(-len(numbers) // 8))
    rows = np.arange(0, len(numbers), every)
    ax.yaxis.set_major_locator(ticker.FixedLocator(rows + 0.5))
    ax.yaxis.set_major_formatter(ticker.FixedFormatter([str(numbers[r]) for r in rows]))


def layer_expert_loads(data: ResultsData) -> Figure:
    """Layers x experts, colour = final-window load / fair share (log2), one panel per variant.

    Experts keep their numbers (columns), so an expert hot in several layers shows as a
    vertical streak: what an expert-parallel placement has to spread.
    """
    require_layers(data)
    loads = require_loads(data)
    panels = []
    for summary in data.variants:
        arrays = loads.get(summary["variant"])
        if arrays is None or arrays["final_loads"].sum() <= 0:
            continue
        final = arrays["final_loads"].astype(float)  # (L, E)
        fair = final.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log2(final / np.where(fair > 0, fair, np.nan))
        panels.append((summary, ratio, arrays["layers"]))
    if not panels:
        raise FigureSkipped("no final-window loads recorded")
    limit = 3.0
    norm = mcolors.Normalize(vmin=-limit, vmax=limit)
    fig, axes = _panels(len(panels), 2.6)
    mesh = None
    for ax, (summary, ratio, numbers) in zip(axes.ravel(), panels, strict=False):
        shown = np.nan_to_num(np.clip(ratio, -limit, limit), nan=-limit)
        mesh = ax.pcolormesh(shown, cmap=HEATMAP_CMAP, norm=norm, rasterized=True)
        ax.set_ylim(len(numbers), 0)
        ax.grid(False)
        _layer_ticks(ax, numbers)
        worst = summary.get("worst_layer")
        worst_max_vio = format_metric("max_vio_global", summary.get("max_vio_global_max"))
        ax.set_title(
            f"{summary['variant']}\nworst layer {worst}: MaxVio_global {worst_max_vio}",
            fontsize=8.5,
        )
    for ax in axes[-1, :]:
        ax.set_xlabel("expert")
    for ax in axes[:, 0]:
        ax.set_ylabel("layer")
    hide_unused(axes, len(panels), xlabel="expert")
    load_ratio_colorbar(fig, axes, mesh, limit, "final-window load / fair share (log scale)")
    set_title(fig, data, "final-window load of every layer and expert", per_layer=True)
    return fig


def max_vio_by_layer(data: ResultsData) -> Figure:
    """Layers x recorded steps, colour = MaxVio_batch (log scale), one panel per variant."""
    require_layers(data)
    if data.history is None:
        raise FigureSkipped("no history.csv in the results folder")
    panels = []
    for summary in data.variants:
        rows = data.history["variant"] == summary["variant"]
        layers = data.history[LAYER_COLUMN][rows].astype(int)
        steps = data.history["step"][rows]
        if not steps.size:
            continue
        numbers = np.unique(layers)
        step_values = np.unique(steps)
        grid = np.full((numbers.size, step_values.size), np.nan)
        grid[np.searchsorted(numbers, layers), np.searchsorted(step_values, steps)] = data.history[
            "max_vio_batch"
        ][rows]
        panels.append((summary, grid, numbers, step_values))
    if not panels:
        raise FigureSkipped("no recorded steps")
    norm = mcolors.LogNorm(*MAX_VIO_RANGE)
    fig, axes = _panels(len(panels), 2.4)
    mesh = None
    for ax, (summary, grid, numbers, steps) in zip(axes.ravel(), panels, strict=False):
        edges = np.concatenate([[0.0], steps + 1.0])
        shown = np.clip(grid, *MAX_VIO_RANGE)
        mesh = ax.pcolormesh(edges, np.arange(numbers.size + 1), shown, cmap="viridis",
                             norm=norm, rasterized=True, shading="flat")  # fmt: skip
        ax.set_ylim(numbers.size, 0)
        ax.grid(False)
        _layer_ticks(ax, numbers)
        mean = format_metric("max_vio_global", summary.get("max_vio_global"))
        ax.set_title(f"{summary['variant']}\nmean MaxVio_global {mean}", fontsize=8.5)
    for ax in axes[-1, :]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("layer")
    hide_unused(axes, len(panels), xlabel="step")
    colorbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9, aspect=30, pad=0.02,
                            extend="both")  # fmt: skip
    colorbar.set_label("MaxVio_batch (max / mean load − 1, log scale)")
    set_title(fig, data, "batch load imbalance of every layer over training", per_layer=True)
    return fig
