"""The engine: the closed loop of docs/model.md run step by step, and whole scenarios run.

- :mod:`~moesim.engine.loop`: :func:`simulate_variant`, the step loop of one variant.
- :mod:`~moesim.engine.router`: the scenario's router as the kernels take it, its capacity and
  its initial centroids.
- :mod:`~moesim.engine.bias`: loss-free balancing, the expert bias and its schedule.
- :mod:`~moesim.engine.learner`: :class:`RouterLearner`, router learning.
- :mod:`~moesim.engine.recorder`: :class:`Recorder`, the running counters and the history.
- :mod:`~moesim.engine.summary`: :func:`summarize`, a variant's summary metrics and verdict.
- :mod:`~moesim.engine.run`: :func:`simulate` (every variant, in memory) and
  :func:`run_scenario` (every variant, into a results folder).
"""

from moesim import tokens as token_stream  # the loop's token source (tests replace generate)
from moesim.engine.bias import BiasBalancer, bias_rate_at
from moesim.engine.learner import RouterLearner
from moesim.engine.loop import simulate_variant
from moesim.engine.recorder import FIDELITY_TOKENS, Recorder, final_window_for
from moesim.engine.router import capacity_for, initial_centroids, router_spec_for
from moesim.engine.run import run_scenario, simulate
from moesim.engine.summary import bias_oscillation, summarize

__all__ = [
    "FIDELITY_TOKENS",
    "BiasBalancer",
    "Recorder",
    "RouterLearner",
    "bias_oscillation",
    "bias_rate_at",
    "capacity_for",
    "final_window_for",
    "initial_centroids",
    "router_spec_for",
    "run_scenario",
    "simulate",
    "simulate_variant",
    "summarize",
    "token_stream",
]
