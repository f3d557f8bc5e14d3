"""What the engine measures as it runs: the counters of one variant and its recorded history.

Steps are counted in three windows at once (docs/model.md §6):

- the record window, the steps since the last recorded row: summed per-expert loads, drops and
  the cluster-by-expert counts behind specialization, written as one history row and reset;
- the final window, the last ``metrics.window`` steps: the loads behind MaxVio_global and the
  verdict, and the range of the bias behind its oscillation;
- the trailing balance window, the last ``metrics.balance_window`` steps: steps to balance.

Memory grows with the number of records, not of steps.
"""

from __future__ import annotations

import math

import numpy as np

from moesim._jit import n_chunks_for
from moesim.engine.summary import bias_oscillation, summarize
from moesim.kernels.metrics import (
    EXPERT_COUNT_BINS,
    _assignment_counts,
    _experts_per_token_histogram,
    _top_k_overlap,
    load_stats,
    max_vio_noise_floor,
    specialization,
)
from moesim.kernels.routing import RouterSpec, _route_chunks
from moesim.kernels.step import NO_CAPACITY
from moesim.results.metrics import HISTORY_COLUMNS
from moesim.results.model import VariantResult
from moesim.scenario import record_every_for

#: Tokens of a recorded step on which routing fidelity is measured.
FIDELITY_TOKENS = 1024
#: History columns a replayed load trace cannot give (it holds per-expert counts, not routed
#: tokens): drops, the bias and its fidelity, token domains, experts per token.
NOT_REPLAYED_COLUMNS = (
    "drop_rate",
    "token_drop_rate",
    "fully_dropped_rate",
    "padding_waste",
    "bias_min",
    "bias_mean",
    "bias_max",
    "fidelity",
    "specialization",
    "no_expert_share",
)


