"""Noisy top-K gating's kernels (``moesim/kernels/noisy.py``) against their NumPy twins
(``moesim/reference_noisy.py``): the noisy logits, the importance and load sums, and the
gradient with respect to ``W_g`` and ``W_noise`` with both losses on.

Shazeer et al.'s layout at the issue's size by default: T=4096 tokens, E=256 experts, K=4,
d=32, float32 logits as the engine routes them, with an expert bias. Times are medians of
repeated calls after a warm-up (the twins' calls are slow and run a few times, no warm-up);
``max_difference`` is the largest absolute difference between kernel and twin (anything large
voids the speed).
"""

from __future__ import annotations

import numpy as np

from moesim.bench.common import time_call


def noisy_inputs(n_tokens: int, experts: int, top_k: int, dim: int, seed: int = 0) -> dict:
    """Tokens, clean and noise logits (float32), a bias, the noise, ``H`` and its routing."""
    from moesim.kernels.logits import router_logits
    from moesim.kernels.noisy import gate_noise, noisy_logits
    from moesim.kernels.routing import route

    rng = np.random.default_rng([seed, n_tokens, experts])
    tokens = (rng.standard_normal((n_tokens, dim)) / np.sqrt(dim)).astype(np.float32)
    gate = (rng.standard_normal((experts, dim)) * 0.5).astype(np.float32)
    noise = (rng.standard_normal((experts, dim)) * 0.5).astype(np.float32)
    clean, noise_logits = router_logits(tokens, gate), router_logits(tokens, noise)
    bias = (0.05 * rng.standard_normal(experts)).astype(np.float32)
    key = np.uint64(seed + 1)
    noisy = noisy_logits(clean, noise_logits, key, 0)
    indices, _ = route(noisy, bias, top_k=top_k, score="softmax_after_topk")
    return {
        "tokens": tokens,
        "clean": clean,
        "noise_logits": noise_logits,
        "bias": bias,
        "key": key,
        "eps": gate_noise(key, 0, n_tokens, experts),
        "noisy": noisy,
        "indices": indices,
        "rewards": rng.uniform(size=indices.shape),
    }


def _kernel_gradient(data: dict, weight: float):
    """``(dJ/dW_g, dJ/dW_noise)`` from the kernels, both losses at ``weight``."""
    from moesim._jit import n_chunks_for
    from moesim.kernels.noisy import _noisy_router_gradient, balance_sums, cv_squared_and_gradient
    from moesim.kernels.routing import SCORE_SOFTMAX

    n_tokens, n_experts = data["clean"].shape
    importance, load = balance_sums(
        data["noisy"], data["clean"], data["noise_logits"], data["bias"], True, data["indices"]
    )
    _, importance_coefficients = cv_squared_and_gradient(importance, weight)
    _, load_coefficients = cv_squared_and_gradient(load, weight)
    n_chunks = n_chunks_for(n_tokens)
    shape = (n_chunks, n_experts, data["tokens"].shape[1])
    chunk_gate, chunk_noise = np.zeros(shape), np.zeros(shape)
    _noisy_router_gradient(
        data["clean"], data["noisy"], data["noise_logits"], data["tokens"], data["indices"],
        data["rewards"], data["key"], 0, data["bias"], True, 1.0, SCORE_SOFTMAX,
        np.empty((0, n_experts)), 1, 0.0, importance_coefficients, load_coefficients,
        chunk_gate, chunk_noise, np.zeros(n_chunks),
    )  # fmt: skip
    return chunk_gate.sum(axis=0), chunk_noise.sum(axis=0)


def _twin_gradient(data: dict, weight: float):
    """``(dJ/dW_g, dJ/dW_noise)`` from the NumPy twin, in float64."""
    from moesim.reference_noisy import noisy_objective_gradient

    d_clean, d_noise = noisy_objective_gradient(
        data["clean"].astype(np.float64), data["noise_logits"].astype(np.float64), data["eps"],
        data["bias"].astype(np.float64), data["indices"], data["rewards"], 1.0, weight, weight,
    )  # fmt: skip
    tokens = data["tokens"].astype(np.float64)
    return d_clean.T @ tokens, d_noise.T @ tokens


def _pairs(data: dict, weight: float) -> dict:
    """Kernel name -> (kernel call, twin call, how to compare their outputs)."""
    from moesim.kernels.noisy import balance_sums, noisy_logits
    from moesim.reference_noisy import (
        gates_reference,
        load_probabilities_reference,
        noisy_logits_reference,
    )

    clean, noise_logits, bias = data["clean"], data["noise_logits"], data["bias"]
    noisy, indices = data["noisy"], data["indices"]
    as64 = [a.astype(np.float64) for a in (clean, noise_logits, noisy, bias)]

    def twin_sums():
        return (
            gates_reference(as64[2], indices).sum(axis=0),
            load_probabilities_reference(*as64, indices).sum(axis=0),
        )

    return {
        "noisy_logits": (
            lambda: noisy_logits(clean, noise_logits, data["key"], 0),
            lambda: noisy_logits_reference(as64[0], as64[1], data["eps"]),
        ),
        "balance_sums": (
            lambda: balance_sums(noisy, clean, noise_logits, bias, True, indices),
            twin_sums,
        ),
        "gradient": (lambda: _kernel_gradient(data, weight), lambda: _twin_gradient(data, weight)),
    }


def bench_noisy(
    n_tokens: int = 4096,
    *,
    experts: int = 256,
    top_k: int = 4,
    dim: int = 32,
    repeats: int = 10,
    reference_repeats: int = 2,
    weight: float = 0.1,
) -> dict:
    """Each noisy top-K kernel against its twin: ``{"shape", "rows"}``, one row per kernel with
    its name ``kernel``, the ``moesim`` and ``reference`` timings (seconds) and
    ``max_difference`` (the row of :func:`moesim.bench.render.render_twins`)."""
    data = noisy_inputs(n_tokens, experts, top_k, dim)
    rows = []
    for name, (kernel, twin) in _pairs(data, weight).items():
        kernel_timing = time_call(kernel, repeats=repeats, warmup=1)
        twin_timing = time_call(twin, repeats=reference_repeats, warmup=0)
        ours, theirs = kernel(), twin()
        ours = ours if isinstance(ours, tuple) else (ours,)
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        pairs = zip(ours, theirs, strict=True)
        difference = max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in pairs)
        rows.append(
            {
                "kernel": name,
                "moesim": kernel_timing,
                "reference": twin_timing,
                "max_difference": difference,
            }
        )
    shape = {"tokens": n_tokens, "experts": experts, "top_k": top_k, "dim": dim}
    return {"shape": shape, "rows": rows}
