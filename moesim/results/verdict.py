"""The verdict on a run: ``collapsed``, ``balanced`` or ``imbalanced``, with its reason; or
``diverged`` when its state stopped being finite (no routing verdict can be read from it).

A result concept, judged from a run's summary metrics (docs/model.md §6) and the thresholds of
the scenario's ``metrics`` section; the engine puts both in ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Every verdict a summary can hold, from best to worst; ``no data`` when no step finished;
#: ``diverged`` when the run stopped because its state overflowed to inf or NaN.
VERDICTS = ("balanced", "imbalanced", "collapsed", "no data", "diverged")


def diverged_verdict(step: int, what: str) -> tuple[str, str]:
    """The verdict on a run stopped at step ``step`` because ``what`` was not finite."""
    return "diverged", (
        f"stopped at step {step}: {what} became inf or NaN (a numerical overflow, not a routing "
        "outcome); lower learning.rate or the aux loss weights (balance.aux)"
    )


def verdict(summary: Mapping, thresholds, n_experts: int) -> tuple[str, str]:
    """The verdict on a run and its reason, in words with the numbers that decided it.

    Collapsed: MaxVio_global above ``collapse_max_vio``, or more than
    ``collapse_starved_fraction`` of the experts starved. Balanced: MaxVio_global below
    ``balanced_max_vio`` with no expert starved. Imbalanced: anything in between; its reason
    also says when the looser steps-to-balance bar was met, so the two do not read as a
    contradiction.

    Parameters
    ----------
    summary : mapping
        A run's summary metrics; reads ``steps_done``, ``max_vio_global``, ``starved``,
        ``steps_to_balance``, ``balance_window`` and ``balance_threshold``.
    thresholds
        The scenario's ``metrics`` section: ``collapse_max_vio``, ``collapse_starved_fraction``
        and ``balanced_max_vio``.
    n_experts : int
        Experts of the router (the starved fraction's denominator).

    Returns
    -------
    (str, str)
        One of :data:`VERDICTS`, and its reason.
    """
    max_vio_global = summary["max_vio_global"]
    starved = summary["starved"]
    balanced_bar = thresholds.balanced_max_vio
    if not summary["steps_done"]:
        return "no data", "no step finished"
    if max_vio_global > thresholds.collapse_max_vio:
        return "collapsed", f"MaxVio_global {max_vio_global:.2f} > {thresholds.collapse_max_vio:g}"
    if starved > thresholds.collapse_starved_fraction * n_experts:
        return "collapsed", (
            f"{starved} of {n_experts} experts starved "
            f"(> {thresholds.collapse_starved_fraction:.0%})"
        )
    if max_vio_global < balanced_bar and starved == 0:
        return "balanced", (
            f"MaxVio_global {max_vio_global:.3f} < {balanced_bar:g} "
            f"(metrics.balanced_max_vio), none starved"
        )
    reason = (
        f"MaxVio_global {max_vio_global:.3f}"
        + (
            f" >= {balanced_bar:g} (metrics.balanced_max_vio)"
            if max_vio_global >= balanced_bar
            else ""
        )
        + f", {starved} starved"
    )
    steps_to_balance = summary["steps_to_balance"]
    if steps_to_balance is not None:
        # Two different bars: say why "balanced at step N" and "imbalanced" do not contradict.
        reason += (
            f"; balanced from step {steps_to_balance} by the looser steps-to-balance bar "
            f"(MaxVio of the trailing {summary['balance_window']} steps < "
            f"{summary['balance_threshold']:g}, metrics.balance_threshold)"
        )
    return "imbalanced", reason
