"""Benchmark suite (``make bench``, ``moesim bench``): speed against baselines and the BLAS limit.

Five sections, measured side by side in one run and checked against the performance goals
(docs/performance.md), one module each:

1. :mod:`~moesim.bench.routing`: DeepSeek-V3 routing (E=256, K=8, 8 groups keep 4, sigmoid +
   bias, scale 2.5) by moesim's kernel, the NumPy reference and a PyTorch CPU twin, with the same
   thread count; the torch twin is also a correctness cross-check (agreement of the chosen expert
   sets). Also the fused step kernel against the reference (``benchmarks/routing.py``).
2. :mod:`~moesim.bench.step`: a full simulated step (tokens -> logits -> route -> capacity -> bias
   -> metrics, learning off and on) against the BLAS matmuls it contains (``X @ W.T``, and
   ``G.T @ X``).
3. :mod:`~moesim.bench.scaling`: steps/s against T and E, 1 and 2 threads in subprocesses, and
   whether the results (summary and final bias) are identical for both thread counts.
4. :mod:`~moesim.bench.startup`: wall time of ``moesim run`` on a 100-step scenario, cold (empty
   Numba cache) and warm.
5. :mod:`~moesim.bench.memory`: peak RSS of a million-step run of a tiny router with default
   recording.

Around them: :mod:`~moesim.bench.common` (the DeepSeek-V3 router, timing, threads, worker
processes, the busy-machine guard, the machine), :mod:`~moesim.bench.goals` (PASS/MISS/BUSY),
:mod:`~moesim.bench.render` (rich tables), :mod:`~moesim.bench.suite` (sizes per mode,
:func:`run_suite`) and ``__main__`` (the subprocess workers).

Every timing is the median of repeated ``time.perf_counter`` measurements after warm-up calls,
with the interquartile range as its spread.
"""

from __future__ import annotations

from moesim.bench.common import (
    BUSY_ELSEWHERE_LIMIT,
    DEEPSEEK_V3_EXPERTS,
    DEEPSEEK_V3_ROUTING,
    busy_elsewhere,
    cpu_counters,
    machine_info,
    run_worker,
    set_threads,
    step_scenario,
    summarize_samples,
    time_call,
    torch_available,
    write_json,
)
from moesim.bench.goals import evaluate_goals
from moesim.bench.memory import MEMORY_TARGET_STEPS, bench_memory, memory_scenario
from moesim.bench.noisy import bench_noisy, noisy_inputs
from moesim.bench.render import render, render_fused_step
from moesim.bench.routing import bench_fused_step, bench_routing, routing_inputs, torch_route
from moesim.bench.scaling import bench_scaling, result_hash, scaling_configs
from moesim.bench.startup import bench_startup, startup_scenario_yaml
from moesim.bench.step import bench_step, time_steps
from moesim.bench.suite import MODES, SECTIONS, run_suite

__all__ = [
    "BUSY_ELSEWHERE_LIMIT",
    "DEEPSEEK_V3_EXPERTS",
    "DEEPSEEK_V3_ROUTING",
    "MEMORY_TARGET_STEPS",
    "MODES",
    "SECTIONS",
    "bench_fused_step",
    "bench_memory",
    "bench_noisy",
    "bench_routing",
    "bench_scaling",
    "bench_startup",
    "bench_step",
    "busy_elsewhere",
    "cpu_counters",
    "evaluate_goals",
    "machine_info",
    "memory_scenario",
    "noisy_inputs",
    "render",
    "render_fused_step",
    "result_hash",
    "routing_inputs",
    "run_suite",
    "run_worker",
    "scaling_configs",
    "set_threads",
    "startup_scenario_yaml",
    "step_scenario",
    "summarize_samples",
    "time_call",
    "time_steps",
    "torch_available",
    "torch_route",
    "write_json",
]
