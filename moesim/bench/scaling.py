"""Section 3, scaling: steps/s against T and E, in subprocesses with 1 and 2 Numba threads.

Each run also gives a SHA-256 of its summary (timings removed) and final bias, which must be the
same for both thread counts: results never depend on ``NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from moesim.bench.common import DEEPSEEK_V3_EXPERTS, run_worker, step_scenario


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


def scaling_worker(configs: list[dict]) -> list[dict]:
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
