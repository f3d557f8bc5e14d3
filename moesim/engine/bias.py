"""Loss-free balancing (docs/model.md §4): the expert bias and its update schedule."""

from __future__ import annotations

import numpy as np

from moesim.kernels.balance import RULE_CODES, _bias_update


def bias_rate_at(bias_config, step: int, steps: int) -> float:
    """Bias update rate at ``step`` under the configured schedule (docs/model.md §4)."""
    rate = bias_config.rate
    schedule = bias_config.schedule
    if schedule == "freeze":
        return rate if step < bias_config.freeze_at * steps else 0.0
    if schedule == "warmup" and bias_config.warmup_steps > 0:
        return rate * min(1.0, (step + 1) / bias_config.warmup_steps)
    if schedule == "decay" and bias_config.warmup_steps > 0:
        decay_start = steps - bias_config.warmup_steps
        if step >= decay_start:
            return rate * max(0.0, 1.0 - (step - decay_start + 1) / bias_config.warmup_steps)
    return rate


class BiasBalancer:
    """The expert bias ``b`` and the loads it is updated from; inert when the bias is off.

    Loads are summed over ``balance.bias.every`` steps (kept or demanded assignments, as
    ``balance.bias.counts`` says), then one update moves ``b`` in place at the scheduled rate.

    Attributes
    ----------
    bias : ndarray (E,) float32
        The bias the router adds to (``mode: additive``) or multiplies (``multiplicative``)
        its scores by for selection; updated in place.
    enabled : bool
        ``balance.bias.enabled``: whether the router adds the bias at all.
    """

    def __init__(self, scenario):
        self.config = scenario.balance.bias
        self.enabled = bool(self.config.enabled)
        self.steps = scenario.steps
        self.rule_code = RULE_CODES[self.config.rule]
        n_experts = scenario.router.experts
        # An additive bias starts at 0, a multiplicative one at 1 (Loss-Free Table 4).
        start = 1.0 if self.config.mode == "multiplicative" else 0.0
        self.bias = np.full(n_experts, start, dtype=np.float32)
        self.window_counts = np.zeros(n_experts, dtype=np.int64)

    def update(self, step: int, routed) -> None:
        """Count the loads of a routed step; at the end of an update window, update the bias."""
        if not self.enabled:
            return
        config = self.config
        self.window_counts += routed.kept if config.counts == "kept" else routed.demand
        if (step + 1) % config.every == 0:
            rate = bias_rate_at(config, step, self.steps)
            if rate > 0:
                _bias_update(
                    self.bias, self.window_counts, rate, self.rule_code, config.center, self.bias
                )
            self.window_counts[:] = 0
