"""The routing box of the loop for every ``router.algorithm`` (docs/model.md §2-§3).

:class:`StepRouter` makes the router's input (the input jitter, §2.2), routes a step with top-K,
expert choice (§2.3) or Sinkhorn routing (§2.4) and its capacity, and measures how much a
token's experts depend on the rest of its batch (the batch-dependence probe, §6).
"""

from __future__ import annotations

import math

import numpy as np

from moesim.kernels.expert_choice import (
    _expert_sets_changed,
    expert_choice_bucket,
    run_expert_choice,
)
from moesim.kernels.jitter import run_input_jitter
from moesim.kernels.routing import RouterSpec
from moesim.kernels.sinkhorn import run_sinkhorn
from moesim.kernels.step import RoutingStep, finish_routing_step, run_routing_step

#: Algorithms whose choice for a token depends on the other tokens of its batch.
BATCH_DEPENDENT = ("expert_choice", "sinkhorn")


def jitter_key_for(seed: int, layer: int = 0) -> np.uint64:
    """The key of a layer's input-jitter streams: a stream of its own from the scenario's seed
    (the other streams' keys are the seed's first children; this one is out of their way)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(0x6A17, layer))
    return np.uint64(sequence.generate_state(1, np.uint64)[0])


class StepRouter:
    """Routes one step as ``router.algorithm`` says; keeps what the batch probe needs.

    Attributes
    ----------
    sinkhorn_iterations : float
        Iterations of the last Sinkhorn balancing (NaN for the other algorithms).
    """

    def __init__(
        self, scenario, spec: RouterSpec, capacity: int, policy_code: int, *, layer: int = 0
    ):
        router = scenario.router
        self.algorithm = router.algorithm
        self.spec = spec
        self.capacity = capacity
        self.policy_code = policy_code
        self.n_experts = router.experts
        self.jitter = router.input_jitter
        self.jitter_key = jitter_key_for(scenario.seed, layer)
        self.bucket = 0
        if self.algorithm == "expert_choice":
            self.bucket = expert_choice_bucket(
                scenario.tokens.tokens_per_step,
                spec.top_k,
                router.experts,
                scenario.capacity.factor,
            )
        self.sinkhorn_iterations = math.nan
        self.previous_tail: np.ndarray | None = None  # logits of the last batch's second half

    def router_input(self, tokens: np.ndarray, step: int) -> np.ndarray:
        """What the router sees of ``tokens`` (T, d) at ``step``: jittered when eps > 0."""
        if self.jitter == 0:
            return tokens
        return run_input_jitter(tokens, self.jitter_key, step, self.jitter)

    def route(self, logits: np.ndarray, bias: np.ndarray, has_bias: bool) -> RoutingStep:
        """Route a step's ``logits`` (T, E): indices, gates, kept mask and loads."""
        if self.algorithm in BATCH_DEPENDENT:
            self.previous_tail = logits[logits.shape[0] // 2 :].copy()
        if self.algorithm == "expert_choice":
            indices, weights, keep, _ = run_expert_choice(logits, self.bucket)
            loads = np.full(self.n_experts, self.bucket, dtype=np.int64)
            return RoutingStep(indices, weights, keep, loads, loads.copy())
        if self.algorithm == "sinkhorn":
            indices, weights, chunk_counts, self.sinkhorn_iterations = run_sinkhorn(
                logits, self.spec.top_k
            )
            return finish_routing_step(
                indices, weights, chunk_counts, self.capacity, self.policy_code
            )
        return run_routing_step(logits, bias, has_bias, self.spec, self.capacity, self.policy_code)

    def batch_dependence(self, logits: np.ndarray, routed: RoutingStep, tail) -> float:
        """Share of the first half of the batch whose experts change when the second half is
        replaced by ``tail``, the previous batch's second half (docs/model.md §6).

        Experts are compared as sets, before any capacity drop; NaN for top-K routing (no
        dependence by construction) or without a previous batch.
        """
        half = logits.shape[0] // 2
        if self.algorithm not in BATCH_DEPENDENT or tail is None or half == 0:
            return math.nan
        probe = np.concatenate([logits[:half], tail])
        if self.algorithm == "expert_choice":
            indices, _, keep, _ = run_expert_choice(probe, self.bucket)
            before_keep = routed.keep[:half]
        else:
            indices, _, _, _ = run_sinkhorn(probe, self.spec.top_k)
            keep = np.ones(indices.shape, dtype=np.bool_)
            before_keep = keep[:half]
        return float(
            _expert_sets_changed(
                routed.indices[:half], before_keep, indices[:half], keep[:half], self.n_experts
            )
        )
