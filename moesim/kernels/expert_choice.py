"""Expert-choice routing (Zhou et al. 2022, arXiv 2202.09368; docs/model.md §2.3).

``S = softmax(X W^T)`` over the experts of each token; then every expert takes the ``k`` tokens
of the batch with its highest scores (``I = TopK(S^T, k)``, ties to the lower token id) and gates
them with ``G = S[token, expert]``, unnormalised. ``k = ceil(factor * T * K / E)``: the paper's
capacity factor is ``c = factor * K``, so ``factor = 1`` spends the compute of top-K routing.

Every expert takes exactly ``k`` tokens (perfect balance by construction); a token may get any
number of experts, none included, and which ones depends on the rest of its batch (the
causality caveat of the Loss-Free paper, measured by :func:`expert_sets_changed`).

Layers as elsewhere: ``_expert_choice`` (parallel over fixed chunks of tokens for the scores,
then over experts for their picks: any thread count gives the same bits), ``_token_major``
(the picks as per-token rows the rest of the engine reads), and the validating
:func:`expert_choice`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, n_chunks_for, njit, njit_parallel
from moesim.kernels.checks import check_integer, check_real
from moesim.kernels.numerics import softmax_row
from moesim.kernels.router_spec import _check_logits


@njit_parallel
def _expert_choice(logits, bucket, n_chunks, scores_by_expert, expert_tokens, expert_weights):
    """Each expert's ``bucket`` best tokens and their gates.

    ``scores_by_expert`` (E, T) receives ``S^T`` in the logits' dtype; ``expert_tokens`` (E, k)
    int64 the chosen tokens by descending score (ties: lower token id, a stable sort);
    ``expert_weights`` (E, k) their scores.
    """
    n_tokens, n_experts = logits.shape
    for c in prange(n_chunks):
        row = np.empty(n_experts, logits.dtype)
        work = np.empty(n_experts, np.float64)
        exponent_bits = np.empty(n_experts, np.int64)
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            softmax_row(logits[t], row, work, exponent_bits)
            for e in range(n_experts):
                scores_by_expert[e, t] = row[e]
    for e in prange(n_experts):
        # Negation is exact, and a stable sort keeps equal scores in token order.
        order = np.argsort(-scores_by_expert[e], kind="mergesort")
        for i in range(bucket):
            expert_tokens[e, i] = order[i]
            expert_weights[e, i] = scores_by_expert[e, order[i]]


@njit
def _experts_per_token(expert_tokens, n_tokens):
    """How many experts chose each token: (T,) int64."""
    counts = np.zeros(n_tokens, np.int64)
    for e in range(expert_tokens.shape[0]):
        for i in range(expert_tokens.shape[1]):
            counts[expert_tokens[e, i]] += 1
    return counts


@njit
def _token_major(expert_tokens, expert_weights, counts, indices, weights, keep):
    """The picks as per-token rows, experts in increasing id; unused slots are not kept.

    ``indices``, ``weights``, ``keep`` are (T, M) with ``M >= max(counts)``; an unused slot holds
    expert 0, weight 0 and ``keep = False``.
    """
    filled = np.zeros(counts.shape[0], np.int64)
    indices[:, :] = 0
    weights[:, :] = 0
    keep[:, :] = False
    for e in range(expert_tokens.shape[0]):
        for i in range(expert_tokens.shape[1]):
            t = expert_tokens[e, i]
            slot = filled[t]
            indices[t, slot] = e
            weights[t, slot] = expert_weights[e, i]
            keep[t, slot] = True
            filled[t] = slot + 1


@njit
def _expert_sets_changed(indices_a, keep_a, indices_b, keep_b, n_experts):
    """Share of rows whose set of kept experts differs between routing ``a`` and ``b``.

    Rows ``t`` of the two (T, M_a) and (T, M_b) routings are the same token.
    """
    n_tokens = indices_a.shape[0]
    marks = np.zeros(n_experts, np.int64)
    changed = 0
    for t in range(n_tokens):
        stamp = t + 1
        in_a = 0
        for k in range(indices_a.shape[1]):
            if keep_a[t, k]:
                marks[indices_a[t, k]] = stamp
                in_a += 1
        in_b = 0
        shared = 0
        for k in range(indices_b.shape[1]):
            if keep_b[t, k]:
                in_b += 1
                shared += marks[indices_b[t, k]] == stamp
        changed += not (in_a == in_b and shared == in_a)
    return changed / n_tokens if n_tokens else np.nan


def expert_choice_bucket(n_tokens: int, top_k: int, n_experts: int, factor: float) -> int:
    """Tokens each expert takes: ``ceil(factor * T * K / E)`` (``expert_capacity``'s rounding)."""
    return int(np.ceil((n_tokens * top_k / n_experts) * float(factor)))


def run_expert_choice(logits: np.ndarray, bucket: int):
    """Expert choice on checked inputs (the engine's path).

    Returns ``(indices, weights, keep, experts_per_token)``: per-token rows (T, M) with ``M``
    the most experts any token got (at least 1), and the (T,) count of experts per token.
    """
    n_tokens, n_experts = logits.shape
    scores_by_expert = np.empty((n_experts, n_tokens), logits.dtype)
    expert_tokens = np.empty((n_experts, bucket), np.int64)
    expert_weights = np.empty((n_experts, bucket), logits.dtype)
    _expert_choice(
        logits, bucket, n_chunks_for(n_tokens), scores_by_expert, expert_tokens, expert_weights
    )
    counts = _experts_per_token(expert_tokens, n_tokens)
    width = max(1, int(counts.max()))
    indices = np.empty((n_tokens, width), np.int64)
    weights = np.empty((n_tokens, width), logits.dtype)
    keep = np.empty((n_tokens, width), np.bool_)
    _token_major(expert_tokens, expert_weights, counts, indices, weights, keep)
    return indices, weights, keep, counts


def expert_choice(logits, *, top_k: int, capacity_factor: float = 1.0):
    """Expert-choice routing: every expert takes its ``k`` best tokens of the batch.

    Parameters
    ----------
    logits : ndarray, shape (T, E), float32 or float64
        Router logits; the scores are their softmax over experts, in this dtype.
    top_k : int
        K of the top-K routing whose compute this matches.
    capacity_factor : float
        ``k = ceil(capacity_factor * T * K / E)`` tokens per expert; the paper's capacity factor
        is ``c = capacity_factor * K``. ``k`` must be between 1 and T.

    Returns
    -------
    indices : ndarray, shape (T, M), int64
        Each token's experts in increasing id; ``M`` is the most experts any token got.
    weights : ndarray, shape (T, M), dtype of ``logits``
        Gates ``S[t, e]`` (0 in unused slots).
    keep : ndarray, shape (T, M), bool
        Which slots hold an expert.
    experts_per_token : ndarray, shape (T,), int64
        How many experts chose each token (0 for a token no expert took).
    """
    logits = _check_logits(logits)
    n_tokens, n_experts = logits.shape
    top_k = check_integer("top_k", top_k)
    capacity_factor = check_real("capacity_factor", capacity_factor, positive=True)
    if top_k < 1:
        raise ValueError(f"top_k is {top_k}; it must be at least 1")
    bucket = expert_choice_bucket(n_tokens, top_k, n_experts, capacity_factor)
    if bucket > n_tokens:
        raise ValueError(
            f"each expert would take k = ceil({capacity_factor:g} * {n_tokens} * {top_k} / "
            f"{n_experts}) = {bucket} tokens, more than the {n_tokens} of the batch"
        )
    return run_expert_choice(logits, bucket)
