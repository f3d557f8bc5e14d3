"""What a result is made of: the history columns, the summary metrics and how both are shown.

The bottom of the package: the engine fills these columns, the results folder writes them, the
scenario checks a sweep's metric against them, figures, reports and the command line label and
format them from here (:data:`METRICS`, :func:`format_metric`) and order swept values by
:func:`sort_key`. Nothing here imports the rest of moesim.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from moesim.errors import suggest

#: Per-step measurements of an expert-parallel deployment (docs/model.md §10.4): history
#: columns (means over the record window) and summary metrics (means over the final window);
#: empty without a deployment.
DEPLOYMENT_COLUMNS = (
    "gpu_imbalance",
    "slot_imbalance",
    "node_imbalance",
    "balancedness",
    "step_time_ms",
    "compute_ms",
    "comm_ms",
    "idle_ms",
    "step_efficiency",
    "imbalance_lost",
    "intra_node_mb",
    "inter_node_mb",
)
#: Summary metrics of a deployment's rebalancing (docs/model.md §10.6).
REBALANCE_METRICS = ("rebalances", "experts_moved", "migration_gb")

#: Columns of the per-record history, in order (meanings in docs/metrics.md).
HISTORY_COLUMNS = (
    "step",
    "max_vio_batch",
    "max_vio_window",
    "cv",
    "entropy",
    "gini",
    "starved",
    "top10_share",
    "max_vio_batch_kept",
    "drop_rate",
    "token_drop_rate",
    "fully_dropped_rate",
    "padding_waste",
    "bias_min",
    "bias_mean",
    "bias_max",
    "fidelity",
    "specialization",
    "quality",
    "quality_ratio",
    "eval_loss",
    "eval_regret",
    "aux_loss",
    "z_loss",
    *DEPLOYMENT_COLUMNS,
    "no_expert_share",
    "batch_dependence",
    "sinkhorn_iterations",
)

#: The history column of a run with several MoE layers: the layer's number (0-based, dense
#: layers counted). A single-layer run's history.csv has no such column (moesim 0.1's files).
LAYER_COLUMN = "layer"


# ----------------------------------------------------------------------------------------------
# Summary metrics and how they are shown: labels with units, table titles, scale and range


class Metric(NamedTuple):
    """How a summary metric is shown: axis label (with units), table header, scale and range."""

    label: str
    title: str
    percent: bool = False  # stored as a fraction, shown in %
    log: bool = False  # log y allowed when the means span more than 30x
    low: float | None = 0.0  # the metric's range (stored units): bands are clipped to it
    high: float | None = None

    @property
    def scale(self) -> float:
        """Factor from stored to shown units: 100 for a percentage, else 1."""
        return 100.0 if self.percent else 1.0


#: Every numeric key of the summary :func:`moesim.engine.summarize` builds, in its order, with how
#: it is shown (definitions: docs/model.md §6; meanings and units: docs/metrics.md). Adding a
#: summary metric means adding it here (and to docs/metrics.md); tests check both.
METRICS = {
    "steps": Metric("steps in the scenario (steps)", "steps"),
    "steps_done": Metric("steps run (steps)", "steps done"),
    "max_vio_global": Metric("MaxVio_global (max / mean load − 1)", "MaxVio global", log=True),
    "mean_max_vio_batch": Metric(
        "mean MaxVio_batch (max / mean load − 1)", "MaxVio batch (mean)", log=True
    ),
    "final_max_vio_batch": Metric(
        "final MaxVio_batch (max / mean load − 1)", "MaxVio batch (final)", log=True
    ),
    "max_vio_noise_floor": Metric(
        "MaxVio of uniform routing (max / mean load − 1)", "MaxVio noise floor", log=True
    ),
    "cv": Metric("CV of expert loads (std / mean)", "CV"),
    "entropy": Metric("load entropy (H / log E; 1 = uniform)", "entropy", high=1.0),
    "gini": Metric("Gini of expert loads (0 = equal)", "Gini", high=1.0),
    "starved": Metric("starved experts (count)", "starved"),
    "top10_share": Metric("load of the top 10% of experts (%)", "top-10% share", True, high=1.0),
    "drop_rate": Metric("assignments dropped (%)", "drop rate (assign.)", True, high=1.0),
    "token_drop_rate": Metric("tokens dropped (%)", "drop rate (tokens)", True, high=1.0),
    "fully_dropped_rate": Metric(
        "tokens with every assignment dropped (%)", "fully dropped (tokens)", True, high=1.0
    ),
    "final_drop_rate": Metric(
        "assignments dropped, final window (%)", "drop rate (final)", True, high=1.0
    ),
    "capacity": Metric("expert capacity (assignments per step)", "capacity"),
    "steps_to_balance": Metric("steps to balance (steps)", "steps to balance"),
    "balance_threshold": Metric("steps-to-balance bar (max / mean load − 1)", "balance threshold"),
    "balance_window": Metric("steps-to-balance window (steps)", "balance window"),
    "bias_oscillation": Metric("bias oscillation (bias units)", "bias oscillation"),
    "fidelity": Metric("routing fidelity (share of unbiased top-K)", "fidelity", high=1.0),
    "specialization": Metric("specialization (MI / H(cluster))", "specialization", high=1.0),
    "quality": Metric("quality (mean reward of chosen experts)", "quality", low=None),
    "quality_ratio": Metric("quality ratio (quality / best expert)", "quality ratio", low=None),
    "eval_loss": Metric("held-out loss (nats above a perfectly served token)", "eval loss"),
    "eval_regret": Metric("held-out regret (nats above the best expert)", "eval regret"),
    "no_expert_share": Metric(
        "tokens with no expert, final window (%)", "no expert", True, high=1.0
    ),
    "one_expert_share": Metric(
        "tokens with one expert, final window (%)", "one expert", True, high=1.0
    ),
    "two_experts_share": Metric(
        "tokens with two experts, final window (%)", "two experts", True, high=1.0
    ),
    "more_experts_share": Metric(
        "tokens with three or more experts, final window (%)", "3+ experts", True, high=1.0
    ),
    "batch_dependence": Metric(
        "batch dependence (share of tokens whose experts change with their batch)",
        "batch dependence",
        True,
        high=1.0,
    ),
    "sinkhorn_iterations": Metric("Sinkhorn iterations per step", "Sinkhorn iterations"),
    "final_window_steps": Metric("final window (steps)", "final window"),
    "seconds": Metric("run time (s)", "seconds"),
    "steps_per_second": Metric("speed (steps per second)", "steps/s"),
    # An expert-parallel deployment (docs/model.md §10), final-window means; empty without one.
    "gpu_imbalance": Metric("GPU imbalance ratio ((max − mean) / mean load)", "GPU imbalance"),
    "slot_imbalance": Metric("slot imbalance ratio ((max − mean) / mean load)", "slot imbalance"),
    "node_imbalance": Metric("node imbalance ratio ((max − mean) / mean load)", "node imbalance"),
    "balancedness": Metric("balancedness (mean / max GPU load)", "balancedness", high=1.0),
    "step_time_ms": Metric("MoE step time (ms, slowest GPU per layer)", "step ms"),
    "compute_ms": Metric("expert compute per GPU (ms per step)", "compute ms"),
    "comm_ms": Metric("all-to-all time per GPU (ms per step)", "comm ms"),
    "idle_ms": Metric("idle per GPU, waiting for the slowest (ms per step)", "idle ms"),
    "step_efficiency": Metric("step efficiency (mean / max GPU busy time)", "efficiency", high=1.0),
    "imbalance_lost": Metric(
        "GPU time lost to imbalance (% of the step)", "lost to imbalance", True, high=1.0
    ),
    "intra_node_mb": Metric("NVLink MB sent per GPU per step", "NVLink MB"),
    "inter_node_mb": Metric("InfiniBand MB sent per GPU per step", "IB MB"),
    "rebalances": Metric("placements made (count)", "rebalances"),
    "experts_moved": Metric("experts moved between GPUs (count)", "experts moved"),
    "migration_gb": Metric("expert weights moved (GB)", "migration GB"),
}

#: Summary metrics of a run with several MoE layers only (docs/model.md §1.1): a single-layer
#: run's summary stays as moesim 0.1 wrote it. The metrics above are then means over the layers.
LAYER_METRICS = {
    "layers": Metric("MoE layers (count)", "layers"),
    "worst_layer": Metric("layer with the highest MaxVio_global (layer number)", "worst layer"),
    "max_vio_global_p50": Metric(
        "median over layers of MaxVio_global (max / mean load − 1)", "MaxVio global p50", log=True
    ),
    "max_vio_global_p90": Metric(
        "p90 over layers of MaxVio_global (max / mean load − 1)", "MaxVio global p90", log=True
    ),
    "max_vio_global_max": Metric(
        "worst layer's MaxVio_global (max / mean load − 1)", "MaxVio global max", log=True
    ),
    "co_routing": Metric(
        "P(share an expert in layer l+1 | shared one in l)", "co-routing", high=1.0
    ),
    "co_routing_independent": Metric(
        "P(share an expert in layer l+1), independent layers", "co-routing (indep.)", high=1.0
    ),
}

#: Summary metrics whose higher values are worse, and those whose lower values are: the worst
#: layer of each (results/layers.py). Counts, settings and timings have no worse side.
WORSE_WHEN_HIGHER = frozenset(
    {
        "max_vio_global",
        "mean_max_vio_batch",
        "final_max_vio_batch",
        "cv",
        "gini",
        "starved",
        "top10_share",
        "drop_rate",
        "token_drop_rate",
        "fully_dropped_rate",
        "final_drop_rate",
        "steps_to_balance",
        "bias_oscillation",
        "eval_loss",
        "eval_regret",
        "gpu_imbalance",
        "slot_imbalance",
        "node_imbalance",
        "step_time_ms",
        "idle_ms",
        "imbalance_lost",
    }
)
WORSE_WHEN_LOWER = frozenset(
    {"entropy", "fidelity", "quality", "quality_ratio", "balancedness", "step_efficiency"}
)

#: The numeric keys of the summary :func:`moesim.engine.summarize` builds, in its order: the
#: metrics a sweep can rank points by (``moesim sweep`` checks ``--metric`` against them before
#: anything runs). A test compares them with a real summary, so this table and the engine stay
#: in step.
SUMMARY_METRICS = tuple(METRICS)

#: Summary keys that are not metrics (they are columns already, or text).
NOT_METRICS = frozenset({"variant", "partial"})
#: Text keys of a run's summary: columns of sweep.csv, but nothing to rank points by.
TEXT_SUMMARY_KEYS = ("verdict", "verdict_reason")


def metric_problem(metric) -> tuple[str, str | None] | None:
    """What is wrong with ``metric`` as the metric that picks a sweep's best point, and a
    suggestion; None when it is one of :data:`SUMMARY_METRICS`.

    Shared by ``moesim sweep --metric`` and the scenario's validation of ``sweep.metric`` (which
    adds the file, line and column).
    """
    if metric in SUMMARY_METRICS or metric in LAYER_METRICS:
        return None
    if metric in NOT_METRICS or metric in TEXT_SUMMARY_KEYS:
        message = f"{metric!r} is not a number, so it cannot pick the best point"
    else:
        message = f"unknown metric {metric!r}"
    message += f" (metrics: {', '.join(SUMMARY_METRICS)})"
    return message, suggest(metric, SUMMARY_METRICS)


# ----------------------------------------------------------------------------------------------
# Swept parameters, the number format and the order of swept values

#: Scenario key paths that sweeps vary: (axis label with units, short name for legends).
PARAMETERS = {
    "balance.bias.rate": ("bias update rate u (bias units per update)", "u"),
    "balance.bias.every": ("steps per bias update (steps)", "bias every"),
    "balance.bias.rule": ("bias update rule", "rule"),
    "balance.bias.enabled": ("expert bias on", "bias"),
    "balance.aux.alpha": ("auxiliary-loss coefficient α", "α"),
    "balance.aux.z_loss": ("z-loss coefficient β", "β"),
    "balance.aux.kind": ("auxiliary loss", "aux"),
    "capacity.factor": ("capacity factor (× fair share T·K/E)", "capacity factor"),
    "capacity.policy": ("capacity overflow policy", "policy"),
    "router.score": ("score function", "score"),
    "router.algorithm": ("routing algorithm", "algorithm"),
    "router.input_jitter": ("input jitter ε", "jitter"),
    "balance.bias.mode": ("expert-bias mode", "bias mode"),
    "router.zero_init": ("W_g and W_noise start at zero", "zero init"),
    "router.top_k": ("experts per token K", "K"),
    "router.experts": ("routed experts E", "E"),
    "router.groups": ("expert groups G", "G"),
    "router.topk_groups": ("groups kept per token", "groups kept"),
    "router.init_skew": ("initial router skew", "skew"),
    "tokens.tokens_per_step": ("tokens per step T", "T"),
    "tokens.source": ("token source", "source"),
    "tokens.clusters": ("token domains C", "C"),
    "tokens.zipf_exponent": ("Zipf exponent s of the domain weights", "s"),
    "tokens.separation": ("domain separation", "separation"),
    "tokens.seq_coherence": ("sequence coherence", "coherence"),
    "learning.rate": ("router learning rate", "learning rate"),
    "learning.competence_tokens": ("tokens to competence (tokens)", "competence tokens"),
    "deployment.redundant_experts": ("redundant experts R", "R"),
    "deployment.rebalance_interval": ("steps between EPLB placements", "interval"),
    "deployment.rebalance_window": ("steps of loads per EPLB placement", "window"),
    "deployment.placement": ("expert placement", "placement"),
    "deployment.replica_choice": ("replica choice", "replica"),
    "deployment.nodes": ("nodes N", "nodes"),
    "deployment.gpus_per_node": ("GPUs per node", "GPUs/node"),
    "deployment.max_targets": ("nodes or devices per token M", "M"),
    "deployment.limit": ("routing limit", "limit"),
    "deployment.overlap": ("compute/communication overlap", "overlap"),
    "variant": ("variant", "variant"),
}


def metric_spec(name: str) -> Metric:
    """:data:`METRICS` entry of ``name``; an unknown metric is shown by name, range unknown."""
    return (
        METRICS.get(name)
        or LAYER_METRICS.get(name)
        or Metric(name.replace("_", " "), name, low=None)
    )


def parameter_label(key: str) -> str:
    """Axis label of a scenario key path (the key path itself when it is not in the table)."""
    return PARAMETERS[key][0] if key in PARAMETERS else key


def parameter_short(key: str) -> str:
    """Legend name of a scenario key path: ``u``, ``score``, ... (else its last part)."""
    return PARAMETERS[key][1] if key in PARAMETERS else key.rsplit(".", 1)[-1]


def format_number(value, digits: int = 3, *, scientific: bool = True) -> str:
    """One number for tables and legends: '-' for missing, ``digits`` decimals, thousands
    separated; a value too small for them in scientific notation (``1.20e-04``), unless not
    ``scientific`` (a terminal table keeps its columns narrow: ``0.000``)."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    value = float(value)
    if not math.isfinite(value):
        return "-"
    if scientific and value != 0 and abs(value) < 10 ** (-digits + 1) / 10:
        return f"{value:.{max(1, digits - 1)}e}"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def format_metric(name: str, value, digits: int | None = None, *, scientific: bool = True) -> str:
    """A value of summary metric ``name`` for a table, in the metric's units: a fraction shown
    in % (``0.1234`` -> ``'12.34%'``) when :attr:`Metric.percent`, else as
    :func:`format_number` shows it (``digits`` and ``scientific`` are passed on).

    ``digits`` are the decimals shown: by default 3, and 2 for a percentage.
    """
    if not metric_spec(name).percent:
        return format_number(value, 3 if digits is None else digits, scientific=scientific)
    try:
        percent = 100 * float(value)
    except (TypeError, ValueError):
        return "-"
    text = format_number(percent, 2 if digits is None else digits, scientific=scientific)
    return text if text == "-" else f"{text}%"


def format_value(value) -> str:
    """A swept parameter's value for legends and tables: ``none``, whole numbers without a
    decimal point (``2``, not ``2.0``), else 4 significant digits; text as it is."""
    if value is None:
        return "none"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def sort_key(value) -> tuple:
    """One order for swept values everywhere (tables, CSV files, figures, the report): numbers
    by value, then text, then missing values (None, NaN) last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    if isinstance(value, (bool, int, float)) or hasattr(value, "__float__"):
        try:
            return (0, float(value), "")
        except (TypeError, ValueError):
            pass
    return (1, 0.0, str(value))
