"""A variant's summary: the run-level metrics of docs/model.md §6 and the verdict.

Read from the engine's :class:`~moesim.engine.recorder.Recorder` at the end of a run; the keys
and their order are :data:`moesim.results.metrics.SUMMARY_METRICS` (plus the text keys).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels.metrics import load_stats
from moesim.results.verdict import diverged_verdict, verdict


def bias_oscillation(low, high, start, end) -> float:
    """Bias oscillation amplitude over the final window, without its drift (docs/model.md §6).

    Per expert, the range of the bias over the window less the size of its net change,
    ``(max - min) - |end - start|``, averaged over experts. A bias that only moves one way (a
    slow rate still converging) gives 0; one that swings back and forth gives its swings. Needs
    only running extremes and the two end values, not the window's history.

    Parameters
    ----------
    low, high : ndarray (E,)
        Smallest and largest bias of each expert over the window.
    start, end : ndarray (E,)
        Bias at the window's first and last step.
    """
    # float64: the differences of float32 values are exact, so no expert goes below 0.
    extent = np.asarray(high, np.float64) - np.asarray(low, np.float64)
    net = np.abs(np.asarray(end, np.float64) - np.asarray(start, np.float64))
    return float((extent - net).mean())


def summarize(scenario, recorder, *, name: str, partial: bool, seconds: float) -> dict:
    """Per-run summary: MaxVio_global, balance, drops, quality and the verdict with its reason.

    Parameters
    ----------
    scenario : Scenario
        The variant's resolved scenario (its ``metrics`` thresholds judge the run).
    recorder : Recorder
        The closed recorder of the run (its totals, final window and trimmed history).
    name : str
        The variant's name.
    partial : bool
        Whether the run was stopped before its last step.
    seconds : float
        Wall time of the run.
    """
    steps_done = recorder.steps_done
    nan = float("nan")
    summary = {
        "variant": name,
        "steps": scenario.steps,
        "steps_done": steps_done,
        "partial": bool(partial),
        **_balance_metrics(recorder, scenario.metrics.starved_fraction),
        **_drop_metrics(recorder),
        "steps_to_balance": recorder.balance.steps_to_balance(steps_done),
        "balance_threshold": recorder.balance.threshold,
        "balance_window": int(recorder.balance.window),
        "bias_oscillation": recorder.oscillation if recorder.oscillation is not None else nan,
        "fidelity": _late_mean(recorder.history["fidelity"]),
        "specialization": _late_mean(recorder.history["specialization"]),
        "quality": _late_mean(recorder.history["quality"]),
        "quality_ratio": _late_mean(recorder.history["quality_ratio"]),
        "eval_loss": _late_mean(recorder.history["eval_loss"]),
        "eval_regret": _late_mean(recorder.history["eval_regret"]),
        **_expert_count_shares(recorder.final_expert_counts),
        "batch_dependence": _late_mean(recorder.history["batch_dependence"]),
        "sinkhorn_iterations": _late_mean(recorder.history["sinkhorn_iterations"]),
        "final_window_steps": int(recorder.final_window_steps),
        "verdict": None,
        "verdict_reason": None,
        "seconds": seconds,
        "steps_per_second": steps_done / seconds if seconds > 0 else nan,
    }
    if recorder.diverged is not None:
        summary["verdict"], summary["verdict_reason"] = diverged_verdict(*recorder.diverged)
    else:
        summary["verdict"], summary["verdict_reason"] = verdict(
            summary, scenario.metrics, scenario.router.experts
        )
    return summary


def _late_mean(values: np.ndarray) -> float:
    """Mean of the last tenth (at least one) of the finite recorded values; NaN if none."""
    finite = values[np.isfinite(values)]
    return float(finite[-max(1, len(finite) // 10) :].mean()) if len(finite) else float("nan")


def _expert_count_shares(counts: np.ndarray) -> dict:
    """Shares of tokens with 0, 1, 2 and 3 or more kept experts, from their counts (4,)."""
    total = counts.sum()
    shares = counts / total if total else np.full(counts.shape, np.nan)
    names = ("no_expert_share", "one_expert_share", "two_experts_share", "more_experts_share")
    return {name: float(share) for name, share in zip(names, shares, strict=True)}


def _balance_metrics(recorder, starved_fraction: float) -> dict:
    """MaxVio_global and the load statistics of the final window, the per-batch MaxVio means."""
    stats = load_stats(recorder.final_loads, starved_fraction)
    steps_done = recorder.steps_done
    return {
        "max_vio_global": stats["max_vio"],
        "mean_max_vio_batch": recorder.max_vio_sum / steps_done if steps_done else float("nan"),
        # A run stopped before its final window has no step there: fall back on the records.
        "final_max_vio_batch": (
            recorder.final_max_vio_sum / recorder.final_max_vio_steps
            if recorder.final_max_vio_steps
            else _late_mean(recorder.history["max_vio_batch"])
        ),
        "max_vio_noise_floor": recorder.noise_floor,
        "cv": stats["cv"],
        "entropy": stats["entropy"],
        "gini": stats["gini"],
        "starved": int(stats["starved"]) if np.isfinite(stats["starved"]) else 0,
        "top10_share": stats["top10_share"],
    }


def _drop_metrics(recorder) -> dict:
    """Drop rates over the run and the final window, and the capacity (None without one)."""
    steps_done = recorder.steps_done
    nan = float("nan")
    tokens = steps_done * recorder.n_tokens
    final_assignments = recorder.final_window_steps * recorder.n_tokens * recorder.top_k
    run_drops, final_drops = recorder.run_drops, recorder.final_drops
    if recorder.replayed:  # a replayed load trace records no drops
        rates = ("drop_rate", "token_drop_rate", "fully_dropped_rate", "final_drop_rate")
        return {**dict.fromkeys(rates, nan), "capacity": None}
    return {
        "drop_rate": run_drops[0] / (tokens * recorder.top_k) if steps_done else nan,
        "token_drop_rate": run_drops[1] / tokens if steps_done else nan,
        "fully_dropped_rate": run_drops[2] / tokens if steps_done else nan,
        "final_drop_rate": (
            final_drops[0] / final_assignments if recorder.final_window_steps else nan
        ),
        "capacity": None if recorder.capacity < 0 else int(recorder.capacity),
    }
