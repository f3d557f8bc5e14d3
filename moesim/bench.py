"""Benchmark suite (``make bench``, ``moesim bench``): speed against baselines and the BLAS limit.

Five sections, measured side by side in one run and checked against the performance goals
(docs/performance.md):

1. ``routing``: DeepSeek-V3 routing (E=256, K=8, 8 groups keep 4, sigmoid + bias, scale 2.5)
   by moesim's kernel, the NumPy reference and a PyTorch CPU twin, with the same thread count;
   the torch twin is also a correctness cross-check (agreement of the chosen expert sets).
2. ``step``: a full simulated step (tokens -> logits -> route -> capacity -> bias -> metrics,
   learning off and on) against the BLAS matmuls it contains (``X @ W.T``, and ``G.T @ X``).
3. ``scaling``: steps/s against T and E, 1 and 2 threads in subprocesses, and whether the
   results (summary and final bias) are identical for both thread counts.
4. ``startup``: wall time of ``moesim run`` on a 100-step scenario, cold (empty Numba cache)
   and warm.
5. ``memory``: peak RSS of a million-step run of a tiny router with default recording.

Every timing is the median of repeated ``time.perf_counter`` measurements after warm-up calls,
with the interquartile range as its spread. Subprocess workers are this module's ``__main__``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: DeepSeek-V3 (671B) routing, as ``moesim.route`` takes it.
DEEPSEEK_V3_ROUTING = dict(top_k=8, score="sigmoid", n_groups=8, topk_groups=4, route_scale=2.5)
DEEPSEEK_V3_EXPERTS = 256

#: Sizes per mode: ``full`` (make bench, about 75 s on 2 quiet cores), ``quick`` (CI smoke run),
#: ``tiny`` (the test suite's end-to-end check: seconds, numbers meaningless).
MODES = {
    "full": dict(
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
    ),
    "quick": dict(
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
    ),
    "tiny": dict(
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
    ),
}
SECTIONS = ("routing", "step", "scaling", "startup", "memory")
#: The million-step memory goal, and the tiny router it is measured on.
MEMORY_TARGET_STEPS = 1_000_000

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


# ----------------------------------------------------------------------------------------------
# 1. Routing only


def torch_route(logits, bias, *, top_k, n_groups, topk_groups, route_scale, group_score_topk=2):
    """DeepSeek-V3 routing in PyTorch, written from the semantics (model.md 1.2).

    Sigmoid scores; the bias enters selection only; a group scores the sum of its top
    ``group_score_topk`` selection scores; the ``topk_groups`` best groups are kept and the rest
    masked with -inf; top-K over the masked selection scores; weights are the original scores of
    the chosen experts, normalised and scaled.

    Parameters
    ----------
    logits : torch.Tensor, shape (T, E), float32
    bias : torch.Tensor, shape (E,), float32

    Returns
    -------
    indices : torch.Tensor (T, K) int64
    weights : torch.Tensor (T, K) float32
    """
    import torch

    n_tokens, n_experts = logits.shape
    scores = logits.sigmoid()
    selection = scores + bias
    grouped = selection.view(n_tokens, n_groups, n_experts // n_groups)
    group_scores = grouped.topk(group_score_topk, dim=-1)[0].sum(dim=-1)  # (T, G)
    kept = group_scores.topk(topk_groups, dim=-1)[1]
    dropped = torch.ones(n_tokens, n_groups, dtype=torch.bool).scatter_(1, kept, False)
    masked = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
    indices = masked.topk(top_k, dim=-1)[1]
    weights = scores.gather(1, indices)
    weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20) * route_scale
    return indices, weights


def routing_inputs(n_tokens: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits (T, 256) ~ N(0, 1) and a bias (256,) ~ N(0, 0.05), as a trained router."""
    rng = np.random.default_rng([seed, n_tokens])
    logits = rng.standard_normal((n_tokens, DEEPSEEK_V3_EXPERTS)).astype(np.float32)
    bias = (0.05 * rng.standard_normal(DEEPSEEK_V3_EXPERTS)).astype(np.float32)
    return logits, bias


