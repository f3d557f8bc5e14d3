"""The registered figures, drawing them and writing them to a results folder's ``figures/``.

:data:`FIGURES` maps each figure's name to its function, its one-line caption and, for the
sweep's chosen metric, the file name (``sweep_<metric>``); its order is the report's.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from matplotlib.figure import Figure

from moesim.figures.capacity import drop_vs_capacity
from moesim.figures.deployment import (
    gpu_layer_heatmap,
    gpu_traffic,
    step_time_breakdown,
    sweep_deployment,
)
from moesim.figures.layers import layer_expert_loads, max_vio_by_layer
from moesim.figures.routers import experts_per_token
from moesim.figures.run import (
    bias_trajectories,
    drop_rate_over_steps,
    load_heatmap,
    lorenz_curves,
    max_vio_over_steps,
)
from moesim.figures.style import DPI, FigureSkipped, style
from moesim.figures.sweep import sweep_chosen_metric, sweep_metric_stem, sweep_metrics
from moesim.figures.tradeoff import tradeoff
from moesim.results import ResultsData, load_results, write_atomic

FORMATS = ("png", "svg", "pdf")


class FigureSpec(NamedTuple):
    """A registered figure: its function, one-line caption and, when the file is not named
    after the registry entry, a function of the data giving the file name."""

    function: Callable[[ResultsData], Figure]
    caption: str
    stem: Callable[[ResultsData], str] | None = None
    #: Whether the figure is meant for this folder at all (else neither drawn nor listed as
    #: skipped): the layer figures for runs with several MoE layers.
    applies: Callable[[ResultsData], bool] | None = None


@dataclass
class Plot:
    """A drawn figure with its file name (without extension) and one-line caption."""

    name: str
    figure: Figure
    caption: str


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
    "layer_loads": FigureSpec(
        layer_expert_loads,
        "Final-window load of every expert (columns, by number) in every MoE layer (rows); "
        "colour is load over the fair share T·K/E on a log scale, white = balanced; an expert "
        "hot in several layers shows as a vertical streak.",
        applies=lambda data: data.is_multi_layer and data.layer is None,
    ),
    "max_vio_layers": FigureSpec(
        max_vio_by_layer,
        "MaxVio_batch of every MoE layer (rows) at each recorded step (log colour): which "
        "layers balance, when, and which stay behind; the mean over layers is the max_vio "
        "figure.",
        applies=lambda data: data.is_multi_layer and data.layer is None,
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
    "experts_per_token": FigureSpec(
        experts_per_token,
        "Share of tokens that kept no expert, one, two or three and more over the final window "
        "(expert choice gives a token any number); diamonds give the batch dependence: the "
        "share of tokens whose experts change when the rest of their batch is replaced.",
    ),
    "sweep_chosen_metric": FigureSpec(
        sweep_chosen_metric,
        "The metric the sweep ranks points by, against each swept parameter: line = mean over "
        "seeds, band = 95% interval (Student's t); the ring marks the best point.",
        sweep_metric_stem,
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
    "gpu_layer_heatmap": FigureSpec(
        gpu_layer_heatmap,
        "Expert-parallel deployment: each GPU's load in each layer over the final window, "
        "divided by the layer's mean GPU load (log scale; white = balanced, orange = the GPUs "
        "the others wait for).",
    ),
    "gpu_traffic": FigureSpec(
        gpu_traffic,
        "All-to-all traffic per GPU and step (dispatch in FP8 and combine in BF16): sent above "
        "the axis, received below, NVLink within a node and InfiniBand between nodes (a token "
        "counted once per target node).",
    ),
    "step_time": FigureSpec(
        step_time_breakdown,
        "Each GPU's share of a step's MoE time: expert compute, communication not hidden behind "
        "it, and idle time waiting for the slowest GPU of each layer (layers summed).",
    ),
    "sweep_deployment": FigureSpec(
        sweep_deployment,
        "Deployment metrics against each swept parameter (redundant experts, rebalance "
        "interval, ...): step efficiency (mean over max GPU time), GPU imbalance ratio, "
        "balancedness and the share of the step lost to imbalance; mean and 95% interval.",
    ),
    "tradeoff": FigureSpec(
        tradeoff,
        "The balance/quality trade-off: each point is a variant (or sweep point); left is "
        "balanced, up is more specialized experts (mutual information of cluster and expert) "
        "or a higher quality.",
    ),
}

#: Sweep figures, drawn at the end of ``moesim sweep``.
SWEEP_FIGURES = (
    "sweep_chosen_metric",
    "sweep_metrics",
    "drop_vs_capacity",
    "sweep_deployment",
    "tradeoff",
)


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
            if spec.applies is not None and not (only and name in only) and not spec.applies(data):
                continue
            try:
                figure = spec.function(data)
            except FigureSkipped as reason:
                skipped[name] = str(reason)
                continue
            stem = spec.stem(data) if spec.stem else name
            if data.layer is not None:  # one layer's figures beside the mean's
                stem += f"_layer{data.layer}"
            plots.append(Plot(stem, figure, spec.caption))
    return plots, skipped


def figure_bytes(figure: Figure, fmt: str = "png") -> bytes:
    """The figure encoded as ``fmt`` (png at :data:`~moesim.figures.style.DPI`, svg or pdf),
    without dates or software versions, so the same figure gives the same bytes."""
    _check_formats([fmt])
    buffer = io.BytesIO()
    with style():
        metadata = {"Software": None} if fmt == "png" else {}
        if fmt == "svg":
            metadata = {"Date": None}
        elif fmt == "pdf":
            metadata = {"CreationDate": None, "ModDate": None}
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()


def _check_formats(formats: list[str]) -> None:
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_figures(
    results_dir: Path | ResultsData,
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

    Raises
    ------
    moesim.results.NotResultsError
        When the folder is not a results folder.
    """
    formats = list(dict.fromkeys(formats)) or ["png"]
    _check_formats(formats)
    data = results_dir if isinstance(results_dir, ResultsData) else load_results(results_dir)
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