def final_window_for(scenario) -> int:
    """Steps in the final window (``metrics.window`` or the last 10% of the run)."""
    chosen = scenario.metrics.window
    return min(scenario.steps, int(chosen) if chosen else max(1, scenario.steps // 10))


class TrailingBalance:
    """Steps to balance, judged on the loads summed over a short trailing window.

    One batch's MaxVio has a sampling floor (and sequences make it larger), which a threshold
    should not chase: the run is balanced from the first step after which the MaxVio of the
    last ``metrics.balance_window`` steps' loads stays below ``metrics.balance_threshold``.
    """

    def __init__(self, steps: int, metrics, n_experts: int):
        self.window = min(steps, metrics.balance_window)
        self.threshold = metrics.balance_threshold
        self.loads = np.zeros((self.window, n_experts), dtype=np.int64)  # a ring of steps
        self.total = np.zeros(n_experts, dtype=np.int64)
        self.last_unbalanced = -1

    def update(self, step: int, demand: np.ndarray) -> None:
        """Add step ``step``'s demand (E,) and drop the step that leaves the window."""
        slot = step % self.window
        self.total += demand - self.loads[slot]
        self.loads[slot] = demand
        max_vio = self.total.max() / self.total.mean() - 1.0
        if step + 1 < self.window or max_vio >= self.threshold:
            self.last_unbalanced = step

    def steps_to_balance(self, steps_done: int) -> int | None:
        """The step from which the run stayed balanced, or None if it never did."""
        balanced_from = self.last_unbalanced + 1
        return balanced_from if steps_done and balanced_from < steps_done else None


class BiasRange:
    """The range of every expert's bias over the final window, for :func:`bias_oscillation`.

    Needs only running extremes and the bias at the window's first step, not its history.
    """

    def __init__(self, n_experts: int, first_step: int):
        self.first_step = first_step  # the final window's
        self.low = np.full(n_experts, np.inf)
        self.high = np.full(n_experts, -np.inf)
        self.start = np.zeros(n_experts, dtype=np.float32)

    def update(self, step: int, bias: np.ndarray) -> None:
        """Take in the bias (E,) after step ``step``'s update."""
        if step == self.first_step:
            self.start[:] = bias
        if step >= self.first_step:
            np.minimum(self.low, bias, out=self.low)
            np.maximum(self.high, bias, out=self.high)

    def oscillation(self, end: np.ndarray) -> float:
        """Oscillation amplitude of the window that ends with bias ``end`` (E,)."""
        return bias_oscillation(self.low, self.high, self.start, end)


class FidelityProbe:
    """Routing fidelity: the share of the biased top-K that the scores alone would choose.

    Measured on the first :data:`FIDELITY_TOKENS` tokens of a recorded step: 1024 tokens pin
    the overlap to about 1%, without routing the whole batch twice.
    """

    def __init__(self, n_tokens: int, spec: RouterSpec, n_experts: int):
        self.spec = spec
        self.n_experts = n_experts
        self.tokens = min(n_tokens, FIDELITY_TOKENS)
        self.indices = np.empty((self.tokens, spec.top_k), dtype=np.int64)
        self.weights = np.empty((self.tokens, spec.top_k), dtype=np.float32)
        self.chunk_counts = np.zeros((n_chunks_for(self.tokens), n_experts), dtype=np.int64)

    def measure(self, logits: np.ndarray, bias: np.ndarray, indices: np.ndarray) -> float:
        """Overlap of ``indices`` (T, K), chosen with ``bias``, and the unbiased choice."""
        if self.weights.dtype != logits.dtype:
            self.weights = self.weights.astype(logits.dtype)
        # The same router without the bias: what the scores alone would choose.
        self.chunk_counts[:] = 0
        _route_chunks(
            logits[: self.tokens],
            bias,
            False,
            self.spec,
            self.indices,
            self.weights,
            self.chunk_counts,
        )
        return _top_k_overlap(indices[: self.tokens], self.indices, self.n_experts)


class Recorder:
    """The running counters of one variant, its history rows and its final-window totals.

    ``update`` counts every step, ``track_bias`` follows the bias, ``record`` writes a history
    row at the end of each record window, and ``result`` closes the run and summarizes it
    (:func:`~moesim.engine.summary.summarize` reads the attributes below).

    Attributes
    ----------
    history : dict[str, ndarray (R,)]
        One row per record window, columns :data:`HISTORY_COLUMNS`; trimmed to the rows
        written when the run closes.
    record_kept, record_demand : ndarray (R, E) int64
        Kept / demanded assignments per expert summed over each record window.
    window_demand, window_kept : ndarray (E,) int64
        The same sums over the open record window (reset by ``record``).
    steps_done : int
        Steps finished, set when the run closes.
    max_vio_sum, final_max_vio_sum : float
        Sums of the per-step MaxVio over the run and over the final window
        (``final_max_vio_steps`` steps of it).
    run_drops, final_drops : ndarray (3,) int64
        Dropped assignments, tokens with a dropped assignment, fully dropped tokens.
    final_loads : ndarray (E,) int64
        Demand per expert summed over the final window (``final_window_steps`` steps).
    balance : TrailingBalance
        Steps to balance.
    oscillation : float or None
        Bias oscillation over the final window, once the run closes (None without a bias).
    diverged : (int, str) or None
        The step at which the state stopped being finite and what was not, or None.
    """

    def __init__(self, scenario, spec: RouterSpec, capacity: int, n_clusters: int):
        self.scenario = scenario
        self.steps = scenario.steps
        self.n_tokens = scenario.tokens.tokens_per_step
        self.n_experts = n_experts = scenario.router.experts
        self.top_k = spec.top_k
        self.capacity = capacity
        self.padded = capacity != NO_CAPACITY and scenario.capacity.pad_to_capacity
        self.starved_fraction = scenario.metrics.starved_fraction
        # The mean load of a step, the unit of MaxVio: max load / mean load - 1.
        self.mean_load = self.n_tokens * spec.top_k / n_experts
        self.noise_floor = max_vio_noise_floor(self.n_tokens, spec.top_k, n_experts)
        # A replayed load trace (docs/model.md §10.8): each step's own mean load is the unit,
        # its batch size being the trace's, and nothing token-level is measured.
        deployment = scenario.deployment
        self.replayed = bool(deployment.enabled and deployment.load_trace is not None)
        if self.replayed:
            self.noise_floor = math.nan
        has_bias = bool(scenario.balance.bias.enabled)
        self.record_every = record_every_for(scenario)
        self.final_window = final_window_for(scenario)
        self.final_start = self.steps - self.final_window

        # The history: one row per record window.
        n_records = math.ceil(self.steps / self.record_every)
        self.history = {column: np.full(n_records, np.nan) for column in HISTORY_COLUMNS}
        self.record_kept = np.zeros((n_records, n_experts), dtype=np.int64)
        self.record_demand = np.zeros((n_records, n_experts), dtype=np.int64)
        self.record_bias = np.zeros((n_records, n_experts), dtype=np.float32)
        self.records_done = 0
        # The open record window.
        self.window_demand = np.zeros(n_experts, dtype=np.int64)
        self.window_kept = np.zeros(n_experts, dtype=np.int64)
        self.window_drops = np.zeros(3, dtype=np.int64)  # assignments, tokens with any, fully
        self.joint = np.zeros((n_clusters, n_experts), dtype=np.int64)  # cluster x expert
        self.n_clusters = n_clusters
        # The whole run and its final window.
        self.steps_done = 0
        self.max_vio = math.nan  # of the last step
        self.max_vio_sum = 0.0
        self.run_drops = np.zeros(3, dtype=np.int64)
        self.final_loads = np.zeros(n_experts, dtype=np.int64)
        self.final_drops = np.zeros(3, dtype=np.int64)
        self.final_max_vio_sum = 0.0
        self.final_max_vio_steps = 0
        self.final_window_steps = 0
        self.oscillation: float | None = None
        self.diverged: tuple[int, str] | None = None  # (step, what was not finite)
        # Tokens with 0, 1, 2, >= 3 kept experts: in the record window and the final window.
        self.window_expert_counts = np.zeros(EXPERT_COUNT_BINS, dtype=np.int64)
        self.final_expert_counts = np.zeros(EXPERT_COUNT_BINS, dtype=np.int64)
        # Expert choice gives tokens rows of unequal length: an unused slot is not a drop.
        self.expert_choice = scenario.router.algorithm == "expert_choice"
        self.balance = TrailingBalance(self.steps, scenario.metrics, n_experts)
        self.bias_range = BiasRange(n_experts, self.final_start) if has_bias else None
        measure_fidelity = has_bias and scenario.metrics.fidelity
        self.fidelity = FidelityProbe(self.n_tokens, spec, n_experts) if measure_fidelity else None

    def update(self, step: int, routed, clusters: np.ndarray) -> None:
        """Count a routed step (a ``RoutingStep``) in every window it belongs to.

        ``clusters`` (T,) are the tokens' domains, for the cluster-by-expert counts.
        """
        demand, kept = routed.demand, routed.kept
        any_dropped, all_dropped = _assignment_counts(
            routed.indices, routed.keep, clusters, self.joint
        )
        if self.expert_choice:
            any_dropped = all_dropped  # a dropped token is one that no expert took
        _experts_per_token_histogram(routed.keep, self.window_expert_counts)
        drops = np.array([demand.sum() - kept.sum(), any_dropped, all_dropped], dtype=np.int64)
        self.window_drops += drops
        self.run_drops += drops
        self.window_demand += demand
        self.window_kept += kept
        self.max_vio = demand.max() / self._mean_load(demand) - 1.0
        self.max_vio_sum += self.max_vio
        self.balance.update(step, demand)
        if step >= self.final_start:
            self.final_loads += demand
            self.final_drops += drops
            self.final_max_vio_sum += self.max_vio
            self.final_max_vio_steps += 1
            _experts_per_token_histogram(routed.keep, self.final_expert_counts)

    def _mean_load(self, demand: np.ndarray) -> float:
        """The unit of MaxVio: T*K/E, or a replayed step's own mean load."""
        return demand.mean() if self.replayed else self.mean_load

    def diverge(self, step: int, what: str) -> None:
        """Note that step ``step`` could not run: ``what`` is not finite (the run stops)."""
        self.diverged = (step, what)

    def track_bias(self, step: int, bias: np.ndarray) -> None:
        """Follow the bias (E,) after step ``step``'s update (nothing when the bias is off)."""
        if self.bias_range is not None:
            self.bias_range.update(step, bias)

    def is_record_step(self, step: int) -> bool:
        """Whether step ``step`` ends a record window (every ``record_every`` and the last)."""
        return (step + 1) % self.record_every == 0 or step == self.steps - 1

    def record(
        self, step: int, routed, logits: np.ndarray, bias: np.ndarray, learned: dict
    ) -> None:
        """Write the history row of step ``step`` and start a new record window.

        ``learned`` holds the learner's measurements of the step (quality, losses).
        """
        r = self.records_done
        row = {
            **learned,
            "step": step,
            **self._balance_columns(routed),
            **self._drop_columns(step + 1 - r * self.record_every),
            "bias_min": bias.min(),
            "bias_mean": bias.mean(),
            "bias_max": bias.max(),
            "fidelity": (
                1.0
                if self.fidelity is None
                else self.fidelity.measure(logits, bias, routed.indices)
            ),
            "specialization": specialization(self.joint) if self.n_clusters > 1 else np.nan,
            "no_expert_share": self.window_expert_counts[0] / self.window_expert_counts.sum(),
        }
        if self.replayed:
            row.update(dict.fromkeys(NOT_REPLAYED_COLUMNS, np.nan))
        for column, value in row.items():
            self.history[column][r] = value
        self.record_kept[r] = self.window_kept
        self.record_demand[r] = self.window_demand
        self.record_bias[r] = bias
        self.records_done += 1
        self.window_demand[:] = 0
        self.window_kept[:] = 0
        self.window_drops[:] = 0
        self.window_expert_counts[:] = 0
        self.joint[:] = 0

    def _balance_columns(self, routed) -> dict:
        """MaxVio of the step and of the record window, and the step's load statistics."""
        stats = load_stats(routed.demand, self.starved_fraction)
        return {
            "max_vio_batch": self.max_vio,
            "max_vio_window": self.window_demand.max() / self.window_demand.mean() - 1.0,
            **{key: stats[key] for key in ("cv", "entropy", "gini", "starved", "top10_share")},
            "max_vio_batch_kept": routed.kept.max() / self._mean_load(routed.kept) - 1.0,
        }

    def _drop_columns(self, window_steps: int) -> dict:
        """Drop rates and padding waste over the ``window_steps`` steps of the record window."""
        tokens = window_steps * self.n_tokens
        if self.padded:
            slots = window_steps * self.n_experts * self.capacity
            padding_waste = 1.0 - self.window_kept.sum() / slots
        else:
            padding_waste = 0.0
        return {
            "drop_rate": self.window_drops[0] / (tokens * self.top_k),
            "token_drop_rate": self.window_drops[1] / tokens,
            "fully_dropped_rate": self.window_drops[2] / tokens,
            "padding_waste": padding_waste,
        }

    def result(
        self, name: str, steps_done: int, *, partial: bool, bias: np.ndarray, seconds: float
    ) -> VariantResult:
        """Close the run after ``steps_done`` steps and return its result, summary included.

        ``bias`` (E,) is the final bias; ``partial`` says the run was stopped early.
        """
        self._close(steps_done, bias)
        summary = summarize(
            self.scenario,
            self,
            name=name,
            # A diverged run ended where it could go no further: finished, not interrupted.
            partial=partial or (steps_done < self.steps and self.diverged is None),
            seconds=seconds,
        )
        done = self.records_done
        return VariantResult(
            name=name,
            scenario=self.scenario,
            summary=summary,
            history=self.history,
            loads=self.record_kept[:done].copy(),
            demand=self.record_demand[:done].copy(),
            bias=self.record_bias[:done].copy(),
            final_loads=self.final_loads,
            final_bias=bias.copy(),
            partial=summary["partial"],
        )

    def _close(self, steps_done: int, bias: np.ndarray) -> None:
        """Trim the history to the rows written and settle the final window's totals."""
        done = self.records_done
        self.steps_done = steps_done
        self.history = {column: values[:done].copy() for column, values in self.history.items()}
        final_steps = steps_done - self.final_start
        if final_steps <= 0:
            # Interrupted before the final window: use the steps not yet recorded plus the last
            # recorded windows instead.
            last_records = max(1, math.ceil(self.final_window / self.record_every))
            self.final_loads = (
                self.record_demand[:done][-last_records:].sum(axis=0) + self.window_demand
            )
            final_steps = min(done, last_records) * self.record_every + (
                steps_done - done * self.record_every
            )
        self.final_window_steps = final_steps
        if self.bias_range is not None and steps_done > self.final_start:
            self.oscillation = self.bias_range.oscillation(bias)
