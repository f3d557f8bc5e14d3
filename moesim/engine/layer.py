"""One MoE layer of the model: its router, bias, learner and counters (docs/model.md §1.1).

Every layer has state of its own (centroids ``W``, bias ``b``, the learner's windows and the
recorder's counters), built from the layer's own resolved scenario (the scenario with the
layer's settings applied, :func:`moesim.scenario.layer_scenarios`). The step loop
(:mod:`moesim.engine.loop`) routes each layer in turn on the inputs the token paths give it.
"""

from __future__ import annotations

import numpy as np

from moesim.engine.algorithms import StepRouter
from moesim.engine.bias import BiasBalancer
from moesim.engine.deployment import DeploymentTracker, limited_router_spec
from moesim.engine.learner import RouterLearner
from moesim.engine.recorder import Recorder
from moesim.engine.router import (
    capacity_for,
    initial_centroids,
    noisy_gate_for,
    router_spec_for,
)
from moesim.kernels.capacity import POLICY_CODES
from moesim.kernels.routing import router_logits


def non_finite_state(logits: np.ndarray, bias: np.ndarray) -> str | None:
    """What is not finite (inf or NaN) before routing a step: the logits or the bias; or None.

    Logits are the tokens times the centroids, so overflowing centroids (a learning rate or
    z-loss far too large) or tokens show here. Min and max propagate NaN and show inf, without
    the temporary array of ``np.isfinite``.
    """
    if not (np.isfinite(logits.min()) and np.isfinite(logits.max())):
        return "the router logits (tokens x centroids)"
    if not (np.isfinite(bias.min()) and np.isfinite(bias.max())):
        return "the expert bias"
    return None


class MoELayer:
    """The router state of one MoE layer and its step (docs/model.md §2-§6).

    Parameters
    ----------
    scenario : Scenario
        The layer's resolved scenario (without variants).
    number : int
        The layer's number in the model (0-based, dense layers counted).
    dim : int
        Token dimension d.
    n_clusters : int
        Token domains (the recorder's cluster-by-expert counts).
    init_seed, learning_seed : np.random.SeedSequence
        The layer's centroids and its learner's random streams.
    stream : TokenStream
        The token stream (the learner copies it for its held-out batch).

    Attributes
    ----------
    centroids : ndarray (E, d) float32
        The router's ``W``, updated in place by learning.
    router : StepRouter
        The input jitter and the routing algorithm (top-K, expert choice or Sinkhorn; §2).
    gate : NoisyGate or None
        Noisy top-K's ``W_noise`` and noise (docs/model.md §2.1); None for the other algorithms.
    balancer : BiasBalancer
        The expert bias ``b`` (``balancer.bias``, (E,) float32) and its update.
    learner : RouterLearner
    recorder : Recorder
    deployment : DeploymentTracker
        The variant's expert-parallel deployment, shared by its layers (inert when off);
        ``moe_index`` is this layer's place among the MoE layers.
    """

    def __init__(self, scenario, number: int, dim: int, n_clusters: int, init_seed, learning_seed,
                 stream, deployment=None, moe_index: int = 0):  # fmt: skip
        self.scenario = scenario
        self.number = number
        self.deployment = deployment if deployment is not None else DeploymentTracker(scenario)
        self.moe_index = moe_index
        # §10.1: a node or device limit is group routing over the placement's blocks.
        self.spec = spec = limited_router_spec(scenario.deployment, router_spec_for(scenario))
        self.capacity = capacity_for(scenario, spec)
        self.policy_code = POLICY_CODES[scenario.capacity.policy]
        self.router = StepRouter(scenario, spec, self.capacity, self.policy_code, layer=number)
        self.centroids = initial_centroids(scenario.router, dim, init_seed)
        # Noisy top-K's W_noise and noise stream (§2.1), from a child of the centroids' seed.
        self.gate = noisy_gate_for(scenario, dim, init_seed.spawn(1)[0])
        self.balancer = BiasBalancer(scenario)
        self.learner = RouterLearner(
            scenario,
            spec,
            dim,
            learning_seed,
            stream=stream,
            extra_aux=self.deployment.learner_losses(),  # §10.5: V2's device losses
        )
        self.recorder = Recorder(scenario, spec, self.capacity, n_clusters=n_clusters)
        self._logits: np.ndarray | None = None  # the step's logits, (T, E), reused

    def step(self, step: int, tokens, clusters, *, measure: bool, held_out=None):
        """Route step ``step``'s inputs ``tokens`` (T, d) through this layer, update its bias,
        learn and count; record a history row when ``measure``.

        ``clusters`` (T,) are the tokens' domains; ``held_out`` the held-out batch as this
        layer sees it (None: the learner's own). Returns the ``RoutingStep``, or None when the
        state was not finite and the layer could not route (the run stops there; the
        recorder's ``diverged`` says what).
        """
        balancer, recorder, bias = self.balancer, self.recorder, self.balancer.bias
        router_input = self.router.router_input(tokens, step)  # §2.2: the input jitter
        # §2. One logits array per layer, reused every step (nothing keeps it past the step):
        # see moesim.kernels.paths.run_advance_tokens for why.
        logits = self._logits = router_logits(router_input, self.centroids, out=self._logits)
        # §2.1: noisy top-K routes on H = logits + noise; everything else on the logits.
        routing_logits = (
            logits if self.gate is None else self.gate.noisy_logits(router_input, logits, step)
        )
        diverged = non_finite_state(routing_logits, bias)
        if diverged is not None:
            # Overflowed state routes nowhere meaningful: stop, and say so in the verdict.
            recorder.diverge(step, diverged)
            return None
        # §2, §3: the algorithm (scores + bias, groups, top-K), then capacity and drops.
        previous_tail = self.router.previous_tail
        routed = self.router.route(routing_logits, bias, balancer.enabled)
        routed = self.deployment.limit_devices(routed)  # §10.5: device-level drops
        recorder.update(step, routed, clusters)  # §3, §6: loads, drops, balance
        balancer.update(step, routed)  # §4: the bias, in place
        recorder.track_bias(step, bias)
        learned = self.learner.step(  # §5
            router_input,
            logits,
            routed,
            self.centroids,
            step,
            measure=measure,
            bias=bias if balancer.enabled else None,
            held_out=held_out,
            gate=self.gate,
        )
        self.deployment.observe(step, routed, self.moe_index)  # §10: dispatch, traffic, time
        if measure:
            learned = {**learned, **self.deployment.record(self.moe_index)}
            learned["batch_dependence"] = self.router.batch_dependence(
                routing_logits, routed, previous_tail
            )
            learned["sinkhorn_iterations"] = self.router.sinkhorn_iterations
            recorder.record(step, routed, routing_logits, bias, learned)  # §6: a history row
        return routed
