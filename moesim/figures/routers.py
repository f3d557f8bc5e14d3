"""Figure of the routing algorithms beyond top-K (docs/model.md §2.3-§2.4): how many experts
each token gets, and how much that depends on the rest of its batch."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from moesim.figures.run import require_run
from moesim.figures.style import OKABE_ITO, FigureSkipped, legend_below, new_figure, set_title
from moesim.results import ResultsData
from moesim.results.metrics import format_metric

#: The summary shares of tokens by number of kept experts, and their legend labels.
SHARES = (
    ("no_expert_share", "no expert"),
    ("one_expert_share", "1 expert"),
    ("two_experts_share", "2 experts"),
    ("more_experts_share", "3 or more"),
)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def experts_per_token(data: ResultsData) -> Figure:
    """Stacked bars per variant: the shares of tokens with 0, 1, 2, >= 3 kept experts over the
    final window; diamonds (and the variant's label) give the batch dependence.

    Skipped unless some variant routed with a whole-batch algorithm (a batch dependence was
    measured): with top-K every token keeps its K experts and the bars say nothing.
    """
    variants = require_run(data)
    dependence = [_number(v.get("batch_dependence")) for v in variants]
    if all(math.isnan(d) for d in dependence):
        raise FigureSkipped("no expert-choice or Sinkhorn variant (no batch dependence measured)")
    fig = new_figure(3.4)
    ax = fig.subplots()
    positions = np.arange(len(variants))
    bottom = np.zeros(len(variants))
    for (key, label), colour in zip(SHARES, OKABE_ITO, strict=False):
        shares = np.nan_to_num([_number(v.get(key)) for v in variants]) * 100
        ax.bar(positions, shares, bottom=bottom, color=colour, label=label, width=0.7)
        bottom += shares
    # The batch dependence on the same percent scale, as points over the bars.
    ax.plot(
        positions,
        np.array(dependence) * 100,
        linestyle="none",
        marker="D",
        color="black",
        label="batch dependence",
    )
    names = []
    for v, d in zip(variants, dependence, strict=True):
        measured = "" if math.isnan(d) else f" ({format_metric('batch_dependence', d, 1)})"
        names.append(f"{v['variant']}{measured}")
    ax.set_xticks(positions, names, rotation=30, ha="right", fontsize="small")
    ax.set_ylim(0, 100)
    ax.set_ylabel("tokens (%)")
    legend_below(fig, ax, max_cols=4)
    set_title(fig, data, "experts per token, final window")
    return fig