def _torch_routing_worker(payload: dict) -> dict:
    """In a subprocess: time :func:`torch_route` per T; save its indices for the agreement check.

    torch runs in a process of its own: its OpenMP threads and Numba's would otherwise spin
    against each other on the same cores and slow both down.
    """
    import torch

    torch.set_num_threads(payload["threads"])
    options = {k: v for k, v in DEEPSEEK_V3_ROUTING.items() if k != "score"}
    rows = {}
    for n_tokens in payload["tokens"]:
        logits, bias = (torch.from_numpy(a) for a in routing_inputs(n_tokens))

        def run(logits=logits, bias=bias):
            with torch.inference_mode():
                return torch_route(logits, bias, **options)

        rows[str(n_tokens)] = time_call(run, repeats=payload["repeats"], warmup=2)
        indices, weights = run()
        np.save(Path(payload["dir"], f"indices_{n_tokens}.npy"), indices.numpy())
        np.save(Path(payload["dir"], f"weights_{n_tokens}.npy"), weights.numpy())
    return {"rows": rows, "threads": torch.get_num_threads(), "version": torch.__version__}


def torch_available() -> bool:
    """Whether the optional ``bench`` extra (torch) is installed, without importing it."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def bench_routing(token_counts, *, repeats: int, reference_repeats: int, threads: int) -> dict:
    """Section 1: moesim, NumPy reference and torch routing times per T, and torch agreement."""
    from moesim.kernels.routing import route
    from moesim.reference import route_reference

    rows = []
    for n_tokens in token_counts:
        logits, bias = routing_inputs(n_tokens)
        row = {"tokens": n_tokens}
        row["moesim"] = time_call(
            lambda logits=logits, bias=bias: route(logits, bias, **DEEPSEEK_V3_ROUTING),
            repeats=repeats,
            warmup=2,
        )
        row["reference"] = time_call(
            lambda logits=logits, bias=bias: route_reference(logits, bias, **DEEPSEEK_V3_ROUTING),
            repeats=reference_repeats,
            warmup=0,
        )
        rows.append(row)
    if not torch_available():
        return {"rows": rows, "torch_note": "torch not installed (pip install 'moesim[bench]')"}
    with tempfile.TemporaryDirectory(prefix="moesim-bench-torch-") as workdir:
        payload = {"tokens": list(token_counts), "repeats": repeats, "threads": threads}
        answer = run_worker("torch_routing", {**payload, "dir": workdir})
        for row in rows:
            n_tokens = row["tokens"]
            row["torch"] = answer["rows"][str(n_tokens)]
            torch_indices = np.load(Path(workdir, f"indices_{n_tokens}.npy"))
            torch_weights = np.load(Path(workdir, f"weights_{n_tokens}.npy"))
            indices, weights = route(*routing_inputs(n_tokens), **DEEPSEEK_V3_ROUTING)
            same_sets = (np.sort(indices, axis=1) == np.sort(torch_indices, axis=1)).all(axis=1)
            row["torch_agreement"] = float(same_sets.mean())
            row["torch_ordered_agreement"] = float((indices == torch_indices).all(axis=1).mean())
            # Weights compared expert by expert, on the tokens where both chose the same set.
            ours = np.take_along_axis(weights, np.argsort(indices, axis=1), 1)[same_sets]
            theirs = np.take_along_axis(torch_weights, np.argsort(torch_indices, axis=1), 1)
            row["torch_max_weight_diff"] = float(np.abs(ours - theirs[same_sets]).max(initial=0.0))
    return {"rows": rows, "torch_note": None, "torch_threads": answer["threads"]}


# ----------------------------------------------------------------------------------------------
# 2. Full step against its BLAS matmuls


def step_scenario(
    *,
    tokens_per_step: int,
    experts: int = DEEPSEEK_V3_EXPERTS,
    learning: bool = False,
    steps: int = 10,
    record_every: int | None = None,
    seed: int = 0,
) -> dict:
    """A DeepSeek-V3-like scenario dict (sigmoid, bias, 8 groups keep 4, K=8, d=64)."""
    seq_len = min(512, tokens_per_step)
    return {
        "name": f"bench_T{tokens_per_step}_E{experts}",
        "seed": seed,
        "steps": steps,
        "tokens": {
            "tokens_per_step": tokens_per_step,
            "dim": 64,
            "clusters": 64,
            "seq_len": seq_len,
        },
        "router": {
            "experts": experts,
            "top_k": 8,
            "score": "sigmoid",
            "groups": 8,
            "topk_groups": 4,
            "route_scale": 2.5,
        },
        "balance": {"bias": {"enabled": True, "rate": 1e-3}},
        "capacity": {"factor": 1.25},
        "learning": {"enabled": learning},
        "metrics": {"record_every": record_every},
    }


def time_steps(scenario_dict: dict, *, repeats: int) -> dict:
    """Seconds per step of ``simulate_variant`` (median over repeats; one warm-up run)."""
    from moesim.engine import simulate_variant
    from moesim.scenario import load_scenario

    scenario = load_scenario(scenario_dict)
    simulate_variant(load_scenario({**scenario_dict, "steps": 2}))  # warm-up: compile, caches
    timing = time_call(lambda: simulate_variant(scenario), repeats=repeats, warmup=0)
    steps = scenario.steps
    return {"median": timing["median"] / steps, "iqr": timing["iqr"] / steps, "repeats": repeats}


def bench_step(n_tokens: int, *, steps: int, repeats: int) -> dict:
    """Section 2: a step, learning off and on, against ``X @ W.T`` and ``G.T @ X`` (float32)."""
    from moesim import tokens as token_stream
    from moesim.engine import initial_centroids
    from moesim.kernels.routing import router_logits
    from moesim.kernels.step import run_routing_step
    from moesim.scenario import load_scenario

    rng = np.random.default_rng(1)
    dim, n_experts = 64, DEEPSEEK_V3_EXPERTS
    x = rng.standard_normal((n_tokens, dim)).astype(np.float32)
    w = rng.standard_normal((n_experts, dim)).astype(np.float32)
    g = rng.standard_normal((n_tokens, n_experts)).astype(np.float32)
    many = max(20, 4 * repeats)
    result = {
        "tokens": n_tokens,
        "experts": n_experts,
        "dim": dim,
        "blas_logits": time_call(lambda: x @ w.T, repeats=many, warmup=3),
        "blas_gradient": time_call(lambda: g.T @ x, repeats=many, warmup=3),
    }
    for learning in (False, True):
        scenario = step_scenario(
            tokens_per_step=n_tokens, learning=learning, steps=steps, record_every=steps
        )
        result["learning_on" if learning else "learning_off"] = time_steps(
            scenario, repeats=repeats
        )

    # Where a step's time goes: its three biggest pieces, timed alone on the same shapes.
    from moesim.engine import router_spec_for
    from moesim.kernels.capacity import POLICY_CODES, expert_capacity

    scenario = load_scenario(step_scenario(tokens_per_step=n_tokens))
    stream = token_stream.make_stream(scenario.tokens, np.random.SeedSequence(0))
    centroids = initial_centroids(scenario.router, dim, np.random.SeedSequence(1))
    spec = router_spec_for(scenario)
    capacity = expert_capacity(n_tokens, spec.top_k, n_experts, scenario.capacity.factor)
    tokens, _ = token_stream.generate(stream, 0, n_tokens)
    logits = router_logits(tokens, centroids)
    bias = np.zeros(n_experts, dtype=np.float32)
    result["pieces"] = {
        "tokens": time_call(
            lambda: token_stream.generate(stream, 0, n_tokens), repeats=many, warmup=2
        ),
        "logits": time_call(lambda: router_logits(tokens, centroids), repeats=many, warmup=2),
        "routing_step": time_call(
            lambda: run_routing_step(logits, bias, True, spec, capacity, POLICY_CODES["probs"]),
            repeats=many,
            warmup=2,
        ),
    }
    return result


# ----------------------------------------------------------------------------------------------
# 3. Scaling (subprocesses, one per thread count)


def scaling_configs(token_counts, expert_counts, work: int) -> list[dict]:
    """Scenarios of the scaling sweep: T at E=256, then E at T=4096 (or the smallest T).

    ``work`` is tokens per measured run: steps = work / T, at least 3 and at most 200.
    """
    base_tokens = 4096 if 4096 in token_counts or max(token_counts) >= 4096 else token_counts[0]
    pairs = [(t, DEEPSEEK_V3_EXPERTS) for t in token_counts]
    pairs += [(base_tokens, e) for e in expert_counts if (base_tokens, e) not in pairs]
    return [
        step_scenario(
            tokens_per_step=t, experts=e, steps=min(200, max(3, work // t)), record_every=None
        )
        for t, e in pairs
    ]


def result_hash(summary: dict, final_bias: np.ndarray) -> str:
    """SHA-256 of a run's summary (timings removed) and final bias bytes."""
    timeless = {k: v for k, v in summary.items() if k not in ("seconds", "steps_per_second")}
    digest = hashlib.sha256(json.dumps(timeless, sort_keys=True, default=repr).encode())
    digest.update(np.ascontiguousarray(final_bias).tobytes())
    return digest.hexdigest()[:16]


def _scaling_worker(configs: list[dict]) -> list[dict]:
    """In a subprocess: steps/s and the result hash of each scenario (after one warm-up)."""
    from moesim.engine import simulate_variant
    from moesim.scenario import load_scenario

    rows = []
    for config in configs:
        simulate_variant(load_scenario({**config, "steps": 1}))
        scenario = load_scenario(config)
        started = time.perf_counter()
        outcome = simulate_variant(scenario)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "tokens": scenario.tokens.tokens_per_step,
                "experts": scenario.router.experts,
                "steps": scenario.steps,
                "steps_per_second": scenario.steps / seconds,
                "hash": result_hash(outcome.summary, outcome.final_bias),
            }
        )
    return rows


def run_worker(task: str, payload, *, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run ``python -m moesim.bench TASK PAYLOAD`` and return its JSON answer (last stdout line)."""
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


def bench_scaling(token_counts, expert_counts, *, work: int, thread_counts=(1, 2)) -> dict:
    """Section 3: steps/s per (T, E) for each thread count; identical results across them."""
    configs = scaling_configs(token_counts, expert_counts, work)
    by_threads = {}
    for n_threads in thread_counts:
        env = {"NUMBA_NUM_THREADS": str(n_threads), "OPENBLAS_NUM_THREADS": str(n_threads)}
        by_threads[n_threads] = run_worker("scaling", configs, env=env)
    rows = []
    for i, config in enumerate(configs):
        row = {
            "tokens": config["tokens"]["tokens_per_step"],
            "experts": config["router"]["experts"],
            "steps": config["steps"],
        }
        for n_threads in thread_counts:
            row[f"steps_per_second_{n_threads}t"] = by_threads[n_threads][i]["steps_per_second"]
        hashes = {by_threads[n][i]["hash"] for n in thread_counts}
        row["identical"] = len(hashes) == 1
        row["hash"] = by_threads[thread_counts[0]][i]["hash"]
        rows.append(row)
    return {"rows": rows, "identical": all(r["identical"] for r in rows)}


# ----------------------------------------------------------------------------------------------
# 4. Start-up


def moesim_command() -> list[str]:
    """The ``moesim`` console script next to this interpreter, else ``python -m moesim``."""
    script = Path(sys.executable).with_name("moesim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "moesim"]


def startup_scenario_yaml(steps: int, tokens_per_step: int = 4096) -> str:
    """DeepSeek-V3's shipped router (one variant) for ``steps`` steps, as YAML."""
    import yaml

    scenario = step_scenario(tokens_per_step=tokens_per_step, steps=steps)
    scenario["name"] = "bench_startup"
    scenario["capacity"] = {"factor": None}
    return yaml.safe_dump(scenario, sort_keys=False)


def bench_startup(
    *, steps: int, cold: bool, repeats: int, warmup: int = 1, tokens_per_step: int = 4096
) -> dict:
    """Section 4: wall time of ``moesim run`` (cold: a fresh Numba cache; warm: cache filled).

    Without ``cold`` the warm runs use the normal cache (``warmup`` untimed runs fill it).
    """
    result = {"steps": steps, "tokens_per_step": tokens_per_step, "cold": None}
    with tempfile.TemporaryDirectory(prefix="moesim-bench-") as workdir:
        scenario = Path(workdir, "startup.yaml")
        scenario.write_text(startup_scenario_yaml(steps, tokens_per_step))
        output = str(Path(workdir, "out"))
        command = moesim_command() + ["run", str(scenario), "--quiet", "-o", output, "--force"]
        env = dict(os.environ)
        if cold:
            env["NUMBA_CACHE_DIR"] = str(Path(workdir, "numba-cache"))

        def run_once() -> float:
            started = time.perf_counter()
            completed = subprocess.run(command, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if completed.returncode != 0:
                raise RuntimeError(f"moesim run failed:\n{completed.stderr[-2000:]}")
            return seconds

        if cold:
            result["cold"] = summarize_samples([run_once()])  # compiles into the empty cache
        else:
            for _ in range(warmup):
                run_once()
        result["warm"] = summarize_samples([run_once() for _ in range(repeats)])
    return result


# ----------------------------------------------------------------------------------------------
# 5. Memory


def memory_scenario(steps: int) -> dict:
    """A tiny router (T=64, E=16, K=2) with default recording (about 1000 rows per run)."""
    return {
        "name": "bench_memory",
        "steps": steps,
        "tokens": {"tokens_per_step": 64, "dim": 64, "clusters": 16, "seq_len": 64},
        "router": {"experts": 16, "top_k": 2, "score": "sigmoid"},
    }


def _memory_worker(step_counts: list[int]) -> list[dict]:
    """In a subprocess: run each scenario as ``moesim run`` does, in increasing length; after
    each, the peak RSS so far (MB) and seconds. ``ru_maxrss`` is a high-water mark, so the peak
    after a longer run is that run's peak (it can only be higher than the shorter run's)."""
    from moesim.engine import simulate

    rows = []
    for steps in sorted(step_counts):
        started = time.perf_counter()
        simulate(memory_scenario(steps))
        seconds = time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        rows.append({"steps": steps, "seconds": seconds, "peak_rss_mb": peak_kb / 1024})
    return rows


def bench_memory(steps: int, *, threads: int = 1) -> dict:
    """Section 5: peak RSS of a ``steps``-step run; below a million steps, extrapolated.

    The extrapolation is linear in steps through a run of one tenth the length, made before in
    the same process (recording keeps about 1000 rows whatever the length, so the slope should
    be close to zero). One Numba thread by default: a 64-token step is far too small to share,
    and on a busy machine every parallel region of such a step waits for a descheduled worker.
    """
    env = {"NUMBA_NUM_THREADS": str(threads)}
    if steps >= MEMORY_TARGET_STEPS:
        measured = run_worker("memory", [steps], env=env)[0]
        return {
            "measured": measured,
            "target_steps": MEMORY_TARGET_STEPS,
            "peak_rss_mb": measured["peak_rss_mb"],
            "extrapolated": False,
        }
    # The short run twice: the first pays the one-time allocations (kernel loading), so the
    # slope compares two warm runs and does not blow allocator noise up a hundredfold.
    short_steps = max(1, steps // 10)
    _, short, measured = run_worker("memory", [short_steps, short_steps, steps], env=env)
    slope = (measured["peak_rss_mb"] - short["peak_rss_mb"]) / max(1, steps - short["steps"])
    if short_steps < 1000:
        # Shorter runs record fewer than ~1000 rows, so their growth is not the per-step slope.
        slope = 0.0
    return {
        "measured": measured,
        "short": short,
        "target_steps": MEMORY_TARGET_STEPS,
        "peak_rss_mb": measured["peak_rss_mb"] + max(0.0, slope) * (MEMORY_TARGET_STEPS - steps),
        "extrapolated": True,
        "seconds_per_million_steps": measured["seconds"] / steps * MEMORY_TARGET_STEPS,
    }


# ----------------------------------------------------------------------------------------------
# Goals, machine, the whole suite


def _routing_row(results: dict, n_tokens: int = 4096) -> dict | None:
    rows = results.get("routing", {}).get("rows", [])
    exact = [r for r in rows if r["tokens"] == n_tokens]
    return exact[0] if exact else (rows[-1] if rows else None)


#: Share of the machine's CPU time that other processes may take during a timed section before
#: its timings stop counting: on 2 cores, one busy process makes every parallel region wait for
#: a scheduler tick (timings become multiples of 4 ms), which no ratio survives.
BUSY_ELSEWHERE_LIMIT = 0.15


def _cpu_counters() -> tuple[float, float, float] | None:
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
    """Share of the machine's CPU time used by other processes between two `_cpu_counters`."""
    if before is None or after is None:
        return None
    busy = after[0] - before[0]
    total = after[1] - before[1]
    mine = after[2] - before[2]
    if total <= 0:
        return None
    return min(1.0, max(0.0, (busy - mine) / total))


def evaluate_goals(results: dict) -> list[dict]:
    """PASS/MISS of each performance goal (ratios from this run's medians).

    A timing goal whose section ran while other processes took more than
    :data:`BUSY_ELSEWHERE_LIMIT` of the machine's CPU is ``BUSY``, not PASS or MISS.
    """
    goals = []
    busy = results.get("meta", {}).get("busy_elsewhere", {})

    def goal(name, value, target, passed, unit="", note=None, section=None):
        status = "SKIP" if value is None else ("PASS" if passed else "MISS")
        other = busy.get(section) if section else None
        if status != "SKIP" and other is not None and other > BUSY_ELSEWHERE_LIMIT:
            # A verdict from such timings would be noise either way; say so instead.
            status = "BUSY"
            note = f"other processes used {other:.0%} of the CPU: rerun on a quiet machine"
        goals.append(
            {
                "goal": name,
                "value": value,
                "target": target,
                "unit": unit,
                "status": status,
                "note": note,
            }
        )

    row = _routing_row(results)
    if row is not None:
        at = f"T={row['tokens']}"
        moesim_time = row["moesim"]["median"]
        torch_ratio = row["torch"]["median"] / moesim_time if "torch" in row else None
        goal(
            f"routing vs torch ({at})",
            torch_ratio,
            ">= 4",
            (torch_ratio or 0) >= 4,
            "x",
            section="routing",
        )
        numpy_ratio = row["reference"]["median"] / moesim_time
        goal(
            f"routing vs NumPy reference ({at})",
            numpy_ratio,
            ">= 10",
            numpy_ratio >= 10,
            "x",
            section="routing",
        )
    step = results.get("step")
    if step:
        off = step["learning_off"]["median"] / step["blas_logits"]["median"]
        goal("step, learning off / X@W.T", off, "<= 3", off <= 3, "x", section="step")
        blas_both = step["blas_logits"]["median"] + step["blas_gradient"]["median"]
        on = step["learning_on"]["median"] / blas_both
        goal("step, learning on / (X@W.T + G.T@X)", on, "<= 4", on <= 4, "x", section="step")
    startup = results.get("startup")
    if startup:
        warm = startup["warm"]["median"]
        goal(
            f"warm start, {startup['steps']} steps",
            warm,
            "<= 3",
            warm <= 3,
            "s",
            section="startup",
        )
        cold = startup["cold"]["median"] if startup.get("cold") else None
        goal(
            "cold start (empty Numba cache)",
            cold,
            "<= 30",
            (cold or 0) <= 30,
            "s",
            section="startup",
        )
    scaling = results.get("scaling")
    if scaling:
        same = scaling["identical"]
        goal("identical results, 1 vs 2 threads", same, "yes", same)
    memory = results.get("memory")
    if memory:
        peak = memory["peak_rss_mb"]
        note = "extrapolated" if memory["extrapolated"] else None
        goal("peak RSS, 1M-step run", peak, "<= 1024", peak <= 1024, "MB", note)
    return goals


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
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": torch_version,
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }


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
    if mode not in MODES:
        raise ValueError(f"mode is {mode!r}; it must be one of {sorted(MODES)}")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    sizes = dict(MODES[mode])
    if memory_steps is not None:
        sizes["memory_steps"] = int(memory_steps)

    def say(message: str) -> None:
        if console is not None:
            console.print(f"[dim]{message}[/]", highlight=False)

    started = time.perf_counter()
    results = {"meta": {"mode": mode, "threads": set_threads(threads), **machine_info()}}
    runners = {
        "routing": lambda: bench_routing(
            sizes["routing_tokens"],
            repeats=sizes["routing_repeats"],
            reference_repeats=sizes["reference_repeats"],
            threads=threads,
        ),
        "step": lambda: bench_step(
            sizes["step_tokens"], steps=sizes["step_steps"], repeats=sizes["step_repeats"]
        ),
        "scaling": lambda: bench_scaling(
            sizes["scaling_tokens"], sizes["scaling_experts"], work=sizes["scaling_work"]
        ),
        "startup": lambda: bench_startup(
            steps=sizes["startup_steps"],
            cold=sizes["startup_cold"],
            repeats=sizes["startup_repeats"],
            warmup=sizes.get("startup_warmup", 1),
            tokens_per_step=sizes.get("startup_tokens", 4096),
        ),
        "memory": lambda: bench_memory(sizes["memory_steps"]),
    }
    messages = {
        "routing": "routing: moesim, NumPy reference, torch (own process) ...",
        "step": "full step vs BLAS ...",
        "scaling": "scaling, 1 and 2 threads (subprocesses) ...",
        "startup": "start-up of `moesim run`"
        + (" (cold compiles every kernel: about half a minute)" if sizes["startup_cold"] else "")
        + " ...",
        "memory": f"memory of a {sizes['memory_steps']:,}-step run ...",
    }
    section_seconds = results["meta"]["section_seconds"] = {}
    busy = results["meta"]["busy_elsewhere"] = {}
    for name in SECTIONS:
        if name in sections:
            say(messages[name])
            section_started = time.perf_counter()
            counters = _cpu_counters()
            results[name] = runners[name]()
            busy[name] = busy_elsewhere(counters, _cpu_counters())
            section_seconds[name] = time.perf_counter() - section_started
            if busy[name] is not None and busy[name] > BUSY_ELSEWHERE_LIMIT:
                say(f"  other processes used {busy[name]:.0%} of the CPU during this section")
    results["goals"] = evaluate_goals(results)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    results["meta"]["seconds"] = time.perf_counter() - started
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2, default=repr) + "\n")
    return results


# ----------------------------------------------------------------------------------------------
# Rendering


def _ms(timing: dict | None) -> str:
    if not timing:
        return "-"
    return f"{timing['median'] * 1e3:,.2f} ± {timing['iqr'] * 1e3:,.2f}"


def _value(value, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.2f}{unit and ' ' + unit}"


def render(results: dict, console) -> None:
    """Print the results as rich tables (times: median ± IQR)."""
    from rich import box
    from rich.table import Table

    def table(title: str, *columns: str) -> Table:
        t = Table(title=title, title_style="bold", box=box.SIMPLE_HEAD, header_style="bold")
        for i, column in enumerate(columns):
            t.add_column(column, justify="left" if i == 0 else "right")
        return t

    if not console.is_terminal:
        # Written to a log or a pipe (80 columns by default): room for whole headers and numbers.
        console.width = max(console.width, 132)
    meta = results["meta"]
    console.print(
        f"[bold]{meta['cpu']}[/], {meta['cores']} cores; numpy {meta['numpy']}, numba "
        f"{meta['numba']}, torch {meta['torch'] or 'absent'}; threads {meta['threads']}; "
        f"load {meta['load_average'][0]:.2f}",
        highlight=False,
    )
    routing = results.get("routing")
    if routing:
        t = table(
            "Routing, DeepSeek-V3 (E=256, K=8, 8 groups keep 4), float32 — ms",
            "T",
            "moesim",
            "NumPy ref",
            "torch",
            "ref/moesim",
            "torch/moesim",
            "torch agrees",
        )
        for row in routing["rows"]:
            base = row["moesim"]["median"]
            torch_row = row.get("torch")
            t.add_row(
                f"{row['tokens']:,}",
                _ms(row["moesim"]),
                _ms(row["reference"]),
                _ms(torch_row),
                f"{row['reference']['median'] / base:,.1f}x",
                f"{torch_row['median'] / base:,.2f}x" if torch_row else "-",
                f"{row['torch_agreement']:.4%}" if torch_row else "-",
            )
        console.print(t)
        if routing["torch_note"]:
            console.print(f"[yellow]{routing['torch_note']}[/]")
    step = results.get("step")
    if step:
        t = table(f"Full step, T={step['tokens']:,}, E=256, d=64 — ms", "what", "time", "ratio")
        logits_blas, gradient_blas = step["blas_logits"], step["blas_gradient"]
        t.add_row("BLAS X @ W.T", _ms(logits_blas), "1")
        t.add_row("BLAS G.T @ X", _ms(gradient_blas), "")
        t.add_row(
            "step, learning off",
            _ms(step["learning_off"]),
            f"{step['learning_off']['median'] / logits_blas['median']:.1f}x X@W.T",
        )
        both = logits_blas["median"] + gradient_blas["median"]
        t.add_row(
            "step, learning on",
            _ms(step["learning_on"]),
            f"{step['learning_on']['median'] / both:.1f}x both",
        )
        for name, timing in step["pieces"].items():
            t.add_row(f"  piece: {name}", _ms(timing), "")
        console.print(t)
    scaling = results.get("scaling")
    if scaling:
        t = table("Scaling — steps/s", "T", "E", "1 thread", "2 threads", "speed-up", "identical")
        for row in scaling["rows"]:
            one, two = row["steps_per_second_1t"], row["steps_per_second_2t"]
            t.add_row(
                f"{row['tokens']:,}",
                str(row["experts"]),
                f"{one:,.1f}",
                f"{two:,.1f}",
                f"{two / one:.2f}x",
                "yes" if row["identical"] else "[red]no[/]",
            )
        console.print(t)
    startup = results.get("startup")
    if startup:
        t = table(f"Start-up, moesim run ({startup['steps']} steps) — s", "cache", "wall time")
        for key in ("cold", "warm"):
            timing = startup.get(key)
            t.add_row(key, f"{timing['median']:.2f} ± {timing['iqr']:.2f}" if timing else "skipped")
        console.print(t)
    memory = results.get("memory")
    if memory:
        measured = memory["measured"]
        how = "extrapolated from " if memory["extrapolated"] else ""
        console.print(
            f"[bold]Memory[/]: peak RSS {memory['peak_rss_mb']:,.0f} MB for 1,000,000 steps "
            f"({how}{measured['steps']:,} steps: {measured['peak_rss_mb']:,.0f} MB in "
            f"{measured['seconds']:,.1f} s)",
            highlight=False,
        )
    t = table("Goals", "goal", "value", "target", "status")
    style = {"PASS": "green", "MISS": "bold red", "SKIP": "yellow", "BUSY": "yellow"}
    for g in results["goals"]:
        note = f" ({g['note']})" if g.get("note") else ""
        t.add_row(
            g["goal"] + note,
            _value(g["value"], g["unit"]),
            f"{g['target']} {g['unit']}".strip(),
            f"[{style[g['status']]}]{g['status']}[/]",
        )
    console.print(t)


def _worker_main(argv: list[str]) -> None:
    task, payload = argv[0], json.loads(argv[1])
    if task == "scaling":
        answer = _scaling_worker(payload)
    elif task == "torch_routing":
        answer = _torch_routing_worker(payload)
    elif task == "memory":
        answer = _memory_worker([int(n) for n in payload])
    else:
        raise SystemExit(f"unknown benchmark worker {task!r}")
    print(json.dumps(answer))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
