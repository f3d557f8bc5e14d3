"""Replaying a recorded per-expert load trace through the deployment (docs/model.md §10.8):
each step's loads of each MoE layer come from ``deployment.load_trace`` instead of routing
tokens.

What per-expert counts give is measured as in a routed run: the placement (contiguous or EPLB,
redundant experts split evenly over their replicas), rebalancing over time and the moves it
costs, GPU and node loads, balancedness, imbalance ratios, the compute part of the step time,
efficiency and the GPU time lost, and the loads' own balance (MaxVio, CV, ...). What needs
token-level routing (traffic, communication time, drops, experts per token) is NaN: a trace does
not say which experts each token chose. The scenario's checks refuse settings that would act on
routed tokens (learning, bias, aux losses, capacity, routing limits).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from moesim.deployment.traces import MegatronLayout, read_load_trace
from moesim.engine.deployment import DeploymentTracker
from moesim.engine.layers import variant_result
from moesim.engine.recorder import Recorder
from moesim.engine.router import router_spec_for
from moesim.kernels.step import NO_CAPACITY, RoutingStep
from moesim.results.model import VariantResult
from moesim.scenario import moe_layer_numbers


def trace_loads(scenario) -> np.ndarray:
    """The first ``scenario.steps`` steps of the scenario's load trace, (S, L, E) int64
    (read once per file version: a scenario's variants and sweep runs share it)."""
    deployment = scenario.deployment
    path = Path(deployment.load_trace)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    signature = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    loads = _read_trace(
        str(path), deployment.load_trace_format, deployment.load_trace_expert_parallel, signature
    )
    return loads[: scenario.steps]


@functools.lru_cache(maxsize=4)
def _read_trace(file: str, format: str, expert_parallel: int | None, signature) -> np.ndarray:
    loads = read_load_trace(file, format, MegatronLayout(expert_parallel=expert_parallel))
    loads = np.ascontiguousarray(loads, dtype=np.int64)
    loads.flags.writeable = False  # shared by the cache
    return loads


class ReplayedLayer:
    """One MoE layer of a replay: its number and counters, and no router (what
    :func:`~moesim.engine.layers.variant_result` reads of a layer)."""

    def __init__(self, scenario, number: int):
        self.scenario = scenario
        self.number = number
        spec = router_spec_for(scenario)
        self.top_k = spec.top_k
        self.recorder = Recorder(scenario, spec, NO_CAPACITY, n_clusters=1)
        self.bias = np.zeros(scenario.router.experts, dtype=np.float32)

    @property
    def balancer(self):  # variant_result reads the final bias from ``layer.balancer.bias``
        return self

    def counts_step(self, demand: np.ndarray) -> RoutingStep:
        """A step of per-expert counts as the recorder takes it: no tokens, nothing dropped."""
        no_tokens = np.zeros((0, self.top_k), dtype=np.int64)
        return RoutingStep(
            no_tokens, no_tokens.astype(np.float32), no_tokens.astype(bool), demand, demand
        )


# Steps with no load give NaN balance measures, as a routed run's would; not warned about.
@np.errstate(invalid="ignore", divide="ignore")
def replay_variant(
    scenario, name: str = "base", *, on_step=None, should_stop=None
) -> VariantResult:
    """Run one resolved scenario whose deployment replays a load trace; the arguments and the
    result are :func:`~moesim.engine.loop.simulate_variant`'s."""
    started = time.perf_counter()
    loads = trace_loads(scenario)
    numbers = moe_layer_numbers(scenario)
    deployment = DeploymentTracker(scenario, len(numbers))
    layers = [ReplayedLayer(scenario, number) for number in numbers]
    no_clusters = np.zeros(0, dtype=np.int64)
    steps_done, partial = 0, False
    try:
        for step in range(scenario.steps):
            if should_stop is not None and should_stop():
                partial = True
                break
            measure = layers[0].recorder.is_record_step(step)
            for index, layer in enumerate(layers):
                demand = loads[step, index]
                counts = layer.counts_step(demand)
                layer.recorder.update(step, counts, no_clusters)
                deployment.observe_counts(step, demand, index)
                if measure:
                    learned = deployment.record(index)
                    layer.recorder.record(step, counts, None, layer.bias, learned)
            deployment.end_step(step)
            steps_done = step + 1
            if on_step is not None:
                on_step(steps_done)
    except KeyboardInterrupt:
        partial = True
    return variant_result(
        scenario,
        name,
        layers,
        steps_done,
        partial=partial,
        seconds=time.perf_counter() - started,
        co_routing=None,
        deployment=deployment,
    )
