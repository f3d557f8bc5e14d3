"""Section 1, routing only: moesim's kernel, the NumPy reference and a PyTorch CPU twin.

DeepSeek-V3 routing (E=256, K=8, 8 groups keep 4, sigmoid + bias, scale 2.5) on the same float32
logits, with the same thread count. The torch twin is also a correctness cross-check (agreement
of the chosen expert sets). :func:`bench_fused_step` times the fused step kernel (routing +
counts) against the same reference and the BLAS matmul; ``benchmarks/routing.py`` runs it.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from moesim.bench.common import (
    DEEPSEEK_V3_EXPERTS,
    DEEPSEEK_V3_ROUTING,
    run_worker,
    summarize_samples,
    time_call,
    torch_available,
)

#: The fused step must beat the NumPy reference by this factor (``benchmarks/routing.py``).
FUSED_STEP_GOAL_VS_REFERENCE = 5.0


def routing_inputs(
    n_tokens: int, seed: int = 0, experts: int = DEEPSEEK_V3_EXPERTS
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits (T, E) ~ N(0, 1) and a bias (E,) ~ N(0, 0.05), as a trained router."""
    rng = np.random.default_rng([seed, n_tokens])
    logits = rng.standard_normal((n_tokens, experts)).astype(np.float32)
    bias = (0.05 * rng.standard_normal(experts)).astype(np.float32)
    return logits, bias


