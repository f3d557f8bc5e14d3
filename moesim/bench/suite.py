"""The whole suite: problem sizes per mode, running the chosen sections with the busy-machine
guard around each, the goals, and the JSON file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from moesim.bench.common import (
    BUSY_ELSEWHERE_LIMIT,
    busy_elsewhere,
    cpu_counters,
    machine_info,
    set_threads,
    write_json,
)
from moesim.bench.goals import evaluate_goals
from moesim.bench.layers import bench_layers
from moesim.bench.memory import bench_memory
from moesim.bench.noisy import bench_noisy
from moesim.bench.routers import bench_routers
from moesim.bench.routing import bench_routing
from moesim.bench.scaling import bench_scaling
from moesim.bench.startup import bench_startup
from moesim.bench.step import bench_step

#: Sizes per mode: ``full`` (make bench, about 75 s on 2 quiet cores), ``quick`` (CI smoke run),
#: ``tiny`` (the test suite's end-to-end check: seconds, numbers meaningless).
MODES = {
    "full": dict(
        routers_tokens=4096,
        routers_experts=256,
        routers_repeats=5,
        routers_growth_tokens=[1024, 4096, 16384],
        routers_growth_experts=[64, 256],
        routing_tokens=[1024, 4096, 16384],
        routing_repeats=15,
        reference_repeats=3,
        step_tokens=4096,
        step_steps=20,
        step_repeats=5,
        scaling_tokens=[1024, 4096, 16384, 65536],
        scaling_experts=[64, 256, 1024],
        scaling_work=400_000,
        startup_steps=100,
        startup_cold=True,
        startup_repeats=3,
        memory_steps=100_000,
        layers_tokens=4096,
        layer_counts=[1, 2, 4, 8, 16],
        layers_steps=20,
        layers_repeats=5,
        paths_repeats=30,
        deepseek_tokens=4096,
        noisy_tokens=4096,
        noisy_experts=256,
        noisy_repeats=10,
        noisy_reference_repeats=2,
    ),
    "quick": dict(
        routers_tokens=4096,
        routers_experts=256,
        routers_repeats=3,
        routers_growth_tokens=[1024, 4096],
        routers_growth_experts=[64, 256],
        routing_tokens=[1024, 4096],
        routing_repeats=7,
        reference_repeats=2,
        step_tokens=4096,
        step_steps=8,
        step_repeats=3,
        scaling_tokens=[1024, 16384],
        scaling_experts=[64, 1024],
        scaling_work=100_000,
        startup_steps=100,
        startup_cold=False,
        startup_repeats=1,
        memory_steps=20_000,
        layers_tokens=4096,
        layer_counts=[1, 2, 4],
        layers_steps=3,
        layers_repeats=1,
        paths_repeats=10,
        deepseek_tokens=1024,
        noisy_tokens=4096,
        noisy_experts=256,
        noisy_repeats=3,
        noisy_reference_repeats=1,
    ),
    "tiny": dict(
        routers_tokens=256,
        routers_experts=32,
        routers_repeats=1,
        routers_growth_tokens=[256],
        routers_growth_experts=[16],
        routing_tokens=[256],
        routing_repeats=3,
        reference_repeats=1,
        step_tokens=256,
        step_steps=2,
        step_repeats=2,
        scaling_tokens=[256],
        scaling_experts=[64],
        scaling_work=512,
        startup_steps=5,
        startup_cold=False,
        startup_repeats=1,
        startup_warmup=0,
        startup_tokens=256,
        memory_steps=300,
        layers_tokens=128,
        layer_counts=[1, 2],
        layers_steps=2,
        layers_repeats=1,
        paths_repeats=2,
        deepseek_tokens=128,
        noisy_tokens=256,
        noisy_experts=32,
        noisy_repeats=2,
        noisy_reference_repeats=1,
    ),
}
#: The sections, in the order they run.
SECTIONS = ("routing", "step", "routers", "scaling", "startup", "memory", "layers", "noisy")


def run_suite(
    *,
    mode: str = "full",
    threads: int = 2,
    sections=SECTIONS,
    output: Path | None = None,
    console=None,
    memory_steps: int | None = None,
) -> dict:
    """Run the chosen sections and return (and, with ``output``, write) the results as a dict.

    Parameters
    ----------
    mode : {"full", "quick", "tiny"}
        Problem sizes and repeats (see :data:`MODES`).
    threads : int
        Threads for Numba and torch in the in-process sections (scaling always runs 1 and 2).
    sections : iterable of str
        Any of :data:`SECTIONS`.
    output : Path, optional
        JSON file to write.
    console : rich.console.Console, optional
        Progress messages go there.
    memory_steps : int, optional
        Steps of the memory run (default per mode; 1,000,000 measures the goal directly).
    """
    sizes = suite_sizes(mode, sections, memory_steps)
    started = time.perf_counter()
    results = {"meta": {"mode": mode, "threads": set_threads(threads), **machine_info()}}
    run_sections(results, sizes, threads=threads, sections=sections, console=console)
    results["goals"] = evaluate_goals(results)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    results["meta"]["seconds"] = time.perf_counter() - started
    if output is not None:
        write_json(results, output)
    return results


def suite_sizes(mode: str, sections, memory_steps: int | None) -> dict:
    """The sizes of ``mode`` (with ``memory_steps`` if given); ValueError on an unknown mode or
    section."""
    if mode not in MODES:
        raise ValueError(f"mode is {mode!r}; it must be one of {sorted(MODES)}")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    sizes = dict(MODES[mode])
    if memory_steps is not None:
        sizes["memory_steps"] = int(memory_steps)
    return sizes


def section_runners(sizes: dict, threads: int) -> dict:
    """Section name -> (what to say before it, a call that runs it with these sizes)."""
    cold_note = ""
    if sizes["startup_cold"]:
        cold_note = " (cold compiles every kernel: about half a minute)"
    return {
        "routing": (
            "routing: moesim, NumPy reference, torch (own process) ...",
            lambda: bench_routing(
                sizes["routing_tokens"],
                repeats=sizes["routing_repeats"],
                reference_repeats=sizes["reference_repeats"],
                threads=threads,
            ),
        ),
        "step": (
            "full step vs BLAS ...",
            lambda: bench_step(
                sizes["step_tokens"], steps=sizes["step_steps"], repeats=sizes["step_repeats"]
            ),
        ),
        "routers": (
            "routing algorithms beyond top-K: kernels vs NumPy twins, growth with T and E ...",
            lambda: bench_routers(
                sizes["routers_tokens"],
                sizes["routers_experts"],
                repeats=sizes["routers_repeats"],
                growth_tokens=sizes["routers_growth_tokens"],
                growth_experts=sizes["routers_growth_experts"],
            ),
        ),
        "scaling": (
            "scaling, 1 and 2 threads (subprocesses) ...",
            lambda: bench_scaling(
                sizes["scaling_tokens"], sizes["scaling_experts"], work=sizes["scaling_work"]
            ),
        ),
        "startup": (
            f"start-up of `moesim run`{cold_note} ...",
            lambda: bench_startup(
                steps=sizes["startup_steps"],
                cold=sizes["startup_cold"],
                repeats=sizes["startup_repeats"],
                warmup=sizes.get("startup_warmup", 1),
                tokens_per_step=sizes.get("startup_tokens", 4096),
            ),
        ),
        "memory": (
            f"memory of a {sizes['memory_steps']:,}-step run ...",
            lambda: bench_memory(sizes["memory_steps"]),
        ),
        "layers": (
            "steps/s against the MoE layers, a 58-layer DeepSeek-V3 step, the token paths ...",
            lambda: bench_layers(
                sizes["layers_tokens"],
                sizes["layer_counts"],
                steps=sizes["layers_steps"],
                repeats=sizes["layers_repeats"],
                deepseek_tokens=sizes["deepseek_tokens"],
                paths_repeats=sizes["paths_repeats"],
            ),
        ),
        "noisy": (
            "noisy top-K kernels vs their NumPy twins ...",
            lambda: bench_noisy(
                sizes["noisy_tokens"],
                experts=sizes["noisy_experts"],
                repeats=sizes["noisy_repeats"],
                reference_repeats=sizes["noisy_reference_repeats"],
            ),
        ),
    }


def run_sections(results: dict, sizes: dict, *, threads: int, sections, console) -> None:
    """Run the chosen sections in :data:`SECTIONS` order into ``results``, recording each one's
    seconds and the share of the CPU other processes took meanwhile (``meta``)."""

    def say(message: str) -> None:
        from rich.markup import escape

        if console is not None:
            console.print(f"[dim]{escape(message)}[/]", highlight=False)

    section_seconds = results["meta"]["section_seconds"] = {}
    busy = results["meta"]["busy_elsewhere"] = {}
    runners = section_runners(sizes, threads)
    for name in SECTIONS:
        if name not in sections:
            continue
        message, run = runners[name]
        say(message)
        section_started = time.perf_counter()
        counters = cpu_counters()
        results[name] = run()
        busy[name] = busy_elsewhere(counters, cpu_counters())
        section_seconds[name] = time.perf_counter() - section_started
        if busy[name] is not None and busy[name] > BUSY_ELSEWHERE_LIMIT:
            say(f"  other processes used {busy[name]:.0%} of the CPU during this section")
