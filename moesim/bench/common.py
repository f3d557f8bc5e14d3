"""What every benchmark section shares: the DeepSeek-V3 router, timing, threads, worker processes,
writing the JSON, the busy-machine guard and the machine's description.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: DeepSeek-V3 (671B) routing, as ``moesim.route`` takes it.
DEEPSEEK_V3_ROUTING = dict(top_k=8, score="sigmoid", n_groups=8, topk_groups=4, route_scale=2.5)
DEEPSEEK_V3_EXPERTS = 256

#: Share of the machine's CPU time that other processes may take during a timed section before
#: its timings stop counting: on 2 cores, one busy process makes every parallel region wait for
#: a scheduler tick (timings become multiples of 4 ms), which no ratio survives.
BUSY_ELSEWHERE_LIMIT = 0.15

# ----------------------------------------------------------------------------------------------
# Scenarios


def deepseek_v3_router(experts: int = DEEPSEEK_V3_EXPERTS) -> dict:
    """:data:`DEEPSEEK_V3_ROUTING` as a scenario's ``router`` section, with ``experts`` experts."""
    options = DEEPSEEK_V3_ROUTING
    return {
        "experts": experts,
        "top_k": options["top_k"],
        "score": options["score"],
        "groups": options["n_groups"],
        "topk_groups": options["topk_groups"],
        "route_scale": options["route_scale"],
    }


def step_scenario(
    *,
    tokens_per_step: int,
    experts: int = DEEPSEEK_V3_EXPERTS,
    learning: bool = False,
    steps: int = 10,
    record_every: int | None = None,
    seed: int = 0,
) -> dict:
    """A DeepSeek-V3-like scenario dict (sigmoid, bias, 8 groups keep 4, K=8, d=64).

    The full step, the scaling runs and the start-up run all simulate this scenario.
    """
    return {
        "name": f"bench_T{tokens_per_step}_E{experts}",
        "seed": seed,
        "steps": steps,
        "tokens": {
            "tokens_per_step": tokens_per_step,
            "dim": 64,
            "clusters": 64,
            "seq_len": min(512, tokens_per_step),
        },
        "router": deepseek_v3_router(experts),
        "balance": {"bias": {"enabled": True, "rate": 1e-3}},
        "capacity": {"factor": 1.25},
        "learning": {"enabled": learning},
        "metrics": {"record_every": record_every},
    }


# ----------------------------------------------------------------------------------------------
# Timing


def time_call(function, *, repeats: int, warmup: int = 1) -> dict:
    """Median and interquartile range of ``repeats`` wall times of ``function()`` (seconds).

    ``warmup`` calls run first and are not counted (compilation, caches, thread start-up).
    """
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return summarize_samples(samples)


def summarize_samples(samples: list[float]) -> dict:
    """``{"median", "iqr", "repeats"}`` of a list of timings."""
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1 = q3 = samples[0]
    return {"median": statistics.median(samples), "iqr": q3 - q1, "repeats": len(samples)}


# ----------------------------------------------------------------------------------------------
# Threads and worker processes


def set_threads(n_threads: int) -> dict:
    """Use ``n_threads`` in Numba (torch gets it in its own worker); report the counts.

    OpenBLAS reads its thread count at import, so ``benchmarks/run.py`` sets
    ``OPENBLAS_NUM_THREADS`` before NumPy is imported; here it is only reported.
    """
    import numba

    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    return {
        "numba": numba.get_num_threads(),
        "torch": n_threads,
        "blas_env": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def torch_available() -> bool:
    """Whether the optional ``bench`` extra (torch) is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def run_worker(task: str, payload, *, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run ``python -m moesim.bench TASK PAYLOAD`` and return its JSON answer (last stdout line).

    The tasks are listed in ``moesim/bench/__main__.py``.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "moesim.bench", task, json.dumps(payload)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark worker {task} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def write_json(data: dict, path: Path) -> None:
    """Results as indented JSON (anything JSON cannot hold as its repr), folders made as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=repr) + "\n")


# ----------------------------------------------------------------------------------------------
# The busy-machine guard


def cpu_counters() -> tuple[float, float, float] | None:
    """(busy, total) CPU time of the whole machine from /proc/stat, and this process's own CPU
    time with its finished children, all in seconds; None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(fields) / ticks
    idle = (fields[3] + fields[4]) / ticks  # idle + iowait
    own = os.times()
    mine = own.user + own.system + own.children_user + own.children_system
    return total - idle, total, mine


def busy_elsewhere(before, after) -> float | None:
    """Share of the machine's CPU time used by other processes between two :func:`cpu_counters`."""
    if before is None or after is None:
        return None
    busy = after[0] - before[0]
    total = after[1] - before[1]
    mine = after[2] - before[2]
    if total <= 0:
        return None
    return min(1.0, max(0.0, (busy - mine) / total))


# ----------------------------------------------------------------------------------------------
# The machine


def cpu_detail() -> str | None:
    """Vendor, family/model and the widest vector extension, from ``/proc/cpuinfo`` (None where
    it does not exist): the processor family decides how fast the kernels' SIMD loops run."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            fields = dict(
                (key.strip(), value.strip())
                for key, _, value in (line.partition(":") for line in cpuinfo)
                if value
            )
    except OSError:
        return None
    flags = set(fields.get("flags", "").split())
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "none")
    return (
        f"{fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} model "
        f"{fields.get('model', '?')}, {vector.upper()}"
    )


def machine_info() -> dict:
    """CPU model, cores, load average and library versions, for the record."""
    import numba

    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    torch_version = None
    if torch_available():
        from importlib.metadata import version

        torch_version = version("torch")
    return {
        "cpu": model,
        "cpu_detail": cpu_detail(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": torch_version,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }
