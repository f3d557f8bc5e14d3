"""Section 5, memory: peak RSS (``ru_maxrss`` of a worker process) of a run of a tiny router
(T=64, E=16, K=2, one Numba thread) with default recording, for a million steps: measured, or
extrapolated from a shorter run.
"""

from __future__ import annotations

import resource
import time

from moesim.bench.common import run_worker

#: The million-step memory goal, and the tiny router it is measured on.
MEMORY_TARGET_STEPS = 1_000_000


def memory_scenario(steps: int) -> dict:
    """A tiny router (T=64, E=16, K=2) with default recording (about 1000 rows per run)."""
    return {
        "name": "bench_memory",
        "steps": steps,
        "tokens": {"tokens_per_step": 64, "dim": 64, "clusters": 16, "seq_len": 64},
        "router": {"experts": 16, "top_k": 2, "score": "sigmoid"},
    }


def memory_worker(step_counts: list[int]) -> list[dict]:
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
