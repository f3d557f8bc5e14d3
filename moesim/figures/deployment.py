"""Figures of an expert-parallel deployment (docs/model.md §10): loads per GPU and layer,
traffic per GPU, the step-time breakdown, and the deployment metrics of a sweep."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from moesim.figures.run import require_run
from moesim.figures.style import (
    HEATMAP_CMAP,
    NEUTRAL,
    OKABE_ITO,
    FigureSkipped,
    grid_shape,
    hide_unused,
    new_figure,
    set_title,
)
from moesim.figures.sweep import _sweep_figure, require_sweep
from moesim.results import ResultsData
from moesim.results.metrics import format_metric

#: Metrics of the sweep figure of a deployment, in panel order.
SWEEP_DEPLOYMENT_METRICS = ("step_efficiency", "gpu_imbalance", "balancedness", "imbalance_lost")


def _deployment_variants(data: ResultsData) -> list[tuple[dict, dict]]:
    """(summary, arrays) of every variant with deployment arrays, or FigureSkipped."""
    variants = require_run(data)
    arrays = data.deployment or {}
    found = [(s, arrays[s["variant"]]) for s in variants if s["variant"] in arrays]
    if not found:
        raise FigureSkipped("no deployment in this run (deployment.npz)")
    return found


def gpu_layer_heatmap(data: ResultsData) -> Figure:
    """GPUs x layers, colour = final-window load / the layer's mean GPU load (log2), a panel
    per variant."""
    panels = _deployment_variants(data)
    rows, cols = grid_shape(len(panels))
    fig = new_figure(1.0 + 2.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False))
    norm = mcolors.Normalize(vmin=-1.0, vmax=1.0)
    mesh = None
    for ax, (summary, arrays) in zip(axes.ravel(), panels, strict=False):
        loads = arrays["gpu_layer_loads"].astype(float)  # (L, G)
        mean = loads.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log2(loads / np.where(mean > 0, mean, np.nan))
        shown = np.nan_to_num(np.clip(ratio, -1.0, 1.0), nan=-1.0)
        # Layer l spans [l, l + 1): labels at the left edges are the layer numbers.
        mesh = ax.pcolormesh(shown.T, cmap=HEATMAP_CMAP, norm=norm, rasterized=True)
        ax.set_ylim(loads.shape[1], 0)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.grid(False)
        ax.set_xlabel("layer")
        ax.set_ylabel("GPU")
        imbalance = format_metric("gpu_imbalance", summary.get("gpu_imbalance"))
        ax.set_title(f"{summary['variant']}\nGPU imbalance {imbalance}", fontsize=8.5)
    hide_unused(axes, len(panels))
    colorbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9, aspect=30, extend="both")
    colorbar.set_ticks([-1, -0.5, 0, 0.5, 1])
    colorbar.set_ticklabels(["1/2", "1/√2", "1", "√2", "2"])
    colorbar.set_label("GPU load / layer mean (log scale)")
    set_title(fig, data, "load per GPU and layer (final window)")
    return fig


#: Why a variant has no traffic: a replayed load trace (docs/model.md §10.8).
NO_TRAFFIC = (
    "a replayed load trace (deployment.load_trace) holds per-expert counts, not which experts "
    "each token chose: no traffic"
)


def _has_traffic(arrays: dict) -> bool:
    return bool(np.isfinite(arrays["sent_intra_mb"]).all())


def gpu_traffic(data: ResultsData) -> Figure:
    """Per GPU, MB sent (up) and received (down) per step over NVLink and InfiniBand (variants
    that replay a load trace have no traffic and no panel)."""
    panels = [(s, arrays) for s, arrays in _deployment_variants(data) if _has_traffic(arrays)]
    if not panels:
        raise FigureSkipped(NO_TRAFFIC)
    fig = new_figure(0.9 + 2.1 * len(panels))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)).ravel()
    for ax, (summary, arrays) in zip(axes, panels, strict=True):
        gpus = np.arange(arrays["sent_intra_mb"].shape[0])
        ax.bar(gpus, arrays["sent_intra_mb"], color=OKABE_ITO[1], label="NVLink (intra-node)")
        ax.bar(
            gpus,
            arrays["sent_inter_mb"],
            bottom=arrays["sent_intra_mb"],
            color=OKABE_ITO[4],
            label="InfiniBand (inter-node)",
        )
        ax.bar(gpus, -arrays["received_intra_mb"], color=OKABE_ITO[1], alpha=0.55)
        ax.bar(
            gpus,
            -arrays["received_inter_mb"],
            bottom=-arrays["received_intra_mb"],
            color=OKABE_ITO[4],
            alpha=0.55,
        )
        ax.axhline(0, color=NEUTRAL, linewidth=0.8)
        ax.set_ylabel("MB per step\nreceived ↓  sent ↑")
        ax.set_title(summary["variant"], fontsize=8.5)
    axes[-1].set_xlabel("GPU")
    axes[0].legend(loc="upper right", fontsize=7.5)
    set_title(fig, data, "all-to-all traffic per GPU (dispatch + combine, final window)")
    return fig


def step_time_breakdown(data: ResultsData) -> Figure:
    """Per GPU, a step's MoE time split into expert compute, communication not hidden behind
    it, and idle time waiting for the slowest GPU (layers summed): every bar reaches the step."""
    panels = _deployment_variants(data)
    fig = new_figure(0.9 + 2.1 * len(panels))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)).ravel()
    for ax, (summary, arrays) in zip(axes, panels, strict=True):
        compute, idle = arrays["compute_ms"], arrays["idle_ms"]
        step = float(summary.get("step_time_ms") or np.nan)
        exposed = np.clip(step - idle - compute, 0.0, None)
        gpus = np.arange(compute.shape[0])
        ax.bar(gpus, compute, color=OKABE_ITO[2], label="expert compute")
        ax.bar(gpus, exposed, bottom=compute, color=OKABE_ITO[4], label="communication (exposed)")
        ax.bar(gpus, idle, bottom=compute + exposed, color="#d9d9d9", label="idle (waiting)")
        ax.axhline(step, color=NEUTRAL, linestyle="--", linewidth=0.8, label="step (slowest GPU)")
        efficiency = format_metric("step_efficiency", summary.get("step_efficiency"))
        # A replayed load trace has no traffic: its step is the compute part alone.
        what = "" if _has_traffic(arrays) else " (compute only: a replayed trace)"
        ax.set_title(
            f"{summary['variant']}: step {step:.3g} ms{what}, efficiency {efficiency}",
            fontsize=8.5,
        )
        ax.set_ylabel("ms per step")
    axes[-1].set_xlabel("GPU")
    axes[0].legend(loc="lower right", fontsize=7.5)
    set_title(fig, data, "step time per GPU (final window)")
    return fig


def sweep_deployment(data: ResultsData) -> Figure:
    """Step efficiency, GPU imbalance, balancedness and the time lost to imbalance against each
    swept parameter (redundant experts, rebalance interval, ...)."""
    sweep = require_sweep(data)
    metrics = [
        name
        for name in SWEEP_DEPLOYMENT_METRICS
        if name in sweep and sweep[name].dtype != object and np.isfinite(sweep[name]).any()
    ]
    if not metrics:
        raise FigureSkipped("the swept scenario has no deployment")
    return _sweep_figure(data, metrics, "deployment by swept parameter")
