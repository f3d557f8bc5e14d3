"""Figures of a results folder (a run, a sweep, or both) for design reviews.

Every figure function takes a :class:`moesim.results.ResultsData` (read by
:func:`moesim.results.load_results`) and returns a :class:`matplotlib.figure.Figure`; a figure
whose data is absent raises :class:`FigureSkipped` with the reason, and :func:`write_figures`
records it and goes on. Labels and number formats come from :mod:`moesim.results.metrics`.

- :mod:`moesim.figures.style`: palette, rc style, figure size, legends, series styles.
- :mod:`moesim.figures.run`: figures of one run (load heatmap, MaxVio, bias, Lorenz, drops).
- :mod:`moesim.figures.sweep`: sweep figures (layout into lines and panels, best point).
- :mod:`moesim.figures.capacity`: drop rate against the capacity factor.
- :mod:`moesim.figures.tradeoff`: balance against specialization and quality.
- :mod:`moesim.figures.registry`: :data:`FIGURES`, drawing them and writing the files.
"""

from moesim.figures.capacity import drop_vs_capacity, uniform_drop_rate
from moesim.figures.registry import (
    FIGURES,
    FORMATS,
    SWEEP_FIGURES,
    FigureSpec,
    Plot,
    figure_bytes,
    render_figures,
    write_figures,
)
from moesim.figures.run import (
    bias_trajectories,
    drop_rate_over_steps,
    load_heatmap,
    lorenz_curves,
    max_vio_over_steps,
)
from moesim.figures.style import (
    DPI,
    OKABE_ITO,
    STYLE,
    WIDTH,
    FigureSkipped,
    SeriesStyle,
    legend_columns,
    new_figure,
    series_styles,
    style,
    variant_styles,
)
from moesim.figures.sweep import (
    MAX_FACETS,
    MAX_LINES,
    SweepLayout,
    sweep_chosen_metric,
    sweep_layout,
    sweep_metrics,
)
from moesim.figures.tradeoff import tradeoff

__all__ = [
    "DPI",
    "FIGURES",
    "FORMATS",
    "MAX_FACETS",
    "MAX_LINES",
    "OKABE_ITO",
    "STYLE",
    "SWEEP_FIGURES",
    "WIDTH",
    "FigureSkipped",
    "FigureSpec",
    "Plot",
    "SeriesStyle",
    "SweepLayout",
    "bias_trajectories",
    "drop_rate_over_steps",
    "drop_vs_capacity",
    "figure_bytes",
    "legend_columns",
    "load_heatmap",
    "lorenz_curves",
    "max_vio_over_steps",
    "new_figure",
    "render_figures",
    "series_styles",
    "style",
    "sweep_chosen_metric",
    "sweep_layout",
    "sweep_metrics",
    "tradeoff",
    "uniform_drop_rate",
    "variant_styles",
    "write_figures",
]
