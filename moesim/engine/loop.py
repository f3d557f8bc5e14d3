"""The step loop of docs/model.md, one scenario variant at a time.

    tokens X[T,d] -> for each layer l: logits Z = X_l W_l^T -> route (scores, bias, groups,
      top-K) + capacity -> loads and metrics -> bias update -> router learning -> record;
      X_{l+1} from X_l along the token paths

State is plain arrays, one set per MoE layer (:class:`~moesim.engine.layer.MoELayer`): the
centroids ``W``, the bias ``b`` (:class:`BiasBalancer`), the learner's windows
(:class:`RouterLearner`) and the counters (:class:`Recorder`). One layer is moesim 0.1's loop.
"""

from __future__ import annotations

import time

import numpy as np

from moesim import tokens as token_stream
from moesim.engine.deployment import DeploymentTracker
from moesim.engine.layer import MoELayer, non_finite_state
from moesim.engine.layers import CoRouting, variant_result
from moesim.engine.paths import HELD_OUT, TRAINING, TokenPaths
from moesim.engine.replay import replay_variant
from moesim.results.model import VariantResult
from moesim.scenario import layer_scenarios, moe_layer_numbers

__all__ = ["build_layers", "non_finite_state", "simulate_variant"]


def build_layers(
    scenario, stream, deployment=None
) -> tuple[list[MoELayer | None], TokenPaths | None]:
    """Every layer of the model (None for a dense one) and the token paths between them.

    ``deployment`` (a :class:`DeploymentTracker`) is shared by the MoE layers (docs/model.md
    §10); each layer makes an inert one of its own when it is omitted.

    Random streams: the token stream, layer 0's centroids and its learner take the first three
    children of the scenario's seed, as moesim 0.1's single layer did; the token paths and every
    further layer take children of their own, so a layer's state does not depend on how many
    layers come after it.
    """
    root = np.random.SeedSequence(scenario.seed)
    _, init_seed, learning_seed = root.spawn(3)
    settings = layer_scenarios(scenario)
    extra = root.spawn(len(settings)) if len(settings) > 1 else []
    n_clusters = stream.base_weights.shape[0]
    layers: list[MoELayer | None] = []
    for number, layer_scenario in enumerate(settings):
        if number > 0:
            init_seed, learning_seed = extra[number].spawn(2)
        if layer_scenario is None:
            layers.append(None)
            continue
        moe_index = sum(layer is not None for layer in layers)
        layers.append(
            MoELayer(
                layer_scenario,
                number,
                stream.dim,
                n_clusters,
                init_seed,
                learning_seed,
                stream,
                deployment,
                moe_index,
            )  # fmt: skip
        )
    paths = None
    if len(settings) > 1:
        paths = TokenPaths(
            len(settings),
            stream.dim,
            scenario.token_paths.correlation,
            extra[0],
            scenario.tokens.stream_version,
        )
    return layers, paths


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

    A step whose logits or bias are not finite in any layer ends the run there with the
    verdict ``diverged`` (:func:`non_finite_state`), never a routing verdict.
    """
    if scenario.deployment.enabled and scenario.deployment.load_trace is not None:
        # §10.8: loads from a recorded trace, not routed tokens.
        return replay_variant(scenario, name, on_step=on_step, should_stop=should_stop)
    started = time.perf_counter()
    if stream is None:
        tokens_seed = np.random.SeedSequence(scenario.seed).spawn(3)[0]
        stream = token_stream.make_stream(scenario.tokens, tokens_seed)
    n_tokens = scenario.tokens.tokens_per_step
    deployment = DeploymentTracker(scenario, len(moe_layer_numbers(scenario)))  # §10
    layers, paths = build_layers(scenario, stream, deployment)
    moe_layers = [layer for layer in layers if layer is not None]
    first = moe_layers[0]
    co_routing = CoRouting(moe_layers) if len(moe_layers) > 1 else None
    last_moe = moe_layers[-1].number
    steps_done, partial = 0, False
    try:
        for step in range(scenario.steps):
            if should_stop is not None and should_stop():
                partial = True
                break
            measure = first.recorder.is_record_step(step)
            tokens, clusters = token_stream.generate(stream, step, n_tokens)  # §1
            held_out = None
            if paths is not None and measure and first.learner.measures_held_out:
                held_out = first.learner.held_out_tokens(step)
            diverged = False
            for number, layer in enumerate(layers):  # §1.1: each on its own inputs
                if layer is not None:
                    routed = layer.step(step, tokens, clusters, measure=measure, held_out=held_out)
                    if routed is None:
                        diverged = True
                        break
                    if co_routing is not None and measure:
                        co_routing.observe(layer.number, routed.indices)
                if number < last_moe:
                    tokens = paths.advance(tokens, number, step, TRAINING)
                    if held_out is not None:
                        held_out = paths.advance(held_out, number, step, HELD_OUT)
            if diverged:
                break
            deployment.end_step(step)  # §10: the step over its layers; rebalancing
            steps_done = step + 1
            if on_step is not None:
                on_step(steps_done)
    except KeyboardInterrupt:
        partial = True
    seconds = time.perf_counter() - started
    return variant_result(
        scenario,
        name,
        moe_layers,
        steps_done,
        partial=partial,
        seconds=seconds,
        co_routing=co_routing,
        deployment=deployment,
    )