def same_expert_sets(indices: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(T,) bool: whether two routings chose the same set of experts for each token, in any
    order (indices (T, K) each)."""
    return (np.sort(indices, axis=1) == np.sort(other, axis=1)).all(axis=1)


# ----------------------------------------------------------------------------------------------
# The PyTorch twin (run in a worker process)


def torch_route(logits, bias, *, top_k, n_groups, topk_groups, route_scale, group_score_topk=2):
    """DeepSeek-V3 routing in PyTorch, written from the semantics (docs/model.md §2).

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


def numpy_float32_route(logits, bias, *, top_k, n_groups, topk_groups, route_scale):
    """:func:`torch_route` in NumPy, every operation in float32 as torch does it (the float32
    twin moesim's float32 scores are checked against when torch is not installed).

    Returns ``(indices (T, K) int64, weights (T, K) float32)``; ties in the top-K go to the
    lower expert id.
    """
    one = np.float32(1.0)
    scores = one / (one + np.exp(-logits))
    selection = scores + bias
    n_tokens, n_experts = logits.shape
    grouped = selection.reshape(n_tokens, n_groups, n_experts // n_groups)
    top_two = np.sort(grouped, axis=-1)[..., -2:]
    group_scores = top_two[..., 1] + top_two[..., 0]
    kept = np.argsort(-group_scores, axis=1, kind="stable")[:, :topk_groups]
    dropped = np.ones((n_tokens, n_groups), dtype=bool)
    np.put_along_axis(dropped, kept, False, axis=1)
    masked = np.where(dropped[:, :, None], np.float32(-np.inf), grouped).reshape(n_tokens, -1)
    indices = np.argsort(-masked, axis=1, kind="stable")[:, :top_k]
    weights = np.take_along_axis(scores, indices, axis=1)
    weights = weights / (weights.sum(axis=1, keepdims=True) + np.float32(1e-20))
    return indices, (weights * np.float32(route_scale)).astype(np.float32)


def float32_twin_agreement(n_tokens: int) -> float:
    """Share of tokens for which ``moesim.route`` (float32 scores) and
    :func:`numpy_float32_route` choose the same set of experts (DeepSeek-V3, the inputs of
    :func:`routing_inputs`)."""
    from moesim.kernels.routing import route

    logits, bias = routing_inputs(n_tokens)
    options = {k: v for k, v in DEEPSEEK_V3_ROUTING.items() if k != "score"}
    with np.errstate(over="ignore"):
        twin_indices, _ = numpy_float32_route(logits, bias, **options)
    indices, _ = route(logits, bias, **DEEPSEEK_V3_ROUTING)
    return float(same_expert_sets(indices, twin_indices).mean())


def torch_routing_worker(payload: dict) -> dict:
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


# ----------------------------------------------------------------------------------------------
# The section


def bench_routing(token_counts, *, repeats: int, reference_repeats: int, threads: int) -> dict:
    """Section 1: moesim, NumPy reference and torch routing times per T, and torch agreement."""
    rows = [
        time_moesim_and_reference(n_tokens, repeats=repeats, reference_repeats=reference_repeats)
        for n_tokens in token_counts
    ]
    for row in rows:
        row["float32_twin_agreement"] = float32_twin_agreement(row["tokens"])
    fight_tokens = 4096 if 4096 in token_counts else max(token_counts)
    fight = {"tokens": fight_tokens, **time_route_after_matmul(fight_tokens, repeats=repeats)}
    if not torch_available():
        return {
            "rows": rows,
            "after_matmul": fight,
            "torch_note": "torch not installed (pip install 'moesim[bench]')",
        }
    with tempfile.TemporaryDirectory(prefix="moesim-bench-torch-") as workdir:
        payload = {"tokens": list(token_counts), "repeats": repeats, "threads": threads}
        answer = run_worker("torch_routing", {**payload, "dir": workdir})
        for row in rows:
            row["torch"] = answer["rows"][str(row["tokens"])]
            row.update(compare_with_torch(row["tokens"], workdir))
    return {
        "rows": rows,
        "after_matmul": fight,
        "torch_note": None,
        "torch_threads": answer["threads"],
    }


def time_moesim_and_reference(n_tokens: int, *, repeats: int, reference_repeats: int) -> dict:
    """``{"tokens", "moesim", "reference"}``: times of ``moesim.route`` and the NumPy reference."""
    from moesim.kernels.routing import route
    from moesim.reference import route_reference

    logits, bias = routing_inputs(n_tokens)
    return {
        "tokens": n_tokens,
        "moesim": time_call(
            lambda: route(logits, bias, **DEEPSEEK_V3_ROUTING), repeats=repeats, warmup=2
        ),
        # Plain NumPy: nothing to compile or warm up, and each call is slow.
        "reference": time_call(
            lambda: route_reference(logits, bias, **DEEPSEEK_V3_ROUTING),
            repeats=reference_repeats,
            warmup=0,
        ),
    }


def time_route_after_matmul(n_tokens: int = 4096, *, repeats: int, dim: int = 64) -> dict:
    """The thread fight: ``moesim.route`` on logits a NumPy matmul has just made, against the
    same call on logits moesim's own kernel has just made (only the ``route`` call is timed).

    After a threaded BLAS call OpenBLAS's worker threads busy-wait for about 0.1 s; a Numba
    parallel region started in that window shares the cores with them unless moesim stops them
    first (``moesim._jit.quiet_blas_threads``). The two cases alternate, one call each.
    Returns ``{"after_numpy", "after_moesim"}`` timings.
    """
    from moesim.kernels.routing import route, router_logits

    rng = np.random.default_rng(2)
    x = rng.standard_normal((n_tokens, dim)).astype(np.float32)
    w = rng.standard_normal((DEEPSEEK_V3_EXPERTS, dim)).astype(np.float32)
    _, bias = routing_inputs(n_tokens)
    samples = {"after_numpy": [], "after_moesim": []}
    for index in range(repeats + 2):  # two warm-up rounds
        for case, make_logits in (("after_numpy", lambda: x @ w.T), ("after_moesim", None)):
            logits = make_logits() if make_logits else router_logits(x, w)
            started = time.perf_counter()
            route(logits, bias, **DEEPSEEK_V3_ROUTING)
            if index >= 2:
                samples[case].append(time.perf_counter() - started)
    return {case: summarize_samples(values) for case, values in samples.items()}


def compare_with_torch(n_tokens: int, workdir: str) -> dict:
    """How often torch's routing (saved in ``workdir`` by its worker) agrees with moesim's.

    Returns the share of tokens with the same expert set, with the same experts in the same
    order, and the largest weight difference on the tokens with the same set.
    """
    from moesim.kernels.routing import route

    torch_indices = np.load(Path(workdir, f"indices_{n_tokens}.npy"))
    torch_weights = np.load(Path(workdir, f"weights_{n_tokens}.npy"))
    indices, weights = route(*routing_inputs(n_tokens), **DEEPSEEK_V3_ROUTING)
    same_sets = same_expert_sets(indices, torch_indices)
    # Weights compared expert by expert, on the tokens where both chose the same set.
    ours = np.take_along_axis(weights, np.argsort(indices, axis=1), 1)[same_sets]
    theirs = np.take_along_axis(torch_weights, np.argsort(torch_indices, axis=1), 1)[same_sets]
    return {
        "torch_agreement": float(same_sets.mean()),
        "torch_ordered_agreement": float((indices == torch_indices).all(axis=1).mean()),
        "torch_max_weight_diff": float(np.abs(ours - theirs).max(initial=0.0)),
    }


# ----------------------------------------------------------------------------------------------
# The fused step kernel (benchmarks/routing.py)


def bench_fused_step(
    n_tokens: int = 4096,
    *,
    experts: int = DEEPSEEK_V3_EXPERTS,
    top_k: int = 8,
    dim: int = 64,
    repeats: int = 20,
) -> dict:
    """The fused step kernel (``moesim.routing_step``: routing + counts) against the NumPy
    reference, with the BLAS matmul ``X @ W.T`` (T×d by d×E, float32) for context.

    DeepSeek-V3's routing with ``experts`` experts and ``top_k`` per token, on the inputs of
    :func:`routing_inputs`. Times are medians in ms; ``agreement`` is the share of tokens for
    which the kernel and the reference chose the same experts (anything but 1 voids the speed).
    """
    import numba

    from moesim.kernels.step import routing_step
    from moesim.reference import route_reference

    options = {**DEEPSEEK_V3_ROUTING, "top_k": top_k}
    logits, bias = routing_inputs(n_tokens, experts=experts)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_tokens, dim)).astype(np.float32)
    w = rng.standard_normal((experts, dim)).astype(np.float32)
    fused = time_call(lambda: routing_step(logits, bias, **options), repeats=repeats)
    reference = time_call(
        lambda: route_reference(logits, bias, **options), repeats=max(3, repeats // 5), warmup=0
    )
    matmul = time_call(lambda: x @ w.T, repeats=repeats)
    same_sets = same_expert_sets(
        routing_step(logits, bias, **options).indices, route_reference(logits, bias, **options)[0]
    )
    speedup = reference["median"] / fused["median"]
    return {
        "shape": {
            "tokens": n_tokens,
            "experts": experts,
            "top_k": top_k,
            "dim": dim,
            "repeats": repeats,
        },
        "threads": numba.get_num_threads(),
        "machine": platform.platform(),
        "fused_ms": fused["median"] * 1e3,
        "fused_iqr_ms": fused["iqr"] * 1e3,
        "reference_ms": reference["median"] * 1e3,
        "reference_iqr_ms": reference["iqr"] * 1e3,
        "matmul_ms": matmul["median"] * 1e3,
        "matmul_iqr_ms": matmul["iqr"] * 1e3,
        "speedup_vs_reference": speedup,
        "goal_vs_reference": FUSED_STEP_GOAL_VS_REFERENCE,
        "passed": bool(speedup >= FUSED_STEP_GOAL_VS_REFERENCE),
        "agreement": float(same_sets.mean()),
    }
