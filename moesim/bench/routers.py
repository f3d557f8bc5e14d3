"""Section "routers": the kernels of the routing algorithms beyond top-K against their NumPy
twins (docs/model.md §2.2-§2.4, §4.1), and the growth of the whole-batch ones with T and E.

Every kernel runs on float32 logits ``N(0, 1)`` (or tokens, for the jitter) with the suite's
thread count; ``agreement`` is the share of tokens whose experts the kernel and its twin agree
on (anything but 1 voids the speed). Times are medians in seconds (``time_call``).
"""

from __future__ import annotations

import numpy as np

from moesim.bench.common import time_call

#: The twins are slow: one timed call each at full size.
TWIN_REPEATS = 1


def _logits(n_tokens: int, n_experts: int) -> np.ndarray:
    rng = np.random.default_rng([n_tokens, n_experts])
    return rng.standard_normal((n_tokens, n_experts)).astype(np.float32)


def _kernel_cases(n_tokens: int, n_experts: int, top_k: int, dim: int):
    """``name -> (kernel call, twin call, agreement of their outputs)`` at one size."""
    from moesim.kernels.expert_choice import expert_choice
    from moesim.kernels.jitter import input_jitter
    from moesim.kernels.routing import route
    from moesim.kernels.sinkhorn import sinkhorn_route
    from moesim.reference import route_reference
    from moesim.reference_routers import (
        expert_choice_reference,
        input_jitter_reference,
        sinkhorn_route_reference,
    )

    logits = _logits(n_tokens, n_experts)
    tokens = _logits(n_tokens, dim)
    factors = (1.0 + 0.05 * np.random.default_rng(1).standard_normal(n_experts)).astype(np.float32)
    bucket = int(np.ceil(n_tokens * top_k / n_experts))
    mult = {"top_k": top_k, "score": "sigmoid", "bias_mode": "multiplicative"}

    def jitter_agreement():
        same = input_jitter(tokens, 1e-2, key=1) == input_jitter_reference(tokens, 1e-2, 1, 0)
        return float(same.all(axis=1).mean())

    def expert_choice_agreement():
        indices, _, keep, _ = expert_choice(logits, top_k=top_k)
        chosen, _ = expert_choice_reference(logits, bucket)
        same = [indices[t][keep[t]].tolist() == [e for e, _ in chosen[t]] for t in range(n_tokens)]
        return float(np.mean(same))

    def sinkhorn_agreement():
        indices, _, _ = sinkhorn_route(logits, top_k=top_k)
        reference, _, _ = sinkhorn_route_reference(logits, top_k)
        return float((np.sort(indices, 1) == np.sort(reference, 1)).all(axis=1).mean())

    def multiplicative_agreement():
        indices, _ = route(logits, factors, **mult)
        reference, _ = route_reference(logits, factors, **mult)
        return float((indices == reference).all(axis=1).mean())

    return {
        "input_jitter": (
            lambda: input_jitter(tokens, 1e-2, key=1),
            lambda: input_jitter_reference(tokens, 1e-2, 1, 0),
            jitter_agreement,
        ),
        "expert_choice": (
            lambda: expert_choice(logits, top_k=top_k),
            lambda: expert_choice_reference(logits, bucket),
            expert_choice_agreement,
        ),
        "sinkhorn": (
            lambda: sinkhorn_route(logits, top_k=top_k),
            lambda: sinkhorn_route_reference(logits, top_k),
            sinkhorn_agreement,
        ),
        "multiplicative_bias": (
            lambda: route(logits, factors, **mult),
            lambda: route_reference(logits, factors, **mult),
            multiplicative_agreement,
        ),
    }


def bench_routers(
    n_tokens: int,
    n_experts: int,
    *,
    repeats: int,
    growth_tokens=(),
    growth_experts=(),
    top_k: int = 8,
    dim: int = 64,
) -> dict:
    """Each new kernel against its twin at ``(n_tokens, n_experts)``; then expert choice and
    Sinkhorn over ``growth_tokens`` x ``growth_experts`` (the kernel only).

    Returns ``{"tokens", "experts", "top_k", "rows": [{"kernel", "moesim", "reference",
    "agreement"}], "growth": [{"kernel", "tokens", "experts", "moesim", "iterations"}]}``.
    """
    rows = []
    for name, (kernel, twin, agreement) in _kernel_cases(n_tokens, n_experts, top_k, dim).items():
        rows.append(
            {
                "kernel": name,
                "moesim": time_call(kernel, repeats=repeats, warmup=1),
                "reference": time_call(twin, repeats=TWIN_REPEATS, warmup=0),
                "agreement": agreement(),
            }
        )
    return {
        "tokens": n_tokens,
        "experts": n_experts,
        "top_k": top_k,
        "rows": rows,
        "growth": bench_growth(growth_tokens, growth_experts, top_k=top_k, repeats=repeats),
    }


def bench_growth(token_counts, expert_counts, *, top_k: int, repeats: int) -> list[dict]:
    """Cost per step of expert choice and Sinkhorn routing over T x E (kernel only)."""
    from moesim.kernels.expert_choice import expert_choice
    from moesim.kernels.sinkhorn import sinkhorn_route

    rows = []
    for n_experts in expert_counts:
        for n_tokens in token_counts:
            logits = _logits(n_tokens, n_experts)
            k = min(top_k, n_experts)
            iterations = sinkhorn_route(logits, top_k=k)[2]
            for name, call in (
                ("expert_choice", lambda logits=logits, k=k: expert_choice(logits, top_k=k)),
                ("sinkhorn", lambda logits=logits, k=k: sinkhorn_route(logits, top_k=k)),
            ):
                rows.append(
                    {
                        "kernel": name,
                        "tokens": n_tokens,
                        "experts": n_experts,
                        "moesim": time_call(call, repeats=repeats, warmup=1),
                        "iterations": iterations if name == "sinkhorn" else None,
                    }
                )
    return rows
