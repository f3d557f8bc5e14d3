"""Slow, obviously-correct NumPy twins of the routing algorithms beyond top-K (docs/model.md
§2.2-§2.4): input jitter, expert choice, Sinkhorn routing, and the batch-dependence measure.

Written from the sources' formulas, whole arrays at a time, with none of the kernels' chunking.
"""

from __future__ import annotations

import numpy as np

from moesim.reference import scores_reference

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TAG_JITTER = np.uint64(3)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def jitter_uniforms_reference(key: int, step: int, n_tokens: int, dim: int) -> np.ndarray:
    """Uniforms ``u[t, j]`` in (0, 1) of the jitter: the ``j+1``-th draw of token ``t``'s stream
    keyed by ``(key, step, tag 3, t)`` (SplitMix64, as ``moesim.tokens`` keys its streams)."""
    with np.errstate(over="ignore"):
        key = np.array([key], np.uint64)
        z = _mix64(key + _GOLDEN * np.uint64(step + 1))
        z = _mix64(z ^ (_TAG_JITTER * _MIX_1))
        tokens = np.arange(n_tokens, dtype=np.uint64)
        start = _mix64(z + _GOLDEN * (tokens + np.uint64(1)))  # (T,)
        draws = np.arange(1, dim + 1, dtype=np.uint64)
        states = start[:, None] + _GOLDEN * draws[None, :]
        bits = _mix64(states) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) / 9007199254740992.0


def input_jitter_reference(tokens: np.ndarray, eps: float, key: int, step: int) -> np.ndarray:
    """``X * Uniform(1 - eps, 1 + eps)`` element-wise, in the tokens' dtype."""
    u = jitter_uniforms_reference(key, step, *tokens.shape)
    return (tokens.astype(np.float64) * (1.0 - eps + 2.0 * eps * u)).astype(tokens.dtype)


def expert_choice_reference(logits: np.ndarray, bucket: int):
    """Expert choice (Zhou et al. 2022): each expert's ``bucket`` best tokens by softmax score.

    Returns ``(chosen, experts_per_token)``: ``chosen`` is a list, per token, of
    ``(expert, gate)`` in increasing expert id; ``experts_per_token`` (T,) their counts.
    """
    scores = scores_reference(logits, "softmax")
    n_tokens, n_experts = logits.shape
    chosen = [[] for _ in range(n_tokens)]
    for e in range(n_experts):
        # A stable sort of the negated column: ties go to the lower token id.
        for t in np.argsort(-scores[:, e], kind="stable")[:bucket]:
            chosen[t].append((e, scores[t, e]))
    return chosen, np.array([len(c) for c in chosen], dtype=np.int64)


def sinkhorn_reference(logits: np.ndarray, tol: float = 1e-4, max_iterations: int = 10_000):
    """Megatron-Core's ``sinkhorn`` in float64: ``(balanced (T, E), iterations)``."""
    cost = np.exp(logits.astype(np.float64))
    n_tokens, n_experts = cost.shape
    d0 = np.ones(n_tokens)
    d1 = np.ones(n_experts)
    eps = 1e-8
    error, iterations = 1e9, 0
    while error > tol and iterations < max_iterations:
        d0 = (1.0 / n_tokens) / ((cost * d1[None, :]).sum(axis=1) + eps)
        updated = (1.0 / n_experts) / ((cost * d0[:, None]).sum(axis=0) + eps)
        error = np.abs(d1 - updated).mean()
        d1 = updated
        iterations += 1
    return d1[None, :] * cost * d0[:, None], iterations


def sinkhorn_route_reference(logits: np.ndarray, top_k: int):
    """Sinkhorn routing in training: top K of the balanced rows, gates from the logits.

    Returns ``(indices (T, K), weights (T, K), iterations)``.
    """
    balanced, iterations = sinkhorn_reference(logits)
    indices = np.argsort(-balanced, axis=1, kind="stable")[:, :top_k]
    scores = scores_reference(logits, "sigmoid" if top_k == 1 else "softmax")
    return indices, np.take_along_axis(scores, indices, axis=1), iterations


def expert_sets_changed_reference(sets_a: list, sets_b: list) -> float:
    """Share of tokens whose set of experts differs between two routings (lists of sets)."""
    return float(np.mean([set(a) != set(b) for a, b in zip(sets_a, sets_b, strict=True)]))


def experts_per_token_histogram_reference(keep: np.ndarray, bins: int = 4) -> np.ndarray:
    """Tokens with 0, 1, ..., and ``bins - 1`` or more kept experts: (bins,) int64."""
    per_token = np.minimum(keep.sum(axis=1), bins - 1)
    return np.bincount(per_token, minlength=bins).astype(np.int64)
