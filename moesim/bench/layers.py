"""Section 6, many MoE layers: steps/s against the number of layers L, and a DeepSeek-V3-shaped
step (61 layers, the first three dense: 58 MoE layers of 256 experts, top-8, T=4096).

Every layer routes, balances and counts on its own, and the token paths carry a step's tokens
from layer to layer, so a step should cost about one token batch plus L times one layer: the
seconds per step against L are fitted with a line, whose slope is the cost of a layer. A step's
seconds are marginal (a run minus a one-step run, :func:`~moesim.bench.step.time_steps`):
building a run of many layers is not stepping.

The token-path update alone (:func:`bench_token_paths`): stream version 2's kernel
(``moesim/kernels/paths.py``) against stream version 1's NumPy update and the kernel's NumPy twin
(``moesim/reference_paths.py``), at the section's T and d=64.
"""

from __future__ import annotations

import numpy as np

from moesim.bench.common import step_scenario, time_call
from moesim.bench.step import time_steps

#: DeepSeek-V3: 61 layers, the first 3 dense (first_k_dense_replace), 58 MoE.
DEEPSEEK_V3_LAYERS = 61
DEEPSEEK_V3_DENSE = 3
#: Token dimension of the layered steps (step_scenario) and of scenarios/deepseek_v3_layers.yaml.
PATHS_DIM = 64


def layered_scenario(tokens_per_step: int, layers: int, *, dense: int = 0, steps: int) -> dict:
    """:func:`~moesim.bench.common.step_scenario` with ``layers`` layers, the first ``dense``
    of them dense, one record at the end."""
    scenario = step_scenario(tokens_per_step=tokens_per_step, steps=steps, record_every=steps)
    scenario["layers"] = layers
    if dense:
        scenario["by_layer"] = [{"layers": f"0-{dense - 1}", "dense": True}]
    return scenario


def bench_token_paths(
    n_tokens: int, *, dim: int = PATHS_DIM, repeats: int, reference_repeats: int = 1
) -> dict:
    """Seconds of one layer boundary's update of ``n_tokens`` float32 tokens (rho = 0.9):
    ``kernel`` (stream version 2), ``numpy_update`` (stream version 1) and ``reference`` (the
    kernel's twin), the ratios, and ``max_difference``, the largest ``|kernel - twin|``."""
    from moesim.engine.paths import TokenPaths
    from moesim.reference_paths import advance_tokens_reference

    rng = np.random.default_rng([n_tokens, dim])
    tokens = (rng.standard_normal((n_tokens, dim)) / np.sqrt(dim)).astype(np.float32)
    seed = np.random.SeedSequence(0)
    kernel_paths, numpy_paths = (TokenPaths(2, dim, 0.9, seed, version) for version in (2, 1))
    kernel = time_call(lambda: kernel_paths.advance(tokens, 0, 0), repeats=repeats)
    numpy_update = time_call(lambda: numpy_paths.advance(tokens, 0, 0), repeats=repeats)

    def twin():
        return advance_tokens_reference(
            tokens,
            kernel_paths.permutations[0],
            kernel_paths.signs[0],
            0.9,
            key=int(kernel_paths.noise_key),
        )

    reference = time_call(twin, repeats=reference_repeats, warmup=0)
    difference = np.abs(kernel_paths.advance(tokens, 0, 0).astype(np.float64) - twin()).max()
    return {
        "tokens": n_tokens,
        "dim": dim,
        "kernel": kernel,
        "numpy_update": numpy_update,
        "reference": reference,
        "speedup_vs_numpy_update": numpy_update["median"] / kernel["median"],
        "speedup_vs_reference": reference["median"] / kernel["median"],
        "max_difference": float(difference),
    }


def bench_layers(
    n_tokens: int,
    layer_counts: list[int],
    *,
    steps: int,
    repeats: int,
    deepseek_tokens: int,
    deepseek_layers: int = DEEPSEEK_V3_LAYERS,
    deepseek_dense: int = DEEPSEEK_V3_DENSE,
    deepseek_steps: int = 3,
    paths_repeats: int = 20,
) -> dict:
    """Seconds per step for each L of ``layer_counts`` (T = ``n_tokens``), the line through
    them, a step of the DeepSeek-V3 shape (``deepseek_layers`` layers, ``deepseek_dense``
    dense, T = ``deepseek_tokens``) and the token-path update at T = ``n_tokens``
    (:func:`bench_token_paths`, ``paths_repeats`` calls)."""
    rows = []
    for layers in layer_counts:
        scenario = layered_scenario(n_tokens, layers, steps=steps)
        timing = time_steps(scenario, repeats=repeats, marginal=True)
        rows.append({"layers": layers, "step": timing, "steps_per_second": 1 / timing["median"]})
    seconds = np.array([row["step"]["median"] for row in rows])
    counts = np.array(layer_counts, dtype=float)
    slope, intercept = np.polyfit(counts, seconds, 1) if len(rows) > 1 else (np.nan, np.nan)
    fitted = intercept + slope * counts
    deepseek = layered_scenario(
        deepseek_tokens, deepseek_layers, dense=deepseek_dense, steps=deepseek_steps
    )
    timing = time_steps(deepseek, repeats=3, marginal=True)
    return {
        "tokens": n_tokens,
        "rows": rows,
        "seconds_per_layer": float(slope),
        "seconds_fixed": float(intercept),
        "largest_misfit": float(np.max(np.abs(seconds / fitted - 1))) if len(rows) > 1 else None,
        "deepseek": {
            "tokens": deepseek_tokens,
            "layers": deepseek_layers,
            "moe_layers": deepseek_layers - deepseek_dense,
            "step": timing,
            "steps_per_second": 1 / timing["median"],
        },
        "token_paths": bench_token_paths(n_tokens, repeats=paths_repeats),
    }
