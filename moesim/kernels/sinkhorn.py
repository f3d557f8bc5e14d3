"""Sinkhorn routing (Megatron-Core ``moe_utils.sinkhorn`` and ``TopKRouter.sinkhorn_load_balancing``
in training; docs/model.md §2.4).

Balancing: ``C = exp(Z)``; ``d0 = 1_T``, ``d1 = 1_E``; repeat
``d0 = (1/T) / (C d1 + eps)``, ``d1 = (1/E) / (C^T d0 + eps)`` with ``eps = 1e-8`` until the mean
of ``|d1_old - d1|`` is at most ``tol = 1e-4``; the balanced matrix is ``d1 * C * d0``.
Selection: the top K of each token's row of the balanced matrix (ties: lower expert id).
Gates: ``sigmoid(z)`` (K = 1) or ``softmax(z)`` over all experts (K > 1) of the *logits* at the
selected experts, unnormalised, as Megatron-Core does in training.

Megatron-Core iterates in float32; here ``C``, ``d0`` and ``d1`` are float64 (no overflow of
``exp`` below logits of 709) with the same updates, tolerance and stopping rule, and a cap of
:data:`MAX_SINKHORN_ITERATIONS` that Megatron-Core does not have (its loop has no bound). Column
sums run over fixed chunks of tokens and are added in chunk order, so the result is the same
whatever the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, n_chunks_for, njit_parallel
from moesim.kernels.checks import check_integer
from moesim.kernels.numerics import sigmoid_row, softmax_row
from moesim.kernels.router_spec import _check_logits
from moesim.kernels.selection import _insert_descending

#: Megatron-Core's defaults.
SINKHORN_TOLERANCE = 1e-4
SINKHORN_EPS = 1e-8
#: A bound Megatron-Core's loop lacks: a cost matrix that converges this slowly is reported.
MAX_SINKHORN_ITERATIONS = 10_000


@njit_parallel
def _sinkhorn_balance(logits, tol, max_iterations, n_chunks, cost, d0, d1, chunk_sums):
    """Fill ``cost = exp(Z)`` (T, E) and iterate ``d0`` (T,) and ``d1`` (E,) to convergence.

    ``chunk_sums`` (n_chunks, E) is scratch for the column sums. Returns the iterations run.
    """
    n_tokens, n_experts = logits.shape
    for c in prange(n_chunks):
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            for e in range(n_experts):
                cost[t, e] = math.exp(np.float64(logits[t, e]))
    d1[:] = 1.0
    error = 1e9
    iterations = 0
    while error > tol and iterations < max_iterations:
        for c in prange(n_chunks):
            stop = min(n_tokens, (c + 1) * CHUNK_TOKENS)
            for t in range(c * CHUNK_TOKENS, stop):
                total = 0.0
                for e in range(n_experts):
                    total += d1[e] * cost[t, e]
                d0[t] = (1.0 / n_tokens) / (total + SINKHORN_EPS)
            for e in range(n_experts):
                chunk_sums[c, e] = 0.0
            for t in range(c * CHUNK_TOKENS, stop):
                for e in range(n_experts):
                    chunk_sums[c, e] += d0[t] * cost[t, e]
        error = 0.0
        for e in range(n_experts):
            total = 0.0
            for c in range(n_chunks):
                total += chunk_sums[c, e]
            updated = (1.0 / n_experts) / (total + SINKHORN_EPS)
            error += abs(d1[e] - updated)
            d1[e] = updated
        error /= n_experts
        iterations += 1
    return iterations


@njit_parallel
def _sinkhorn_select(logits, cost, d0, d1, top_k, n_chunks, indices, weights, chunk_counts):
    """Top K of each row of ``d1 * C * d0``, gates from the logits, counts per chunk (E,)."""
    n_tokens, n_experts = logits.shape
    for c in prange(n_chunks):
        balanced = np.empty(n_experts, np.float64)
        best = np.empty(top_k, np.float64)
        scores = np.empty(n_experts, logits.dtype)
        work = np.empty(n_experts, np.float64)
        exponent_bits = np.empty(n_experts, np.int64)
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            for e in range(n_experts):
                balanced[e] = d1[e] * cost[t, e] * d0[t]
            filled = 0
            for e in range(n_experts):
                filled = _insert_descending(balanced[e], e, best, indices[t], filled, top_k)
            if top_k == 1:
                sigmoid_row(logits[t], scores, work, exponent_bits)
            else:
                softmax_row(logits[t], scores, work, exponent_bits)
            for k in range(top_k):
                weights[t, k] = scores[indices[t, k]]
                chunk_counts[c, indices[t, k]] += 1


def run_sinkhorn(logits: np.ndarray, top_k: int):
    """Sinkhorn routing on checked inputs (the engine's path).

    Returns ``(indices (T, K) int64, weights (T, K) logits' dtype, chunk_counts (chunks, E)
    int64, iterations)``.
    """
    n_tokens, n_experts = logits.shape
    n_chunks = n_chunks_for(n_tokens)
    cost = np.empty((n_tokens, n_experts), np.float64)
    d0 = np.empty(n_tokens, np.float64)
    d1 = np.empty(n_experts, np.float64)
    chunk_sums = np.empty((n_chunks, n_experts), np.float64)
    iterations = _sinkhorn_balance(
        logits, SINKHORN_TOLERANCE, MAX_SINKHORN_ITERATIONS, n_chunks, cost, d0, d1, chunk_sums
    )
    indices = np.empty((n_tokens, top_k), np.int64)
    weights = np.empty((n_tokens, top_k), logits.dtype)
    chunk_counts = np.zeros((n_chunks, n_experts), np.int64)
    _sinkhorn_select(logits, cost, d0, d1, top_k, n_chunks, indices, weights, chunk_counts)
    return indices, weights, chunk_counts, int(iterations)


def sinkhorn_route(logits, *, top_k: int):
    """Sinkhorn routing as Megatron-Core trains with it (``moe_router_load_balancing_type:
    sinkhorn``).

    Parameters
    ----------
    logits : ndarray, shape (T, E), float32 or float64
        Router logits ``Z``.
    top_k : int
        K experts per token (1 gates with the sigmoid, more with the softmax over all experts).

    Returns
    -------
    indices : ndarray, shape (T, K), int64
        The top K of each token's row of the balanced matrix, by descending balanced value
        (ties: lower expert id).
    weights : ndarray, shape (T, K), dtype of ``logits``
        ``sigmoid(z)`` or ``softmax(z)`` at those experts, unnormalised.
    iterations : int
        Sinkhorn iterations until the tolerance was met.
    """
    logits = _check_logits(logits)
    top_k = check_integer("top_k", top_k)
    if not 1 <= top_k <= logits.shape[1]:
        n_experts = logits.shape[1]
        raise ValueError(f"top_k is {top_k}; it must be between 1 and the {n_experts} experts")
    indices, weights, _, iterations = run_sinkhorn(logits, top_k)
    return indices, weights, iterations
