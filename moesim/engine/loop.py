"""The step loop of docs/model.md, one scenario variant at a time.

    tokens X[T,d] -> logits Z = X W^T -> route (scores, bias, groups, top-K) + capacity
      -> loads and metrics -> bias update -> router learning -> record

State is plain arrays: the centroids ``W`` (here), the bias ``b`` (:class:`BiasBalancer`), the
learner's windows (:class:`RouterLearner`) and the counters (:class:`Recorder`).
"""

from __future__ import annotations

import time

import numpy as np

from moesim import tokens as token_stream
from moesim.engine.bias import BiasBalancer
from moesim.engine.learner import RouterLearner
from moesim.engine.recorder import Recorder
from moesim.engine.router import capacity_for, initial_centroids, router_spec_for
from moesim.kernels.capacity import POLICY_CODES
from moesim.kernels.routing import router_logits
from moesim.kernels.step import run_routing_step
from moesim.results.model import VariantResult


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


# Overflow is caught before routing (non_finite_state) and named in the verdict, not warned about.
@np.errstate(over="ignore", invalid="ignore")
def simulate_variant(
    scenario, name: str = "base", *, stream=None, on_step=None, should_stop=None
) -> VariantResult:
    """Run one resolved scenario (no variants) and return its result.

    Parameters
    ----------
    scenario : Scenario
        A resolved scenario without variants (one of :func:`moesim.expand_variants`).
    name : str
        The variant's name in the result.
    stream : TokenStream, optional
        Token stream to share between variants (common random numbers); made from the
        scenario's seed when omitted.
    on_step : callable(int), optional
        Called with the number of finished steps (progress bars).
    should_stop : callable() -> bool, optional
        Checked every step; a true value (or KeyboardInterrupt) ends the run early and the
        result is marked partial.

    A step whose logits or bias are not finite ends the run there with the verdict
    ``diverged`` (:func:`non_finite_state`), never a routing verdict.
    """
    started = time.perf_counter()
    tokens_seed, init_seed, learning_seed = np.random.SeedSequence(scenario.seed).spawn(3)
    if stream is None:
        stream = token_stream.make_stream(scenario.tokens, tokens_seed)
    n_tokens = scenario.tokens.tokens_per_step
    spec = router_spec_for(scenario)
    capacity = capacity_for(scenario, spec)
    policy_code = POLICY_CODES[scenario.capacity.policy]
    centroids = initial_centroids(scenario.router, stream.dim, init_seed)
    balancer = BiasBalancer(scenario)
    learner = RouterLearner(scenario, spec, stream.dim, learning_seed, stream=stream)
    recorder = Recorder(scenario, spec, capacity, n_clusters=stream.base_weights.shape[0])
    bias = balancer.bias  # updated in place
    steps_done, partial = 0, False
    try:
        for step in range(scenario.steps):
            if should_stop is not None and should_stop():
                partial = True
                break
            # The boxes of the diagram, each with its section of docs/model.md.
            tokens, clusters = token_stream.generate(stream, step, n_tokens)  # §1
            logits = router_logits(tokens, centroids)  # §2
            diverged = non_finite_state(logits, bias)
            if diverged is not None:
                # Overflowed state routes nowhere meaningful: stop, and say so in the verdict.
                recorder.diverge(step, diverged)
                break
            # §2, §3: scores + bias, groups, top-K, then the capacity and its drops.
            routed = run_routing_step(logits, bias, balancer.enabled, spec, capacity, policy_code)
            recorder.update(step, routed, clusters)  # §3, §6: loads, drops, balance
            balancer.update(step, routed)  # §4: the bias, in place
            recorder.track_bias(step, bias)
            measure = recorder.is_record_step(step)
            learned = learner.step(  # §5
                tokens,
                logits,
                routed,
                centroids,
                step,
                measure=measure,
                bias=balancer.bias if balancer.enabled else None,
            )
            if measure:
                recorder.record(step, routed, logits, bias, learned)  # §6: a history row
            steps_done = step + 1
            if on_step is not None:
                on_step(steps_done)
    except KeyboardInterrupt:
        partial = True
    seconds = time.perf_counter() - started
    return recorder.result(name, steps_done, partial=partial, bias=bias, seconds=seconds)
